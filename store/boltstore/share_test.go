package boltstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// storedRecord returns the raw value of record id and whether it is in the
// compact encoding, with the dots whose values it shares with the log,
// in dot order, reading the file of a closed store.
func storedRecord(t *testing.T, path string, id syncengine.RecordID) (compact bool, shared []syncengine.Dot) {
	t.Helper()
	var v []byte
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		v = slices.Clone(tx.Bucket([]byte("records")).Get(id[:]))
		return nil
	})
	if len(v) < 2 || len(v) < 1+int(v[0])+1 {
		t.Fatalf("record %x: stored value %x", id, v)
	}
	body := v[1+int(v[0]):]
	shared, err := syncengine.CompactSharedDots(body)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(shared, syncengine.Dot.Compare)
	return body[0] == 2, shared
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
