package syncclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncclient"
	"github.com/fieldsync/fieldsync/syncengine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	// cancelAt: the cancelAt-th commit calls cancel.
	cancelAt atomic.Int32
	cancel   func()
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
		if err := fn(watchedTx{tx, w}); err != nil {
			return err
		}
		return ctx.Err() // as an SQL transaction begun with ctx: rolled back once it is cancelled
	})
}

type watchedTx struct {
	syncengine.Tx
	w *storeWatch
}

func (t watchedTx) SetMeta(ctx context.Context, key string, v []byte) error {
	if key == t.w.cursorKey && len(v) > 0 {
		n := t.w.commits.Add(1)
		if n == t.w.failAt.Load() {
			return errDiskFull
		}
		if n == t.w.cancelAt.Load() {
			t.w.cancel()
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
	const households = 60
	ids := seedHouseholds(t, srv, addr, households)

	syncclient.SetSnapshotCommit(t, 8)
	// sync syncs the watched replica with the failAt-th commit failing
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

// seedHouseholds saves n households of the village on a new replica and
// syncs it with srv, and returns their ids in id order.
func seedHouseholds(t *testing.T, srv *server.Server, addr string, n int) []syncengine.RecordID {
	t.Helper()
	ctx := t.Context()
	a, ta := replica(t, srv, addr)
	var ids []syncengine.RecordID
	err := a.Store.Update(ctx, func(tx syncengine.Tx) error {
		for i := range n {
			rec := household(fmt.Sprintf("019a9f3c-1b2e-7c41-8a5e-2f1d0c9b%04x", i), fmt.Sprintf("户主%d", i))
			id, err := writeTx(ctx, tx, a, rec)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := syncclient.Sync(ctx, a, ta, nil); err != nil {
		t.Fatal(err)
	}
	return ids
}

// watch enrols a new in-memory replica with srv, watched.
func watch(t *testing.T, srv *server.Server, addr string) *storeWatch {
	cfg, tg := replica(t, srv, addr)
	w := &storeWatch{memReplica: cfg.Store.(memReplica), cursorKey: cfg.CursorKey, cfg: cfg, target: tg}
	cfg.Store = w
	return w
}

// A snapshot's records received whole are kept when the sync ends while
// some are being stored: cancelled by the app, or the stream cut.
func TestSnapshotKeptWhenThePullEnds(t *testing.T) {
	var cut, sent atomic.Int32
	cut.Store(-1)
	cutPull := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if !strings.HasSuffix(info.FullMethod, "/Pull") {
			return h(srv, ss)
		}
		return h(srv, &cutStream{ServerStream: ss, left: &cut, sent: &sent})
	}
	srv, addr := servertest.Start(t, server.Config{IDHashKey: []byte("test id hash key"), MaxPullBytes: 1 << 10},
		grpc.ChainStreamInterceptor(cutPull))
	ctx := t.Context()
	const households = 60
	seedHouseholds(t, srv, addr, households)
	syncclient.SetSnapshotCommit(t, 8)

	// Cancelled in the second commit, which runs in the background: it is
	// kept, and so are the records received whole after it.
	w := watch(t, srv, addr)
	sctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	w.cancelAt.Store(2)
	err := syncclient.Sync(sctx, w.cfg, w.target, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync cancelled = %v, want it cancelled", err)
	}
	if w.running.Load() != 0 {
		t.Error("Sync returned with a transaction running")
	}
	if got := len(w.Records()); got < 2*8 {
		t.Errorf("the replica holds %d records after its sync was cancelled in the second commit, want at least 16", got)
	}

	// The stream cut after 10 responses (3 records each; the last not yet
	// committed when it is cut): every record of them is kept.
	w = watch(t, srv, addr)
	w.cfg.Retry = syncclient.RetryPolicy{MaxAttempts: 1}
	sent.Store(0)
	cut.Store(10)
	err = syncclient.Sync(ctx, w.cfg, w.target, nil)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Sync with the pull cut = %v, want Unavailable", err)
	}
	t.Logf("the replica holds %d records of the %d sent, in %d commits", len(w.Records()), sent.Load(), w.commits.Load())
	if got, want := len(w.Records()), int(sent.Load()); got != want || got < 2*8 || got >= households {
		t.Errorf("the replica holds %d records after the pull was cut, want the %d received (from 16 to fewer than %d)", got, want, households)
	}
	cut.Store(-1)
	if err := syncclient.Sync(ctx, w.cfg, w.target, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(w.Records()); got != households {
		t.Errorf("the replica holds %d records after the next sync, want %d", got, households)
	}
}

// cutStream counts the records a Pull sends and ends it, Unavailable, once
// left responses are sent (never while left is negative).
type cutStream struct {
	grpc.ServerStream
	left, sent *atomic.Int32
}

func (c *cutStream) SendMsg(m any) error {
	if c.left.Load() >= 0 && c.left.Add(-1) < 0 {
		return status.Error(codes.Unavailable, "the link is cut")
	}
	if r, ok := m.(*fieldsyncv1.PullResponse); ok {
		c.sent.Add(int32(len(r.GetRecords())))
	}
	return c.ServerStream.SendMsg(m)
}
