package syncengine_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Seed corpora live in testdata/fuzz/FuzzXxx; f.Add adds a few more here.

func seedChanges() []*syncengine.Change {
	return []*syncengine.Change{
		chg(ra, 1, 100, vv(), map[int32]string{1: "x", 2: "y"}),
		chg(rb, 9, 1<<41, vv(ra, 1, rc, 3), map[int32]string{1042: "\x0a\x03abc"}),
		del(rc, 4, 300, vv(ra, 1, rb, 2)),
	}
}

func FuzzDecodeChange(f *testing.F) {
	for _, c := range seedChanges() {
		b, err := c.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c syncengine.Change
		if err := c.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, syncengine.ErrMalformed) && !errors.Is(err, syncengine.ErrInvalidChange) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrInvalidChange", err)
			}
			return
		}
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded change does not encode: %v", err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("accepted a non-canonical encoding:\n in  %x\n out %x", data, b)
		}
		if _, err := syncengine.Apply(syncengine.Record{}, &c); err != nil {
			t.Fatalf("decoded change does not apply: %v", err)
		}
	})
}

func FuzzDecodeVersionVector(f *testing.F) {
	for _, v := range []syncengine.VersionVector{vv(), vv(ra, 1), vv(ra, 1<<40, rb, 3, rc, 127)} {
		b, _ := v.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v syncengine.VersionVector
		if err := v.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, syncengine.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		b, _ := v.MarshalBinary()
		if !bytes.Equal(b, data) {
			t.Fatalf("accepted a non-canonical encoding:\n in  %x\n out %x", data, b)
		}
		if v.Compare(v) != syncengine.Equal || v.Merge(v).Compare(v) != syncengine.Equal {
			t.Fatalf("vector not equal to itself: %v", v)
		}
		for _, d := range v.Dots() {
			if !v.Contains(d) {
				t.Fatalf("%v does not contain its own entry %v", v, d)
			}
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	cs := seedChanges()
	var r syncengine.Record
	for _, c := range cs {
		c.RecordID = recordID(1)
		r, _ = syncengine.Apply(r, c)
		b, _ := r.MarshalBinary()
		f.Add(b)
		f.Add(r.AppendCompact(nil))
		f.Add(r.AppendCompactSharing(nil, cs))
		f.Add(r.AppendCompactKeyed(nil, cs))
	}
	// Shared values come from the seed changes, by dot; a dot none of them
	// has resolves to nothing.
	resolve := func(d syncengine.Dot) (*syncengine.Change, error) {
		for _, c := range cs {
			if c.Dot == d {
				return c, nil
			}
		}
		return nil, nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r syncengine.Record
		decode := func() error { return r.UnmarshalCompactShared(data, resolve) }
		if len(data) > 0 && data[0] == 3 {
			decode = func() error { return r.UnmarshalCompactKeyed(data, recordID(1), resolve) }
		}
		if err := decode(); err != nil {
			if !errors.Is(err, syncengine.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		b, _ := r.MarshalBinary()
		if data[0] == 2 || data[0] == 3 {
			// Canonical given the changes it shares.
			dots, _ := syncengine.CompactSharedDots(data)
			var shared []*syncengine.Change
			for _, d := range dots {
				c, _ := resolve(d)
				shared = append(shared, c)
			}
			b = r.AppendCompactSharing(nil, shared)
			if data[0] == 3 {
				b = r.AppendCompactKeyed(nil, shared)
			}
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("accepted a non-canonical encoding:\n in  %x\n out %x", data, b)
		}
		// Whatever a peer sent in the first encoding, a store keeps it
		// compactly as the same state.
		var kept syncengine.Record
		if err := kept.UnmarshalBinary(r.AppendCompact(nil)); err != nil || kept.Digest() != r.Digest() {
			t.Fatalf("the compact encoding of %v reads back as %v, %v", r, kept, err)
		}
		_, _, _ = r.Exists(), r.Deleted(), r.Area()
		_ = r.Conflicts()
		_ = r.Values()
	})
}

// FuzzApply reads data as a program that makes up to 8 changes of one record by
// three replicas, with arbitrary (even impossible) contexts, reused dots and
// deletes, and checks that Apply keeps the state valid, and gives the same state
// in every order tried and when changes are applied twice.
func FuzzApply(f *testing.F) {
	f.Add([]byte{3, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 2, 1, 2, 1, 0, 0, 3, 2})
	f.Add([]byte{5, 0, 1, 2, 1, 1, 1, 0, 7, 1, 2, 3, 2, 3, 4, 1, 0, 3, 2, 1, 0, 4, 4, 4, 1, 7, 2, 2, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		changes := changesFromBytes(data)
		forward := applyFuzz(t, changes)
		if err := roundTrip(forward); err != nil {
			t.Fatalf("state after Apply is invalid: %v\n%v", err, forward)
		}
		reversed := slices.Clone(changes)
		slices.Reverse(reversed)
		rotated := append(slices.Clone(changes[len(changes)/2:]), changes[:len(changes)/2]...)
		doubled := append(slices.Clone(changes), changes...)
		for name, order := range map[string][]*syncengine.Change{"reversed": reversed, "rotated": rotated, "doubled": doubled} {
			if got := applyFuzz(t, order); got.Digest() != forward.Digest() {
				t.Fatalf("%s order gives another state:\n%v\nwant\n%v", name, got, forward)
			}
		}
		half := len(changes) / 2
		merged, err := syncengine.Merge(applyFuzz(t, changes[half:]), applyFuzz(t, changes[:half+1]))
		if err != nil {
			t.Fatal(err)
		}
		if merged.Digest() != forward.Digest() {
			t.Fatalf("merging two parts' states gives another state:\n%v\nwant\n%v", merged, forward)
		}
		if err := roundTrip(merged); err != nil {
			t.Fatalf("merged state is invalid: %v", err)
		}
	})
}

func applyFuzz(t *testing.T, changes []*syncengine.Change) syncengine.Record {
	t.Helper()
	var r syncengine.Record
	for _, c := range changes {
		next, err := syncengine.Apply(r, c)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		r = next
	}
	return r
}

func roundTrip(r syncengine.Record) error {
	b, err := r.MarshalBinary()
	if err != nil {
		return err
	}
	var got syncengine.Record
	if err := got.UnmarshalBinary(b); err != nil {
		return err
	}
	if got.Digest() != r.Digest() {
		return errors.New("digest changed in a round trip")
	}
	return nil
}

// changesFromBytes interprets data as change descriptions: origin, counter,
// wall time, three context entries, a delete/field mask and values.
func changesFromBytes(data []byte) []*syncengine.Change {
	reps := []syncengine.ReplicaID{ra, rb, rc}
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	n := 1 + int(next()%8)
	var out []*syncengine.Change
	for range n {
		origin := reps[next()%3]
		counter := 1 + uint64(next()%4)
		wall := int64(next()%8) * 100
		var ctx []syncengine.Dot
		for _, r := range reps {
			k := uint64(next() % 5)
			if r == origin && k >= counter {
				k = counter - 1
			}
			ctx = append(ctx, syncengine.Dot{Replica: r, Counter: k})
		}
		mask := next()
		fields := map[int32]string{}
		for f := range 3 {
			if mask&(1<<f) != 0 {
				fields[int32(f+1)] = string("abc"[next()%3])
			}
		}
		c := chg(origin, counter, wall, syncengine.NewVersionVector(ctx...), fields)
		c.ID = syncengine.ChangeID{1}
		if mask&0x18 == 0x18 {
			c.Delete, c.Fields = true, nil
		}
		if mask&0x20 != 0 {
			c.Area = areaVillageB
		}
		out = append(out, c)
	}
	return out
}
