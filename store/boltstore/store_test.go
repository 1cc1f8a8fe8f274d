package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

func TestOpenCreatesAndReopensWithSameReplica(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	id := s.Replica()
	if id.IsZero() {
		t.Fatal("new store has a zero replica id")
	}
	if got, want := s.Path(), path; got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	apply(t, s, change(replicaID("phone"), 1, recordID(1), villageA, syncengine.VersionVector{}, map[int32]string{1: "a"}))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path)
	if got, want := s.Replica(), id; got != want {
		t.Errorf("reopened replica %v, want %v", got, want)
	}
	if got, want := len(readLog(t, s, 0)), 1; got != want {
		t.Errorf("reopened log has %d entries, want %d", got, want)
	}
}

func TestOpenReplicaOption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	want := replicaID("township-1")
	o := testOptions
	o.Replica = want
	s, err := boltstore.Open(path, &o)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Replica(); got != want {
		t.Errorf("replica %v, want %v", got, want)
	}
	s.Close()

	o.Replica = replicaID("township-2")
	if _, err := boltstore.Open(path, &o); !errors.Is(err, boltstore.ErrReplicaMismatch) {
		t.Fatalf("open with another replica id: %v, want ErrReplicaMismatch", err)
	}
	openAt(t, path) // a zero Options.Replica accepts any store
}

func TestOpenWhileOpenIsLocked(t *testing.T) {
	s := openStore(t)
	o := testOptions
	o.Timeout = 50 * time.Millisecond
	if _, err := boltstore.Open(s.Path(), &o); !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestUpdateErrorRollsBack(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		c := change(replicaID("phone"), 1, recordID(1), villageA, syncengine.VersionVector{}, map[int32]string{1: "a"})
		if _, err := tx.Append(ctx, c); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Update returned %v, want fn's error unchanged", err)
	}
	if got := readLog(t, s, 0); len(got) != 0 {
		t.Errorf("log after rolled back append: %d entries", len(got))
	}
	end, err := s.LogEnd(ctx)
	if err != nil || end != 0 {
		t.Errorf("LogEnd = %d, %v; want 0 (the sequence rolls back too)", end, err)
	}
}

func TestCancelledContextRunsNothing(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	if err := s.Update(ctx, func(syncengine.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update: %v, want context.Canceled", err)
	}
	if err := s.View(ctx, func(syncengine.ReadTx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("View: %v, want context.Canceled", err)
	}
	if ran {
		t.Error("fn ran with a cancelled context")
	}
}

func TestTxUsedAfterItEnded(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	var kept syncengine.Tx
	if err := s.Update(ctx, func(tx syncengine.Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Record(ctx, recordID(1)); err == nil {
		t.Error("Record on an ended transaction succeeded")
	}
	if err := kept.SetCursor(ctx, replicaID("x"), syncengine.Cursor{}); err == nil {
		t.Error("SetCursor on an ended transaction succeeded")
	}
}

func TestWriteInViewFails(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	err := s.View(ctx, func(rtx syncengine.ReadTx) error {
		return rtx.(syncengine.Tx).SetCursor(ctx, replicaID("x"), syncengine.Cursor{Received: 1})
	})
	if err == nil {
		t.Fatal("a write in a View succeeded")
	}
}

func TestAppendDeduplicatesDots(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	phone := replicaID("phone")
	c := change(phone, 1, recordID(1), villageA, syncengine.VersionVector{}, map[int32]string{1: "a"})
	if got, want := apply(t, s, c), syncengine.Position(1); got != want {
		t.Fatalf("first append at %d, want %d", got, want)
	}
	again := c
	again.ID = newChangeID() // same dot, another id: still the same change slot
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		_, err := tx.Append(ctx, again)
		return err
	})
	if !errors.Is(err, syncengine.ErrDotExists) {
		t.Fatalf("second append: %v, want ErrDotExists", err)
	}
	// Within one transaction too.
	c2 := change(phone, 2, recordID(2), villageA, syncengine.VersionVector{}, map[int32]string{1: "b"})
	err = s.Update(ctx, func(tx syncengine.Tx) error {
		if _, err := tx.Append(ctx, c2); err != nil {
			return err
		}
		if seen, err := tx.Seen(ctx, c2.Dot); err != nil || !seen {
			t.Errorf("Seen in the appending tx = %v, %v", seen, err)
		}
		_, err := tx.Append(ctx, c2)
		return err
	})
	if !errors.Is(err, syncengine.ErrDotExists) {
		t.Fatalf("append twice in one tx: %v, want ErrDotExists", err)
	}
	if got, want := len(readLog(t, s, 0)), 1; got != want {
		t.Errorf("log has %d entries, want %d", got, want)
	}
}

func TestMaxCounterAcrossOrigins(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	// Neighbouring ids, and ids at the ends of the key space, so that the
	// seek to an origin's last key must not stray into its neighbours.
	var low, high syncengine.ReplicaID
	for i := range high {
		high[i] = 0xff
	}
	low[15] = 1
	a, b, between := replicaID("a"), replicaID("b"), replicaID("ab")
	counters := map[syncengine.ReplicaID][]uint64{
		low: {1, 2}, a: {1, 2, 3, 300, 7}, b: {1, 1 << 40}, high: {5},
	}
	rec := uint64(0)
	for origin, ns := range counters {
		for _, n := range ns {
			rec++
			apply(t, s, change(origin, n, recordID(rec), villageA, syncengine.VersionVector{}, map[int32]string{1: "x"}))
		}
	}
	want := map[syncengine.ReplicaID]uint64{low: 2, a: 300, b: 1 << 40, high: 5, between: 0, replicaID("zz"): 0, {}: 0}
	err := s.View(ctx, func(tx syncengine.ReadTx) error {
		for origin, w := range want {
			got, err := tx.MaxCounter(ctx, origin)
			if err != nil {
				return err
			}
			if got != w {
				t.Errorf("MaxCounter(%v) = %d, want %d", origin, got, w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadLogPagesInOrder(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	phone := replicaID("phone")
	for i := range 10 {
		apply(t, s, change(phone, uint64(i+1), recordID(uint64(i)), villageA, syncengine.VersionVector{}, map[int32]string{1: "x"}))
	}
	var got []syncengine.Position
	err := s.View(ctx, func(tx syncengine.ReadTx) error {
		for after := syncengine.Position(0); ; {
			page, err := tx.ReadLog(ctx, after, 3)
			if err != nil {
				return err
			}
			for _, e := range page {
				got = append(got, e.Pos)
				after = e.Pos
			}
			if len(page) < 3 {
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0] != 1 || got[9] != 10 {
		t.Errorf("positions %v, want 1..10", got)
	}
	if none := readLog(t, s, 10); len(none) != 0 {
		t.Errorf("read after the end: %d entries", len(none))
	}
}

func TestReplaceChange(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	phone := replicaID("phone")
	c := change(phone, 1, recordID(1), villageA, syncengine.VersionVector{}, map[int32]string{1: "a"})
	pos := apply(t, s, c)
	apply(t, s, change(phone, 2, recordID(2), villageA, syncengine.VersionVector{}, map[int32]string{1: "b"}))

	fixed := c
	fixed.Stamp.WallMS += 1000
	fixed.Area = villageB // not something the engine does, but the index must follow
	other := change(phone, 9, recordID(1), villageA, syncengine.VersionVector{}, nil)
	tests := []struct {
		name string
		pos  syncengine.Position
		c    syncengine.Change
		want error
	}{
		{"same dot", pos, fixed, nil},
		{"no entry", 99, fixed, syncengine.ErrNoEntry},
		{"other dot", pos, other, syncengine.ErrNoEntry},
	}
	for _, tt := range tests {
		err := s.Update(ctx, func(tx syncengine.Tx) error { return tx.ReplaceChange(ctx, tt.pos, tt.c) })
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ReplaceChange = %v, want %v", tt.name, err, tt.want)
		}
	}
	got := readLog(t, s, 0)[0].Change
	if got.Stamp != fixed.Stamp || got.Area != villageB {
		t.Errorf("replaced change stamp %v area %s, want %v %s", got.Stamp, got.Area, fixed.Stamp, villageB)
	}
	inB, _, err := s.ReadLogArea(ctx, []string{villageB}, 0, 10)
	if err != nil || len(inB) != 1 || inB[0].Pos != pos {
		t.Errorf("ReadLogArea(villageB) = %v, %v; want the replaced entry", inB, err)
	}
	inA, _, err := s.ReadLogArea(ctx, []string{villageA}, 0, 10)
	if err != nil || len(inA) != 1 || inA[0].Pos == pos {
		t.Errorf("ReadLogArea(villageA) = %d entries, %v; want only the other entry", len(inA), err)
	}
}

func TestCursorsAndRejections(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	p1, p2 := replicaID("p1"), replicaID("p2")
	d := syncengine.Dot{Replica: s.Replica(), Counter: 4}
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		if err := tx.SetCursor(ctx, p1, syncengine.Cursor{Received: 7, Acked: 3}); err != nil {
			return err
		}
		rej := syncengine.Rejection{Peer: p2, Pos: 4, ID: newChangeID(), Dot: d, Outcome: syncengine.OutcomeInvalid, Detail: "first"}
		if err := tx.PutRejection(ctx, rej); err != nil {
			return err
		}
		rej.Detail, rej.Outcome = "second", syncengine.OutcomeOutOfScope
		rej.Reason, rej.Fields = "OUTSIDE_AREAS", []syncengine.FieldError{{Path: "area_code", Reason: 5, Message: "村外"}, {Path: "x", Reason: -1}}
		if err := tx.PutRejection(ctx, rej); err != nil {
			return err
		}
		rej.Peer, rej.Pos, rej.Detail, rej.Reason, rej.Fields = p1, 2, "other peer", "", nil
		return tx.PutRejection(ctx, rej)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		c1, err := tx.Cursor(ctx, p1)
		if err != nil {
			return err
		}
		c2, err := tx.Cursor(ctx, p2)
		if got, want := c1, (syncengine.Cursor{Received: 7, Acked: 3}); got != want {
			t.Errorf("cursor p1 = %+v, want %+v", got, want)
		}
		if c2 != (syncengine.Cursor{}) {
			t.Errorf("cursor p2 = %+v, want zero", c2)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rejs, err := s.Rejections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rejs) != 2 {
		t.Fatalf("got %d rejections, want 2 (one replaced): %+v", len(rejs), rejs)
	}
	if got := rejs[1]; got.Peer != p2 || got.Detail != "second" || got.Outcome != syncengine.OutcomeOutOfScope || got.Dot != d || got.Pos != 4 ||
		got.Reason != "OUTSIDE_AREAS" || !slices.Equal(got.Fields, []syncengine.FieldError{{Path: "area_code", Reason: 5, Message: "村外"}, {Path: "x", Reason: -1}}) {
		t.Errorf("rejection = %+v, want p2's replaced one, with its reason and field errors", got)
	}
	if got := rejs[0]; got.Reason != "" || got.Fields != nil || got.Detail != "other peer" {
		t.Errorf("rejection without reason = %+v", got)
	}
	if got := rejs[0]; got.Peer != p1 || got.Pos != 2 {
		t.Errorf("first rejection = %+v, want p1's at 2", got)
	}
}
