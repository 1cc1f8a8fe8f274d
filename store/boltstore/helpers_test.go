package boltstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Test helpers shared by the tests of this package.

const (
	kindHousehold syncengine.Kind = 1

	// Two townships of one county, two villages each.
	townA    = "530102001"
	townB    = "530102002"
	villageA = townA + "001"
	villageB = townA + "002"
	villageC = townB + "001"
	villageD = townB + "002"

	morning = int64(1772438400000) // 2026-03-02 08:00 UTC
)

// testOptions keep the mapping small: many stores are open at once in tests.
var testOptions = boltstore.Options{InitialMmapSize: 1 << 20}

// openStore opens a new store in a temporary directory. Cleanup checks its
// consistency and closes it.
func openStore(t testing.TB) *boltstore.Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "server.db"))
}

// openAt opens the store at path; cleanup checks and closes it.
func openAt(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	o := testOptions
	s, err := boltstore.Open(path, &o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Check(context.Background()); err != nil && !isClosed(err) {
			t.Errorf("check after test: %v", err)
		}
		_ = s.Close()
	})
	return s
}

func isClosed(err error) bool { return errors.Is(err, bbolt.ErrDatabaseNotOpen) }

// replicaID returns a recognisable replica id: name's bytes, zero padded.
func replicaID(name string) syncengine.ReplicaID {
	var id syncengine.ReplicaID
	copy(id[:], name)
	return id
}

func recordID(n uint64) syncengine.RecordID {
	var id syncengine.RecordID
	id[0] = 0x7e
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

var changeSeq atomic.Uint64

func newChangeID() syncengine.ChangeID {
	var id syncengine.ChangeID
	id[0] = 0xc4
	binary.BigEndian.PutUint64(id[8:], changeSeq.Add(1))
	return id
}

// change returns a valid upsert of record rec in area by origin with dot
// counter n, after base (the record's version as the origin saw it).
func change(origin syncengine.ReplicaID, n uint64, rec syncengine.RecordID, area string, base syncengine.VersionVector, fields map[int32]string) syncengine.Change {
	c := syncengine.Change{
		ID: newChangeID(), RecordID: rec, Kind: kindHousehold, Area: area,
		Origin: origin, Dot: syncengine.Dot{Replica: origin, Counter: n},
		Stamp:   syncengine.Stamp{WallMS: morning + int64(n), Replica: origin},
		Context: base,
		Fields:  make(map[int32][]byte, len(fields)),
	}
	for k, v := range fields {
		c.Fields[k] = []byte(v)
	}
	return c
}

// apply applies c to its record and appends it to the log, as ReceiveBatch
// would, in one transaction. It returns the change's position.
func apply(t testing.TB, s syncengine.Store, c syncengine.Change) syncengine.Position {
	t.Helper()
	var pos syncengine.Position
	ctx := context.Background()
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		rec, err := tx.Record(ctx, c.RecordID)
		if err != nil {
			return err
		}
		next, err := syncengine.Apply(rec, &c)
		if err != nil {
			return err
		}
		if err := tx.PutRecord(ctx, next); err != nil {
			return err
		}
		pos, err = tx.Append(ctx, c)
		return err
	})
	if err != nil {
		t.Fatalf("apply %v: %v", c.Dot, err)
	}
	return pos
}

// record reads record id in a View.
func record(t testing.TB, s syncengine.Store, id syncengine.RecordID) syncengine.Record {
	t.Helper()
	var r syncengine.Record
	err := s.View(context.Background(), func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(context.Background(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readLog reads the whole log after after in a View.
func readLog(t testing.TB, s syncengine.Store, after syncengine.Position) []syncengine.Entry {
	t.Helper()
	var out []syncengine.Entry
	err := s.View(context.Background(), func(tx syncengine.ReadTx) error {
		var err error
		out, err = tx.ReadLog(context.Background(), after, 1<<30)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshotAll reads every page of the snapshot of prefix.
func snapshotAll(t testing.TB, s *boltstore.Store, prefix string, limit int) ([]syncengine.Record, int) {
	t.Helper()
	var out []syncengine.Record
	pages := 0
	var token []byte
	for {
		page, err := s.Snapshot(context.Background(), prefix, token, limit)
		if err != nil {
			t.Fatalf("snapshot %q page %d: %v", prefix, pages, err)
		}
		pages++
		out = append(out, page.Records...)
		if page.Next == nil {
			return out, pages
		}
		token = page.Next
	}
}

func ids(rs []syncengine.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		id := r.ID()
		out[i] = fmt.Sprintf("%s/%x", r.Area(), id[8:])
	}
	return out
}
