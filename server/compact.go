package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Log retention defaults for fieldsyncd.
const (
	// DefaultLogRetention is how long the log keeps entries that some device
	// has not pulled: a phone away for longer pushes its work as usual and
	// then starts again from a snapshot of its areas.
	DefaultLogRetention = 30 * 24 * time.Hour
	// DefaultCompactionInterval is how often StartCompaction compacts.
	DefaultCompactionInterval = time.Hour
)

// CompactLog drops the log entries that every registered, non-revoked device
// has pulled, and those that arrived more than retention ago whoever has not
// pulled them (retention 0: never by age). Record states are kept, and so is
// the index of the changes' dots, so nothing a device pushes is lost or
// stored twice; a device whose pull cursor is before the compacted log is
// sent a snapshot (SNAPSHOT_CAUSE_CURSOR_EXPIRED) after it has pushed. On a
// township relaying to its county, nothing the county has not acknowledged
// is dropped, whatever its age.
//
// An entry's age is its arrival time by this server's clock (Config.Now), to
// within the interval between calls: each call records the log end and the
// time, and an entry counts as arrived at the first such record after it
// (boltstore.Store.CompactRetained). Changes' stamps are not used: a phone
// back after two months pushes changes stamped two months ago that no other
// device has pulled yet.
//
// It returns how many entries it dropped, and ErrClosed once the server is
// closed. It is safe to call at any time; StartCompaction calls it
// periodically.
func (s *Server) CompactLog(ctx context.Context, retention time.Duration) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	// A township never drops what its county has not acknowledged: a push
	// cannot fall back to a snapshot.
	r := boltstore.Retention{Now: s.now(), MaxAge: max(retention, 0)}
	up, err := s.upstreamReplica(ctx)
	if err != nil {
		return 0, fmt.Errorf("compact log: %w", err)
	}
	if !up.IsZero() {
		r.Upstream = []syncengine.ReplicaID{up}
	}
	rep, err := s.store.CompactRetained(ctx, r)
	if err != nil {
		return rep.Dropped, fmt.Errorf("compact log: %w", err)
	}
	level := s.log.DebugContext
	if rep.Dropped > 0 {
		level = s.log.InfoContext
	}
	level(ctx, "log compacted", "dropped", rep.Dropped, "through", uint64(rep.Through),
		"pulled_by_all", uint64(rep.Pulled), "arrived_before_retention", uint64(rep.Aged),
		"upstream_acked", uint64(rep.Held), "held_by_upstream", !rep.HeldBy.IsZero(), "retention", retention.String())
	return rep.Dropped, nil
}

// StartCompaction runs CompactLog(ctx, retention) at once and then every
// interval (DefaultCompactionInterval if every <= 0) on a goroutine of its
// own, until ctx is done, the server is closed or the returned stop function
// is called. stop cancels the goroutine and waits for it to end; call it
// before Close. It may be called more than once. A failed compaction is
// logged and tried again at the next interval.
func (s *Server) StartCompaction(ctx context.Context, retention, every time.Duration) (stop func()) {
	if every <= 0 {
		every = DefaultCompactionInterval
	}
	return repeat(ctx, every, func(ctx context.Context) bool {
		_, err := s.CompactLog(ctx, retention)
		switch {
		case errors.Is(err, ErrClosed):
			return false
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "log compaction failed; trying again later", "err", err, "every", every.String())
		}
		return true
	})
}

// StartIndicators keeps the indicators' read model (factstore) in step with
// the store every every, while the server runs, and the figures of the
// server's area as of today computed for the villages changed since, so
// that a report, the web page's first of the day included, finds them
// ready; it returns the function that stops it and waits, as
// StartCompaction's. A failure is logged and tried again at the next tick.
func (s *Server) StartIndicators(ctx context.Context, every time.Duration) (stop func()) {
	return repeat(ctx, every, func(ctx context.Context) bool {
		if s.closed.Load() {
			return false
		}
		err := s.warmIndicators(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "indicators read model failed to catch up; trying again later", "err", err)
		}
		return true
	})
}

// warmIndicators catches the read model up and computes today's figures of
// the server's area that changed, with the rules in force.
func (s *Server) warmIndicators(ctx context.Context) error {
	rules, _, err := s.rules(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	return s.facts.Warm(ctx, indicators.Options{Area: s.cfg.Area, AsOf: now, Now: now, Rules: rules})
}

// BackupFile is the name of the store's backup in the backup directory
// (StartBackups).
const BackupFile = "server-backup.db"

// StartBackups writes a consistent copy of the store into dir/BackupFile at
// once and then every every, while the server runs (boltstore.Store.BackupTo):
// each copy replaces the last only once it is whole. It returns the function
// that stops it and waits, as StartCompaction's; a failed backup is logged
// and tried again at the next tick.
func (s *Server) StartBackups(ctx context.Context, dir string, every time.Duration) (stop func()) {
	return repeat(ctx, every, func(ctx context.Context) bool {
		n, err := s.store.BackupTo(ctx, filepath.Join(dir, BackupFile))
		switch {
		case err == nil:
			s.log.InfoContext(ctx, "store backed up", "bytes", n)
		case s.closed.Load():
			return false
		case ctx.Err() == nil:
			s.log.WarnContext(ctx, "store backup failed; trying again later", "err", err, "every", every.String())
		}
		return true
	})
}

// repeat runs fn at once and then every every on a goroutine of its own, until
// ctx is done, fn returns false or the returned stop function is called. stop
// cancels the goroutine and waits for it to end; it may be called more than
// once.
func repeat(ctx context.Context, every time.Duration, fn func(context.Context) bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for fn(ctx) {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}
