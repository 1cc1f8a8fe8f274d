// Package syncenginetest is the conformance suite for implementations of
// syncengine.Store. Every store runs it against a real backend (a file in
// t.TempDir()); the in-memory reference, syncengine/memstore, runs it too.
//
//	func TestConformance(t *testing.T) {
//		syncenginetest.Run(t, func(t *testing.T) syncengine.Store { return openTemp(t) })
//	}
//
// Stores that also serve snapshots and drop acknowledged log entries run
// RunRetention with the same kind of factory.
package syncenginetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// NewStore returns a new, empty store for one test. It registers its own
// cleanup with t.
type NewStore func(t *testing.T) syncengine.Store

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, syncengine.Store)
	}{
		{"Empty", testEmpty},
		{"AppendAndReadLog", testAppendAndReadLog},
		{"DuplicateDot", testDuplicateDot},
		{"RecordRoundTrip", testRecordRoundTrip},
		{"ReplaceChange", testReplaceChange},
		{"Cursors", testCursors},
		{"Rejections", testRejections},
		{"UpdateRollsBack", testUpdateRollsBack},
		{"CanceledContext", testCanceledContext},
		{"ReadsOwnWrites", testReadsOwnWrites},
		{"SerializableUpdates", testSerializableUpdates},
		{"RecordsInArea", testRecordsInArea},
		{"Meta", testMeta},
		{"Renumber", testRenumber},
		{"Bulk", testBulk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	t.Run("Exchange", func(t *testing.T) { testExchange(t, newStore) })
}

// Fixed ids so failures read the same every run.
var (
	replicaA = syncengine.ReplicaID{0x01, 0x9a, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 0xa1}
	replicaB = syncengine.ReplicaID{0x01, 0x9a, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 0xb2}
)

const (
	kindHousehold syncengine.Kind = 1
	village                       = "532523101201"
	otherVillage                  = "532523102203"
)

func recordID(n int) syncengine.RecordID {
	return syncengine.RecordID{0x01, 0x9a, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)}
}

func changeID(origin syncengine.ReplicaID, counter uint64) syncengine.ChangeID {
	id := syncengine.ChangeID(origin)
	id[14], id[15] = byte(counter>>8), byte(counter)
	id[13] ^= 0x55
	return id
}

// change returns an upsert of record n by origin with the given dot counter.
func change(origin syncengine.ReplicaID, counter uint64, n int, area string, fields map[int32][]byte) syncengine.Change {
	d := syncengine.Dot{Replica: origin, Counter: counter}
	return syncengine.Change{
		ID: changeID(origin, counter), RecordID: recordID(n), Kind: kindHousehold, Area: area,
		Origin: origin, Dot: d,
		Stamp:   syncengine.Stamp{WallMS: 1_790_000_000_000 + int64(counter), Replica: origin},
		Context: syncengine.NewVersionVector(),
		Fields:  fields,
	}
}

// field is the protobuf encoding of a string field (tag, length, bytes).
func field(num int32, s string) []byte {
	return append([]byte{byte(num<<3 | 2), byte(len(s))}, s...)
}

func update(t *testing.T, s syncengine.Store, fn func(syncengine.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, s syncengine.Store, fn func(syncengine.ReadTx) error) {
	t.Helper()
	if err := s.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func appendAll(t *testing.T, s syncengine.Store, cs ...syncengine.Change) []syncengine.Position {
	t.Helper()
	var pos []syncengine.Position
	update(t, s, func(tx syncengine.Tx) error {
		for _, c := range cs {
			p, err := tx.Append(t.Context(), c)
			if err != nil {
				return err
			}
			pos = append(pos, p)
		}
		return nil
	})
	return pos
}

func testEmpty(t *testing.T, s syncengine.Store) {
	ctx := t.Context()
	view(t, s, func(tx syncengine.ReadTx) error {
		if r, err := tx.Record(ctx, recordID(1)); err != nil || !r.IsEmpty() {
			t.Errorf("Record on empty store = %v, %v; want the zero record", r, err)
		}
		if seen, err := tx.Seen(ctx, syncengine.Dot{Replica: replicaA, Counter: 1}); seen || err != nil {
			t.Errorf("Seen on empty store = %v, %v", seen, err)
		}
		if n, err := tx.MaxCounter(ctx, replicaA); n != 0 || err != nil {
			t.Errorf("MaxCounter on empty store = %d, %v", n, err)
		}
		if es, err := tx.ReadLog(ctx, 0, 10); len(es) != 0 || err != nil {
			t.Errorf("ReadLog on empty store = %v, %v", es, err)
		}
		if c, err := tx.Cursor(ctx, replicaB); c != (syncengine.Cursor{}) || err != nil {
			t.Errorf("Cursor on empty store = %v, %v", c, err)
		}
		return nil
	})
}

func testAppendAndReadLog(t *testing.T, s syncengine.Store) {
	ctx := t.Context()
	var cs []syncengine.Change
	for i := 1; i <= 7; i++ {
		origin := replicaA
		if i%3 == 0 {
			origin = replicaB
		}
		cs = append(cs, change(origin, uint64(i), i, village, map[int32][]byte{4: field(4, fmt.Sprint("户主", i))}))
	}
	pos := appendAll(t, s, cs[:4]...)
	pos = append(pos, appendAll(t, s, cs[4:]...)...)
	for i := 1; i < len(pos); i++ {
		if pos[i] <= pos[i-1] {
			t.Fatalf("positions %v are not strictly increasing", pos)
		}
	}
	view(t, s, func(tx syncengine.ReadTx) error {
		all, err := tx.ReadLog(ctx, 0, 100)
		if err != nil || len(all) != 7 {
			t.Fatalf("ReadLog(0, 100) = %d entries, %v; want 7", len(all), err)
		}
		for i, e := range all {
			if e.Pos != pos[i] || e.Change.ID != cs[i].ID || string(e.Change.Fields[4]) != string(cs[i].Fields[4]) {
				t.Errorf("entry %d = %v at %d, want change %v at %d", i, e.Change.ID, e.Pos, cs[i].ID, pos[i])
			}
		}
		page, err := tx.ReadLog(ctx, pos[2], 2)
		if err != nil || len(page) != 2 || page[0].Pos != pos[3] || page[1].Pos != pos[4] {
			t.Errorf("ReadLog(after %d, 2) = %v, %v; want positions %d, %d", pos[2], page, err, pos[3], pos[4])
		}
		if tail, err := tx.ReadLog(ctx, pos[6], 10); len(tail) != 0 || err != nil {
			t.Errorf("ReadLog after the end = %v, %v; want nothing", tail, err)
		}
		for _, c := range cs {
			if seen, err := tx.Seen(ctx, c.Dot); !seen || err != nil {
				t.Errorf("Seen(%v) = %v, %v; want true", c.Dot, seen, err)
			}
		}
		if n, _ := tx.MaxCounter(ctx, replicaA); n != 7 {
			t.Errorf("MaxCounter(A) = %d, want 7", n)
		}
		if n, _ := tx.MaxCounter(ctx, replicaB); n != 6 {
			t.Errorf("MaxCounter(B) = %d, want 6", n)
		}
		return nil
	})
}

func testDuplicateDot(t *testing.T, s syncengine.Store) {
	c := change(replicaA, 1, 1, village, map[int32][]byte{4: field(4, "张德明")})
	appendAll(t, s, c)
	dup := c
	dup.ID = changeID(replicaB, 99) // same dot, other id: still the same change
	err := s.Update(t.Context(), func(tx syncengine.Tx) error {
		_, err := tx.Append(t.Context(), dup)
		return err
	})
	if !errors.Is(err, syncengine.ErrDotExists) {
		t.Fatalf("second Append of dot %v: %v, want ErrDotExists", c.Dot, err)
	}
	view(t, s, func(tx syncengine.ReadTx) error {
		if es, _ := tx.ReadLog(t.Context(), 0, 10); len(es) != 1 {
			t.Errorf("log holds %d entries after a duplicate append, want 1", len(es))
		}
		return nil
	})
}

func testRecordRoundTrip(t *testing.T, s syncengine.Store) {
	c := change(replicaA, 1, 1, village, map[int32][]byte{4: field(4, "张德明"), 99: field(99, "unknown to this build")})
	r, err := syncengine.Apply(syncengine.Record{}, &c)
	if err != nil {
		t.Fatal(err)
	}
	update(t, s, func(tx syncengine.Tx) error { return tx.PutRecord(t.Context(), r) })
	view(t, s, func(tx syncengine.ReadTx) error {
		got, err := tx.Record(t.Context(), r.ID())
		if err != nil || got.Digest() != r.Digest() {
			t.Errorf("Record = %v, %v; want %v", got, err, r)
		}
		return nil
	})
	// Moving to another village replaces the state, area included.
	c2 := change(replicaA, 2, 1, otherVillage, map[int32][]byte{5: field(5, "新寨村三组")})
	c2.Context = r.Version()
	r2, err := syncengine.Apply(r, &c2)
	if err != nil {
		t.Fatal(err)
	}
	update(t, s, func(tx syncengine.Tx) error { return tx.PutRecord(t.Context(), r2) })
	view(t, s, func(tx syncengine.ReadTx) error {
		got, err := tx.Record(t.Context(), r.ID())
		if err != nil || got.Digest() != r2.Digest() || got.Area() != otherVillage {
			t.Errorf("after a move Record = %v, %v; want %v in %s", got, err, r2, otherVillage)
		}
		return nil
	})
}

func testReplaceChange(t *testing.T, s syncengine.Store) {
	c := change(replicaA, 1, 1, village, map[int32][]byte{4: field(4, "张德明")})
	pos := appendAll(t, s, c)[0]
	restamped := c
	restamped.Stamp.WallMS -= 3 * 24 * 3600 * 1000 // a phone 3 days fast, corrected
	update(t, s, func(tx syncengine.Tx) error { return tx.ReplaceChange(t.Context(), pos, restamped) })
	view(t, s, func(tx syncengine.ReadTx) error {
		es, err := tx.ReadLog(t.Context(), 0, 10)
		if err != nil || len(es) != 1 || es[0].Change.Stamp != restamped.Stamp || es[0].Pos != pos {
			t.Errorf("after ReplaceChange the log holds %v, %v; want the restamped change at %d", es, err, pos)
		}
		return nil
	})
	other := change(replicaA, 2, 1, village, nil)
	for name, call := range map[string]func(syncengine.Tx) error{
		"another dot": func(tx syncengine.Tx) error { return tx.ReplaceChange(t.Context(), pos, other) },
		"no entry":    func(tx syncengine.Tx) error { return tx.ReplaceChange(t.Context(), pos+100, c) },
	} {
		if err := s.Update(t.Context(), call); !errors.Is(err, syncengine.ErrNoEntry) {
			t.Errorf("ReplaceChange with %s: %v, want ErrNoEntry", name, err)
		}
	}
}

func testCursors(t *testing.T, s syncengine.Store) {
	update(t, s, func(tx syncengine.Tx) error {
		if err := tx.SetCursor(t.Context(), replicaA, syncengine.Cursor{Received: 7, Acked: 3}); err != nil {
			return err
		}
		return tx.SetCursor(t.Context(), replicaB, syncengine.Cursor{Received: 1})
	})
	update(t, s, func(tx syncengine.Tx) error {
		return tx.SetCursor(t.Context(), replicaA, syncengine.Cursor{Received: 9, Acked: 4})
	})
	view(t, s, func(tx syncengine.ReadTx) error {
		if c, err := tx.Cursor(t.Context(), replicaA); c != (syncengine.Cursor{Received: 9, Acked: 4}) || err != nil {
			t.Errorf("Cursor(A) = %v, %v; want {9 4}", c, err)
		}
		if c, err := tx.Cursor(t.Context(), replicaB); c != (syncengine.Cursor{Received: 1}) || err != nil {
			t.Errorf("Cursor(B) = %v, %v; want {1 0}", c, err)
		}
		return nil
	})
}

func testRejections(t *testing.T, s syncengine.Store) {
	c := change(replicaA, 1, 1, village, nil)
	pos := appendAll(t, s, c)[0]
	rej := syncengine.Rejection{Peer: replicaB, Pos: pos, ID: c.ID, Dot: c.Dot, Outcome: syncengine.OutcomeInvalid, Detail: "findings: required"}
	update(t, s, func(tx syncengine.Tx) error { return tx.PutRejection(t.Context(), rej) })
	rej.Detail = "fixed detail"
	update(t, s, func(tx syncengine.Tx) error { return tx.PutRejection(t.Context(), rej) }) // replaces, no error
}

var errTest = errors.New("syncenginetest: abort")

func testUpdateRollsBack(t *testing.T, s syncengine.Store) {
	c := change(replicaA, 1, 1, village, map[int32][]byte{4: field(4, "张德明")})
	r, _ := syncengine.Apply(syncengine.Record{}, &c)
	err := s.Update(t.Context(), func(tx syncengine.Tx) error {
		if _, err := tx.Append(t.Context(), c); err != nil {
			return err
		}
		if err := tx.PutRecord(t.Context(), r); err != nil {
			return err
		}
		if err := tx.SetCursor(t.Context(), replicaB, syncengine.Cursor{Received: 5}); err != nil {
			return err
		}
		return errTest
	})
	if !errors.Is(err, errTest) {
		t.Fatalf("Update returned %v, want fn's error unchanged", err)
	}
	testEmpty(t, s)
}

func testCanceledContext(t *testing.T, s syncengine.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	if err := s.Update(ctx, func(syncengine.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("Update with a canceled context = %v, ran=%v; want context.Canceled without running", err, ran)
	}
}

func testReadsOwnWrites(t *testing.T, s syncengine.Store) {
	c := change(replicaA, 1, 1, village, map[int32][]byte{4: field(4, "张德明")})
	r, _ := syncengine.Apply(syncengine.Record{}, &c)
	update(t, s, func(tx syncengine.Tx) error {
		ctx := t.Context()
		if _, err := tx.Append(ctx, c); err != nil {
			return err
		}
		if err := tx.PutRecord(ctx, r); err != nil {
			return err
		}
		if seen, err := tx.Seen(ctx, c.Dot); !seen || err != nil {
			t.Errorf("Seen inside the appending transaction = %v, %v", seen, err)
		}
		if got, err := tx.Record(ctx, r.ID()); err != nil || got.Digest() != r.Digest() {
			t.Errorf("Record inside the writing transaction = %v, %v", got, err)
		}
		if n, err := tx.MaxCounter(ctx, replicaA); n != 1 || err != nil {
			t.Errorf("MaxCounter inside the transaction = %d, %v", n, err)
		}
		return nil
	})
}

// testSerializableUpdates runs read-modify-write transactions from several
// goroutines: none may be lost.
func testSerializableUpdates(t *testing.T, s syncengine.Store) {
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.Update(t.Context(), func(tx syncengine.Tx) error {
					c, err := tx.Cursor(t.Context(), replicaB)
					if err != nil {
						return err
					}
					c.Received++
					return tx.SetCursor(t.Context(), replicaB, c)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	view(t, s, func(tx syncengine.ReadTx) error {
		if c, _ := tx.Cursor(t.Context(), replicaB); c.Received != workers*each {
			t.Errorf("after %d increments the cursor is %d", workers*each, c.Received)
		}
		return nil
	})
}

// testRecordsInArea checks the exact-area read: only the village's records of
// the asked kinds, in id order, a moved record under its new area only, a
// prefix matching nothing, and the transaction's own writes seen before
// commit.
func testRecordsInArea(t *testing.T, s syncengine.Store) {
	const kindPerson syncengine.Kind = 2
	put := func(tx syncengine.Tx, c syncengine.Change, base syncengine.Record) (syncengine.Record, error) {
		r, err := syncengine.Apply(base, &c)
		if err != nil {
			return r, err
		}
		return r, tx.PutRecord(t.Context(), r)
	}
	var moved syncengine.Record
	update(t, s, func(tx syncengine.Tx) error {
		for _, c := range []syncengine.Change{
			change(replicaA, 1, 3, village, map[int32][]byte{4: field(4, "户3")}),
			change(replicaA, 2, 1, village, map[int32][]byte{4: field(4, "户1")}),
			change(replicaA, 3, 2, otherVillage, map[int32][]byte{4: field(4, "户2")}),
		} {
			if _, err := put(tx, c, syncengine.Record{}); err != nil {
				return err
			}
		}
		p := change(replicaA, 5, 4, village, map[int32][]byte{4: field(4, "人4")})
		p.Kind = kindPerson
		if _, err := put(tx, p, syncengine.Record{}); err != nil {
			return err
		}
		m := change(replicaA, 6, 6, otherVillage, map[int32][]byte{4: field(4, "户6")})
		var err error
		moved, err = put(tx, m, syncengine.Record{})
		return err
	})
	ids := func(rs []syncengine.Record) []int {
		var out []int
		for _, r := range rs {
			out = append(out, int(r.ID()[15]))
		}
		return out
	}
	check := func(tx syncengine.ReadTx, area string, kinds []syncengine.Kind, want []int) {
		t.Helper()
		got, err := tx.RecordsInArea(t.Context(), area, kinds...)
		if err != nil || fmt.Sprint(ids(got)) != fmt.Sprint(want) {
			t.Errorf("RecordsInArea(%s, %v) = %v, %v; want records %v", area, kinds, ids(got), err, want)
		}
	}
	view(t, s, func(tx syncengine.ReadTx) error {
		check(tx, village, []syncengine.Kind{kindHousehold}, []int{1, 3})
		check(tx, village, []syncengine.Kind{kindHousehold, kindPerson}, []int{1, 3, 4})
		check(tx, otherVillage, []syncengine.Kind{kindHousehold}, []int{2, 6})
		check(tx, village[:9], []syncengine.Kind{kindHousehold}, nil) // exact area, not a prefix
		check(tx, village, nil, nil)
		return nil
	})
	update(t, s, func(tx syncengine.Tx) error {
		m := change(replicaA, 7, 6, village, map[int32][]byte{5: field(5, "搬迁")})
		m.Context = moved.Version()
		if _, err := put(tx, m, moved); err != nil {
			return err
		}
		check(tx, village, []syncengine.Kind{kindHousehold}, []int{1, 3, 6})
		check(tx, otherVillage, []syncengine.Kind{kindHousehold}, []int{2})
		return nil
	})
}

// testMeta: a value set in a transaction reads back in it and after it
// commits, not after it rolls back; an empty value replaces the last (it may
// read as nil); a bad key is refused.
func testMeta(t *testing.T, s syncengine.Store) {
	ctx := t.Context()
	get := func(key string) []byte {
		t.Helper()
		var v []byte
		view(t, s, func(tx syncengine.ReadTx) error {
			var err error
			v, err = tx.Meta(ctx, key)
			return err
		})
		return v
	}
	if v := get("cursor"); v != nil {
		t.Fatalf("Meta of an unset key = %q, want nil", v)
	}
	update(t, s, func(tx syncengine.Tx) error {
		if err := tx.SetMeta(ctx, "cursor", []byte("tok1")); err != nil {
			return err
		}
		v, err := tx.Meta(ctx, "cursor")
		if err == nil && string(v) != "tok1" {
			t.Errorf("Meta in the writing transaction = %q, want tok1", v)
		}
		return err
	})
	if v := get("cursor"); string(v) != "tok1" {
		t.Errorf("Meta after commit = %q, want tok1", v)
	}
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		if err := tx.SetMeta(ctx, "cursor", []byte("tok2")); err != nil {
			return err
		}
		return errTest
	})
	if !errors.Is(err, errTest) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if v := get("cursor"); string(v) != "tok1" {
		t.Errorf("Meta after a rolled-back write = %q, want tok1", v)
	}
	update(t, s, func(tx syncengine.Tx) error { return tx.SetMeta(ctx, "cursor", []byte{}) })
	if v := get("cursor"); len(v) != 0 {
		t.Errorf("Meta after setting an empty value = %q, want empty", v)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if err := s.Update(ctx, func(tx syncengine.Tx) error { return tx.SetMeta(ctx, bad, []byte("x")) }); err == nil {
			t.Errorf("SetMeta(%q) succeeded", bad)
		}
	}
}

// testRenumber: a store whose transactions renumber (syncengine.Renumberer)
// gives a replica's changes from a position on new dots above a floor, in
// its log, its dots and its records; one that does not refuses with
// ErrCannotRenumber and changes nothing.
func testRenumber(t *testing.T, s syncengine.Store) {
	ctx := t.Context()
	c1 := change(replicaA, 1, 1, village, map[int32][]byte{4: field(4, "甲")})
	c2 := change(replicaA, 2, 1, village, map[int32][]byte{4: field(4, "乙")})
	c2.Context = syncengine.NewVersionVector(c1.Dot)
	c3 := change(replicaA, 3, 2, village, map[int32][]byte{4: field(4, "丙")})
	var r1, r2 syncengine.Record
	var err error
	if r1, err = syncengine.Apply(syncengine.Record{}, &c1); err == nil {
		r1, err = syncengine.Apply(r1, &c2)
	}
	if err == nil {
		r2, err = syncengine.Apply(syncengine.Record{}, &c3)
	}
	if err != nil {
		t.Fatal(err)
	}
	pos := appendAll(t, s, c1, c2, c3)
	update(t, s, func(tx syncengine.Tx) error {
		if err := tx.PutRecord(ctx, r1); err != nil {
			return err
		}
		return tx.PutRecord(ctx, r2)
	})
	n, err := syncengine.Renumber(ctx, s, replicaA, pos[1], 10, nil)
	var rn bool
	update(t, s, func(tx syncengine.Tx) error { _, rn = tx.(syncengine.Renumberer); return nil })
	if !rn {
		if !errors.Is(err, syncengine.ErrCannotRenumber) || n != 0 {
			t.Errorf("Renumber on a store that cannot = %d, %v; want ErrCannotRenumber", n, err)
		}
		return
	}
	if err != nil || n != 2 {
		t.Fatalf("Renumber = %d, %v; want 2", n, err)
	}
	view(t, s, func(tx syncengine.ReadTx) error {
		es, err := tx.ReadLog(ctx, 0, 10)
		if err != nil {
			return err
		}
		want := []uint64{1, 11, 12}
		for i, e := range es {
			if e.Change.Dot.Counter != want[i] {
				t.Errorf("log entry %d has dot %v, want counter %d", e.Pos, e.Change.Dot, want[i])
			}
		}
		if len(es) == 3 && !es[1].Change.Context.Contains(syncengine.Dot{Replica: replicaA, Counter: 10}) {
			t.Errorf("renumbered context %v does not cover the floor", es[1].Change.Context)
		}
		for _, d := range []syncengine.Dot{{Replica: replicaA, Counter: 11}, {Replica: replicaA, Counter: 12}} {
			if seen, err := tx.Seen(ctx, d); err != nil || !seen {
				t.Errorf("Seen(%v) = %v, %v", d, seen, err)
			}
		}
		if seen, _ := tx.Seen(ctx, c2.Dot); seen {
			t.Errorf("the old dot %v is still seen", c2.Dot)
		}
		if m, err := tx.MaxCounter(ctx, replicaA); err != nil || m != 12 {
			t.Errorf("MaxCounter = %d, %v; want 12", m, err)
		}
		r, err := tx.Record(ctx, r1.ID())
		if err != nil {
			return err
		}
		if !r.Version().Contains(syncengine.Dot{Replica: replicaA, Counter: 11}) {
			t.Errorf("record version %v lacks the new dot", r.Version())
		}
		for _, w := range r.Writes(4) {
			if w.Dot == c2.Dot {
				t.Errorf("record keeps a write under the old dot %v", w.Dot)
			}
		}
		return nil
	})
}
