package memstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
)

func testChange(origin byte, counter uint64) syncengine.Change {
	o := syncengine.ReplicaID{origin}
	return syncengine.Change{
		ID: syncengine.ChangeID{origin, byte(counter)}, RecordID: syncengine.RecordID{9}, Kind: 1,
		Area: "530102001001", Origin: o, Dot: syncengine.Dot{Replica: o, Counter: counter},
		Stamp: syncengine.Stamp{WallMS: int64(counter), Replica: o}, Fields: map[int32][]byte{1: {byte(counter)}},
	}
}

func TestUpdateCommitsOnlyOnSuccess(t *testing.T) {
	s := memstore.New()
	ctx := t.Context()
	errAbort := errors.New("abort")
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		if _, err := tx.Append(ctx, testChange(1, 1)); err != nil {
			return err
		}
		if seen, _ := tx.Seen(ctx, syncengine.Dot{Replica: syncengine.ReplicaID{1}, Counter: 1}); !seen {
			t.Errorf("transaction does not see its own append")
		}
		if err := tx.SetCursor(ctx, syncengine.ReplicaID{2}, syncengine.Cursor{Received: 5}); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("err = %v, want the function's error", err)
	}
	if s.Len() != 0 {
		t.Errorf("aborted append was kept")
	}
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		c, err := tx.Cursor(ctx, syncengine.ReplicaID{2})
		if c != (syncengine.Cursor{}) {
			t.Errorf("aborted cursor was kept: %+v", c)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLogPositionsDotsAndCounters(t *testing.T) {
	s := memstore.New()
	ctx := t.Context()
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		for _, c := range []syncengine.Change{testChange(1, 1), testChange(2, 7), testChange(1, 3)} {
			if _, err := tx.Append(ctx, c); err != nil {
				return err
			}
		}
		if _, err := tx.Append(ctx, testChange(2, 7)); !errors.Is(err, syncengine.ErrDotExists) {
			t.Errorf("duplicate append: err = %v, want ErrDotExists", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		entries, err := tx.ReadLog(ctx, 1, 10)
		if err != nil {
			return err
		}
		if len(entries) != 2 || entries[0].Pos != 2 || entries[1].Pos != 3 || entries[1].Change.Dot.Counter != 3 {
			t.Errorf("ReadLog(1) = %+v, want positions 2, 3", entries)
		}
		if n, _ := tx.MaxCounter(ctx, syncengine.ReplicaID{1}); n != 3 {
			t.Errorf("MaxCounter = %d, want 3", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReplaceChangeRequiresTheSameDot(t *testing.T) {
	s := memstore.New()
	ctx := t.Context()
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		if _, err := tx.Append(ctx, testChange(1, 1)); err != nil {
			return err
		}
		c := testChange(1, 1)
		c.Stamp.WallMS = 99
		if err := tx.ReplaceChange(ctx, 1, c); err != nil {
			return err
		}
		if err := tx.ReplaceChange(ctx, 1, testChange(1, 2)); !errors.Is(err, syncengine.ErrNoEntry) {
			t.Errorf("other dot: err = %v, want ErrNoEntry", err)
		}
		if err := tx.ReplaceChange(ctx, 5, c); !errors.Is(err, syncengine.ErrNoEntry) {
			t.Errorf("missing position: err = %v, want ErrNoEntry", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		e, err := tx.ReadLog(ctx, 0, 1)
		if err == nil && e[0].Change.Stamp.WallMS != 99 {
			t.Errorf("stamp = %d, want 99", e[0].Change.Stamp.WallMS)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadsReturnCopies(t *testing.T) {
	s := memstore.New()
	ctx := t.Context()
	c := testChange(1, 1)
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		_, err := tx.Append(ctx, c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Fields[1][0] = 0xff // the caller's value, after the store took it
	_ = s.View(ctx, func(tx syncengine.ReadTx) error {
		e, _ := tx.ReadLog(ctx, 0, 1)
		if e[0].Change.Fields[1][0] != 1 {
			t.Errorf("store shares memory with the appended change")
		}
		e[0].Change.Fields[1][0] = 0xee
		return nil
	})
	_ = s.View(ctx, func(tx syncengine.ReadTx) error {
		e, _ := tx.ReadLog(ctx, 0, 1)
		if e[0].Change.Fields[1][0] != 1 {
			t.Errorf("store shares memory with a returned change")
		}
		return nil
	})
}

func TestTransactionIsInvalidAfterItEnds(t *testing.T) {
	s := memstore.New()
	var kept syncengine.Tx
	_ = s.Update(t.Context(), func(tx syncengine.Tx) error { kept = tx; return nil })
	if _, err := kept.Append(t.Context(), testChange(1, 1)); err == nil {
		t.Errorf("append through an ended transaction succeeded")
	}
}

func TestCanceledContextRunsNothing(t *testing.T) {
	s := memstore.New()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	if err := s.Update(ctx, func(syncengine.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("Update on a canceled context: err %v, ran %v", err, ran)
	}
}

func TestConcurrentTransactions(t *testing.T) {
	s := memstore.New()
	ctx := t.Context()
	const writers, each = 4, 50
	errs := make(chan error, writers+1)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				err := s.Update(ctx, func(tx syncengine.Tx) error {
					_, err := tx.Append(ctx, testChange(byte(w+1), uint64(i+1)))
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range each {
			err := s.View(ctx, func(tx syncengine.ReadTx) error {
				entries, err := tx.ReadLog(ctx, 0, writers*each)
				for i, e := range entries {
					if e.Pos != syncengine.Position(i+1) {
						t.Errorf("position %d at index %d", e.Pos, i)
					}
				}
				return err
			})
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, want := s.Len(), writers*each; got != want {
		t.Errorf("log length = %d, want %d", got, want)
	}
}
