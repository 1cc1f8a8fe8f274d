package boltstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// storedRecord returns whether record id is stored in the keyed compact
// encoding, with the dots whose values it shares with the log,
// in dot order, reading the file of a closed store.
func storedRecord(t *testing.T, path string, id syncengine.RecordID) (compact bool, shared []syncengine.Dot) {
	t.Helper()
	var v []byte
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		v = slices.Clone(tx.Bucket([]byte("records")).Get(id[:]))
		return nil
	})
	if len(v) < 2 || v[0] != 3 && len(v) < 1+int(v[0])+1 {
		t.Fatalf("record %x: stored value %x", id, v)
	}
	body := v
	if v[0] != 3 { // an area envelope, then the state (schema 9)
		body = v[1+int(v[0]):]
	}
	shared, err := syncengine.CompactSharedDots(body)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(shared, syncengine.Dot.Compare)
	return body[0] == 3, shared
}

// A record's state keeps once the values its changes wrote: while the log
// holds a change, the state shares its values with it (a record written once
// holds little more than its stamps), and gets them back before compaction
// drops the change or an entry is rewritten. Every read gives the same state
// throughout.
func TestRecordsShareValuesWithTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s := openAt(t, path)
	phone := replicaID("phone")
	rec, other := recordID(1), recordID(2)
	c1 := change(phone, 1, rec, villageA, syncengine.VersionVector{}, map[int32]string{1: "household", 2: "张三", 3: "4 people"})
	p1 := apply(t, s, c1)
	c2 := change(phone, 2, rec, villageA, record(t, s, rec).Version(), map[int32]string{2: "张四"})
	apply(t, s, c2)
	c3 := change(phone, 3, other, villageB, syncengine.VersionVector{}, map[int32]string{1: "other"})
	p3 := apply(t, s, c3)
	want, wantOther := record(t, s, rec).Digest(), record(t, s, other).Digest()
	if v, _ := record(t, s, rec).Value(2); string(v) != "张四" {
		t.Fatalf("field 2 = %q, want the second change's", v)
	}

	reopen := func(check func()) {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		check()
		s = openAt(t, path)
		if got := record(t, s, rec).Digest(); got != want {
			t.Fatalf("record reads as another state: %v", record(t, s, rec))
		}
		if got := record(t, s, other).Digest(); got != wantOther {
			t.Fatalf("the other record reads as another state: %v", record(t, s, other))
		}
	}
	reopen(func() {
		if compact, shared := storedRecord(t, path, rec); !compact || !slices.Equal(shared, []syncengine.Dot{c1.Dot, c2.Dot}) {
			t.Errorf("stored compact %v sharing %v, want both changes' values shared", compact, shared)
		}
	})

	// Compaction of the first change: the record takes back its values.
	if _, err := s.Compact(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	reopen(func() {
		if _, shared := storedRecord(t, path, rec); !slices.Equal(shared, []syncengine.Dot{c2.Dot}) {
			t.Errorf("after compacting the first change the record shares %v, want the second's only", shared)
		}
	})

	// A rewritten entry (the same dot, here with other values) first gives
	// the record its values back, so the record keeps what it held.
	restamped := c3
	restamped.Stamp.WallMS++
	restamped.Fields = map[int32][]byte{1: []byte("rewritten")}
	if err := s.Update(t.Context(), func(tx syncengine.Tx) error { return tx.ReplaceChange(t.Context(), p3, restamped) }); err != nil {
		t.Fatal(err)
	}
	reopen(func() {
		if _, shared := storedRecord(t, path, other); len(shared) != 0 {
			t.Errorf("after its entry was rewritten the record still shares %v", shared)
		}
	})

	if _, err := s.Compact(t.Context(), p3); err != nil {
		t.Fatal(err)
	}
	reopen(func() {
		if _, shared := storedRecord(t, path, rec); len(shared) != 0 {
			t.Errorf("after compacting the whole log the record shares %v", shared)
		}
	})
}

// A renumbered change (a township restored from an older copy) leaves the
// record the values its old dot shared.
func TestRenumberedChangeLeavesTheRecordItsValues(t *testing.T) {
	s := openStore(t)
	phone := replicaID("phone")
	rec := recordID(1)
	c := change(phone, 1, rec, villageA, syncengine.VersionVector{}, map[int32]string{1: "x"})
	pos := apply(t, s, c)
	want := record(t, s, rec).Digest()
	renumbered := c
	renumbered.Dot.Counter = 7
	err := s.Update(t.Context(), func(tx syncengine.Tx) error {
		return tx.(syncengine.Renumberer).RenumberChange(t.Context(), pos, c.Dot, renumbered)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := record(t, s, rec).Digest(); got != want {
		t.Errorf("after renumbering its change the record reads %v", record(t, s, rec))
	}
}

// A record whose shared values are gone from the log (a damaged file) is an
// error naming the damage, for the read and for Check, not a state with
// values missing.
func TestSharedValuesMissingAreDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	phone := replicaID("phone")
	rec := recordID(1)
	pos := apply(t, s, change(phone, 1, rec, villageA, syncengine.VersionVector{}, map[int32]string{1: "x"}))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("log")).Delete(binaryPos(pos))
	})
	s, err = boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(context.Background(), func(tx syncengine.ReadTx) error {
		_, err := tx.Record(context.Background(), rec)
		return err
	})
	if !errors.Is(err, boltstore.ErrCorrupt) {
		t.Errorf("reading a record whose values the log lost: %v, want ErrCorrupt", err)
	}
	if err := s.Check(t.Context()); !errors.Is(err, boltstore.ErrCorrupt) {
		t.Errorf("Check: %v, want ErrCorrupt", err)
	}
}

// A file of schema 9 holds records in the first encoding: they read as
// before, and a record written again is stored compactly.
func TestOpenReadsRecordsOfSchema9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s := openAt(t, path)
	phone := replicaID("phone")
	rec := recordID(1)
	c1 := change(phone, 1, rec, villageA, syncengine.VersionVector{}, map[int32]string{1: "x", 2: "y"})
	apply(t, s, c1)
	state := record(t, s, rec)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		old, _ := state.MarshalBinary()
		v := append([]byte{byte(len(villageA))}, villageA...)
		if err := tx.Bucket([]byte("records")).Put(rec[:], append(v, old...)); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binaryPos(9))
	})
	s = openAt(t, path)
	if got := record(t, s, rec); got.Digest() != state.Digest() {
		t.Fatalf("a record of schema 9 reads %v, want %v", got, state)
	}
	apply(t, s, change(phone, 2, rec, villageA, state.Version(), map[int32]string{2: "z"}))
	want := record(t, s, rec).Digest()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if compact, shared := storedRecord(t, path, rec); !compact || len(shared) != 1 || shared[0].Counter != 2 {
		t.Errorf("written again, stored compact %v sharing %v; want compact, sharing the new change", compact, shared)
	}
	s = openAt(t, path)
	if got := record(t, s, rec); got.Digest() != want {
		t.Errorf("after the upgrade and an edit the record reads %v", got)
	}
}

// binaryPos is a log key: the position as 8 big-endian bytes.
func binaryPos[T ~uint64 | ~int](p T) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(p))
}

// Log entries are packed with a dictionary the store makes from its own log
// once it holds enough of it: entries before and after it, and the source
// each came from, read back the same, across a reopen. A dictionary made by
// a transaction that did not commit is forgotten with it: the entries after
// it use the one the store kept.
func TestLogEntriesPackedWithTheStoresDictionary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s := openAt(t, path)
	phone, relay := replicaID("phone"), replicaID("relay")
	want := map[syncengine.Position]syncengine.Change{}
	from := map[syncengine.Position]syncengine.ReplicaID{}
	n := uint64(0)
	batch := func(size int, fail bool) error {
		return s.Update(t.Context(), func(tx syncengine.Tx) error {
			added := map[syncengine.Position]syncengine.Change{}
			for range size {
				n++
				c := change(phone, n, recordID(n%500+1), villageA, syncengine.VersionVector{}, map[int32]string{1: fmt.Sprintf("household %d of %s", n, villageA), 2: "张三"})
				rec, err := tx.Record(t.Context(), c.RecordID)
				if err != nil {
					return err
				}
				c.Context = rec.Version()
				next, err := syncengine.Apply(rec, &c)
				if err != nil {
					return err
				}
				if err := tx.PutRecord(t.Context(), next); err != nil {
					return err
				}
				pos, err := tx.(syncengine.FromAppender).AppendFrom(t.Context(), c, relay)
				if err != nil {
					return err
				}
				added[pos] = c
			}
			if fail {
				n -= uint64(size)
				return errors.New("the batch fails")
			}
			for pos, c := range added {
				want[pos], from[pos] = c, relay
			}
			return nil
		})
	}
	if err := batch(4000, false); err != nil {
		t.Fatal(err)
	}
	// This batch makes the dictionary, then fails: the next makes another.
	if err := batch(200, true); err == nil {
		t.Fatal("the failing batch committed")
	}
	for range 3 {
		if err := batch(200, false); err != nil {
			t.Fatal(err)
		}
	}
	check := func() {
		t.Helper()
		got := readLog(t, s, 0)
		if len(got) != len(want) {
			t.Fatalf("log holds %d entries, want %d", len(got), len(want))
		}
		for _, e := range got {
			w := want[e.Pos]
			if e.Change.ID != w.ID || e.Change.Dot != w.Dot || string(e.Change.Fields[1]) != string(w.Fields[1]) || e.From != from[e.Pos] {
				t.Fatalf("entry %d reads %v from %v, want %v from %v", e.Pos, e.Change, e.From, w, from[e.Pos])
			}
		}
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var dicts int
	var current []byte
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte("meta")).Cursor()
		for k, _ := c.Seek([]byte("dict/")); k != nil && bytes.HasPrefix(k, []byte("dict/")); k, _ = c.Next() {
			dicts++
		}
		current = slices.Clone(tx.Bucket([]byte("meta")).Get([]byte("dict")))
		return nil
	})
	if dicts != 1 || len(current) != 8 {
		t.Errorf("the store keeps %d dictionaries, current %x; want one", dicts, current)
	}
	s = openAt(t, path)
	check()
}

// A log entry of schema 9 (the change's encoding as it is, its source in
// the logfrom bucket) reads as before, and NoteFrom still notes its source.
func TestOpenReadsLogEntriesOfSchema9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s := openAt(t, path)
	phone, relay := replicaID("phone"), replicaID("relay")
	c := change(phone, 1, recordID(1), villageA, syncengine.VersionVector{}, map[int32]string{1: "x"})
	pos := apply(t, s, c)
	c2 := change(phone, 2, recordID(2), villageA, syncengine.VersionVector{}, map[int32]string{1: "y"})
	pos2 := apply(t, s, c2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		for _, e := range []struct {
			pos syncengine.Position
			c   syncengine.Change
		}{{pos, c}, {pos2, c2}} {
			b, err := e.c.MarshalBinary()
			if err != nil {
				return err
			}
			v := append([]byte{byte(len(villageA))}, villageA...)
			if err := tx.Bucket([]byte("log")).Put(binaryPos(e.pos), append(v, b...)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte("logfrom")).Put(binaryPos(pos), relay[:]); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binaryPos(9))
	})
	s = openAt(t, path)
	if err := s.Update(t.Context(), func(tx syncengine.Tx) error { return tx.NoteFrom(t.Context(), pos2, relay) }); err != nil {
		t.Fatal(err)
	}
	got := readLog(t, s, 0)
	if len(got) != 2 || got[0].Change.ID != c.ID || got[0].From != relay || got[1].Change.ID != c2.ID || got[1].From != relay {
		t.Errorf("entries of schema 9 read %+v; want both changes, from the relay", got)
	}
}

// A record shares values only with a change of its own: one whose log entry
// holds a change of another record under the same dot (a reused dot, a
// damaged file) is damage, not a state made of the other record's values.
func TestSharedValuesOfAnotherRecordAreDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	phone := replicaID("phone")
	c := change(phone, 1, recordID(1), villageA, syncengine.VersionVector{}, map[int32]string{1: "x"})
	pos := apply(t, s, c)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other := c
	other.RecordID = recordID(2)
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		b, err := other.MarshalBinary()
		if err != nil {
			return err
		}
		v := append([]byte{byte(len(villageA))}, villageA...)
		return tx.Bucket([]byte("log")).Put(binaryPos(pos), append(v, b...))
	})
	s, err = boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(t.Context(), func(tx syncengine.ReadTx) error {
		_, err := tx.Record(t.Context(), recordID(1))
		return err
	})
	if !errors.Is(err, boltstore.ErrCorrupt) {
		t.Errorf("a record sharing the values of another record's change: %v, want ErrCorrupt", err)
	}
}
