package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
)

// shiftedClock is a server clock the test moves forward by whole days.
type shiftedClock struct{ offset atomic.Int64 }

func (c *shiftedClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *shiftedClock) advance(d time.Duration) {
	c.offset.Add(int64(d))
}

// sdkPhone opens an SDK replica and enrols it at the server srv on addr for
// area.
func sdkPhone(t *testing.T, srv *server.Server, addr, area string) *fieldsync.Client {
	t.Helper()
	c, err := fieldsync.Open(t.Context(), filepath.Join(t.TempDir(), "phone.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	code, _, err := srv.IssueEnrolmentCode([]string{area}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), addr, code); err != nil {
		t.Fatal(err)
	}
	return c
}

func compactLog(t *testing.T, srv *server.Server, retention time.Duration) int {
	t.Helper()
	n, err := srv.CompactLog(t.Context(), retention)
	if err != nil {
		t.Fatalf("CompactLog: %v", err)
	}
	return n
}

// TestCompactLogRetention: what both phones pulled is dropped at once; what
// one phone has not pulled stays until it is older than the retention, then
// goes, and that phone's next sync pushes its work and starts again from a
// snapshot.
func TestCompactLogRetention(t *testing.T) {
	var clock shiftedClock
	srv, addr := servertest.Start(t, server.Config{IDHashKey: []byte("test id hash key"), Now: clock.now})
	ctx := t.Context()
	away, daily := sdkPhone(t, srv, addr, villageA), sdkPhone(t, srv, addr, villageA)
	const retention = 30 * 24 * time.Hour

	for _, sbp := range []int32{130, 140, 150} {
		if err := away.Save(ctx, followUp(t, villageA, sbp, 85)); err != nil {
			t.Fatal(err)
		}
	}
	mustSyncAll(t, away, daily, away)
	if n := compactLog(t, srv, retention); n != 3 {
		t.Fatalf("CompactLog after both phones pulled everything dropped %d, want 3", n)
	}

	// The first phone goes away; the other records a month of follow-ups.
	var theirs []*fieldsyncv1.Record
	for d := range 40 {
		clock.advance(24 * time.Hour)
		if d%8 == 0 {
			r := followUp(t, villageA, 120+int32(d), 80)
			theirs = append(theirs, r)
			if err := daily.Save(ctx, r); err != nil {
				t.Fatal(err)
			}
			mustSyncAll(t, daily)
		}
		n := compactLog(t, srv, retention)
		if d < 30 && n != 0 {
			t.Fatalf("day %d: CompactLog dropped %d entries the away phone has not pulled, before the retention", d+1, n)
		}
	}
	cp, err := srv.Store().Compacted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp <= 3 {
		t.Fatalf("after 40 days the log is compacted through %d only, want past the away phone's 3", cp)
	}

	// The away phone comes back with work of its own.
	mine := followUp(t, villageA, 160, 95)
	if err := away.Save(ctx, mine); err != nil {
		t.Fatal(err)
	}
	snapshot := false
	if err := away.Sync(ctx, fieldsync.OnProgress(func(p fieldsync.Progress) { snapshot = snapshot || p.Snapshot })); err != nil {
		t.Fatalf("Sync after the compaction: %v", err)
	}
	if !snapshot {
		t.Error("the away phone's pull was not a snapshot")
	}
	if st, err := away.Status(ctx); err != nil || st.Pending != 0 || len(st.Rejected) != 0 {
		t.Errorf("away phone's Status = %+v, %v; want everything sent", st, err)
	}
	for _, r := range theirs {
		id := r.GetFollowUp().GetId()
		if _, err := away.Get(ctx, id); err != nil {
			t.Errorf("the away phone lacks follow-up %s after its snapshot: %v", id, err)
		}
	}
	mustSyncAll(t, daily)
	if _, err := daily.Get(ctx, mine.GetFollowUp().GetId()); err != nil {
		t.Errorf("the daily phone lacks the away phone's follow-up: %v", err)
	}
	err = srv.Store().View(ctx, func(tx syncengine.ReadTx) error {
		n, err := tx.MaxCounter(ctx, away.Replica())
		if err == nil && n != 4 {
			t.Errorf("the server holds %d changes of the away phone, want 4", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunLoops: the server's background loops do their work, return nil
// when their context ends and ErrClosed when the server closes under them,
// and leave no goroutine behind.
func TestRunLoops(t *testing.T) {
	// Checked last, after the server and phone are closed by their cleanups.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	srv, addr := servertest.Start(t, server.Config{IDHashKey: []byte("test id hash key")})
	ctx := t.Context()
	phone := sdkPhone(t, srv, addr, villageA)
	for _, sbp := range []int32{130, 140} {
		if err := phone.Save(ctx, followUp(t, villageA, sbp, 85)); err != nil {
			t.Fatal(err)
		}
	}
	// The pull of a sync is asked for before its push: the phone's second
	// sync is the one that has pulled past its own changes.
	mustSyncAll(t, phone, phone)
	end, err := srv.Store().LogEnd(ctx)
	if err != nil || end != 2 {
		t.Fatalf("LogEnd = %d, %v; want 2", end, err)
	}
	backups := t.TempDir()
	loops := map[string]func(context.Context) error{
		"compaction": func(ctx context.Context) error { return srv.RunCompaction(ctx, 0, time.Millisecond) },
		"indicators": func(ctx context.Context) error { return srv.RunIndicators(ctx, time.Millisecond) },
		"backups":    func(ctx context.Context) error { return srv.RunBackups(ctx, backups, time.Millisecond) },
	}
	run := func(ctx context.Context) map[string]chan error {
		done := map[string]chan error{}
		for name, loop := range loops {
			ch := make(chan error, 1)
			done[name] = ch
			go func() { ch <- loop(ctx) }()
		}
		return done
	}
	loopCtx, cancel := context.WithCancel(ctx)
	done := run(loopCtx)
	for {
		cp, err := srv.Store().Compacted(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, statErr := os.Stat(filepath.Join(backups, server.BackupFile))
		if cp == end && statErr == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the log was never compacted (through %d, want %d) or the store never backed up (%v)", cp, end, statErr)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	for name, ch := range done {
		if err := <-ch; err != nil {
			t.Errorf("%s: %v after its context ended, want nil", name, err)
		}
	}
	// Stopped for good: new entries stay in the log.
	if err := phone.Save(ctx, followUp(t, villageA, 150, 85)); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, phone)
	if cp, err := srv.Store().Compacted(ctx); err != nil || cp != end {
		t.Errorf("compacted through %d, %v after the loop ended; want still %d", cp, err, end)
	}
	// The server closed under them: ErrClosed.
	done = run(ctx)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range done {
		if err := <-ch; !errors.Is(err, server.ErrClosed) {
			t.Errorf("%s: %v when the server closed, want ErrClosed", name, err)
		}
	}
}

// TestCompactLogKeepsWhatTheCountyLacks: a township never drops what its
// county has not acknowledged, even what every phone pulled long ago.
func TestCompactLogKeepsWhatTheCountyLacks(t *testing.T) {
	tr := newTiers(t)
	ctx := t.Context()
	phone := phoneAt(t, tr.town, tr.townAddr, villageA)
	for _, sbp := range []int32{130, 140} {
		if err := phone.Save(ctx, followUp(t, villageA, sbp, 85)); err != nil {
			t.Fatal(err)
		}
	}
	mustSyncAll(t, phone, phone) // the second sync pulls past the phone's own changes
	end, err := tr.town.Store().LogEnd(ctx)
	if err != nil || end != 2 {
		t.Fatalf("township LogEnd = %d, %v; want 2", end, err)
	}
	// With a retention of a nanosecond every entry is old enough (the first
	// call records the arrival mark, the second surely finds it old).
	for range 2 {
		if n := compactLog(t, tr.town, time.Nanosecond); n != 0 {
			t.Fatalf("CompactLog dropped %d entries the county has not acknowledged", n)
		}
	}
	if err := tr.town.SyncUpstream(ctx); err != nil {
		t.Fatalf("SyncUpstream: %v", err)
	}
	if n := compactLog(t, tr.town, 0); n != 2 {
		t.Fatalf("CompactLog after the county acknowledged everything dropped %d, want 2", n)
	}
	// The relay goes on from the compacted log.
	if err := phone.Save(ctx, followUp(t, villageA, 150, 85)); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, phone)
	if err := tr.town.SyncUpstream(ctx); err != nil {
		t.Fatalf("SyncUpstream after compaction: %v", err)
	}
	err = tr.county.Store().View(ctx, func(tx syncengine.ReadTx) error {
		n, err := tx.MaxCounter(ctx, phone.Replica())
		if err == nil && n != 3 {
			t.Errorf("the county holds %d of the phone's changes, want 3", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
