package syncclient_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncclient"
	"github.com/fieldsync/fieldsync/syncengine"
)

// storeWatch is a replica that watches its transactions: how many run at
// once, whether one starts after the sync returned, and the snapshot's
// commits (those that store the pull cursor); the failAt-th of those fails.
type storeWatch struct {
	memReplica
	cursorKey           string
	running, most       atomic.Int32
	commits, failAt     atomic.Int32
	returned, afterward atomic.Bool
	cfg                 *syncclient.Config
	target              syncclient.Target
}

var errDiskFull = errors.New("disk full")

func (w *storeWatch) Update(ctx context.Context, fn func(syncengine.Tx) error) error {
	if w.returned.Load() {
		w.afterward.Store(true)
	}
	n := w.running.Add(1)
	defer w.running.Add(-1)
	if n > w.most.Load() {
		w.most.Store(n)
	}
	return w.memReplica.Update(ctx, func(tx syncengine.Tx) error {
		time.Sleep(5 * time.Millisecond) // as a phone's disk: a sync that left one running would return before it ends
		return fn(watchedTx{tx, w})
	})
}

type watchedTx struct {
	syncengine.Tx
	w *storeWatch
}

func (t watchedTx) SetMeta(ctx context.Context, key string, v []byte) error {
	if key == t.w.cursorKey && len(v) > 0 {
		if t.w.commits.Add(1) == t.w.failAt.Load() {
			return errDiskFull
		}
	}
	return t.Tx.SetMeta(ctx, key, v)
}

// A snapshot's records are stored while the next ones arrive, one
// transaction at a time, in order: a commit that fails ends the sync with
// its error (the records after it are not stored, nor is the sync over
// before the store is), and the next sync gets everything, once.
func TestSnapshotStoredWhileReceived(t *testing.T) {
	srv, addr := servertest.Start(t, server.Config{IDHashKey: []byte("test id hash key"), MaxPullBytes: 1 << 10})
	ctx := t.Context()
	a, ta := replica(t, srv, addr)
	const households = 60
	var ids []syncengine.RecordID
	err := a.Store.Update(ctx, func(tx syncengine.Tx) error {
		for i := range households {
			rec := household(fmt.Sprintf("019a9f3c-1b2e-7c41-8a5e-2f1d0c9b%04x", i), fmt.Sprintf("户主%d", i))
			id, err := writeTx(ctx, tx, a, rec)
			ids = append(ids, id)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := syncclient.Sync(ctx, a, ta, nil); err != nil {
		t.Fatal(err)
	}

	syncclient.SetSnapshotCommit(t, 8)
	// sync enrols a replica and syncs it with the failAt-th commit failing
	// (none when 0), then checks what ran.
	sync := func(w *storeWatch, failAt int32) error {
		t.Helper()
		w.commits.Store(0)
		w.failAt.Store(failAt)
		w.returned.Store(false)
		err := syncclient.Sync(ctx, w.cfg, w.target, nil)
		w.returned.Store(true)
		if w.running.Load() != 0 {
			t.Error("Sync returned with a transaction running")
		}
		if w.afterward.Load() {
			t.Error("a transaction started after Sync returned")
		}
		if got := w.most.Load(); got != 1 {
			t.Errorf("%d transactions ran at once, want 1", got)
		}
		return err
	}
	clean := watch(t, srv, addr)
	if err := sync(clean, 0); err != nil {
		t.Fatal(err)
	}
	last := clean.commits.Load()
	if last < 4 {
		t.Fatalf("the snapshot took %d commits, want at least 4", last)
	}
	for _, failAt := range []int32{3, last} {
		w := watch(t, srv, addr)
		err := sync(w, failAt)
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("Sync with commit %d of %d failing = %v, want %v", failAt, last, err, errDiskFull)
		}
		if got := w.commits.Load(); got != failAt {
			t.Errorf("%d commits tried, want %d: none after the one that failed", got, failAt)
		}
		// The last commit may hold the snapshot's end alone.
		if got := len(w.Records()); got < int(failAt-1)*8 || (failAt < last && got >= households) {
			t.Errorf("the replica holds %d records after %d commits of at least 8, want from %d to fewer than %d",
				got, failAt-1, (failAt-1)*8, households)
		}
		if err := sync(w, 0); err != nil {
			t.Fatal(err)
		}
		recs := w.Records()
		if len(recs) != households {
			t.Fatalf("the replica holds %d records, want %d", len(recs), households)
		}
		for i, r := range recs {
			if r.ID() != ids[i] {
				t.Fatalf("record %d is %v, want %v", i, r.ID(), ids[i])
			}
		}
	}
}

// watch enrols a new in-memory replica with srv, watched.
func watch(t *testing.T, srv *server.Server, addr string) *storeWatch {
	cfg, tg := replica(t, srv, addr)
	w := &storeWatch{memReplica: cfg.Store.(memReplica), cursorKey: cfg.CursorKey, cfg: cfg, target: tg}
	cfg.Store = w
	return w
}
