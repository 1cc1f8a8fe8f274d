package server

import (
	"context"
	"fmt"
	"path/filepath"
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
	// DefaultCompactionInterval is how often RunCompaction compacts.
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
// On a township it then forgets the records that moved out of its area
// (forgetMovedAway).
//
// It returns how many entries it dropped, and ErrClosed once the server is
// closed. It is safe to call at any time; RunCompaction calls it
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
	if !up.IsZero() {
		if err := s.forgetMovedAway(ctx, up, rep.Pulled); err != nil {
			return rep.Dropped, fmt.Errorf("compact log: %w", err)
		}
	}
	return rep.Dropped, nil
}

// forgetMovedAway, on a township relaying to up, forgets the states of the
// records outside its area (boltstore.Store.ForgetOutside): households its
// county moved to another township, which it received the moves of and
// which its own devices never see again. It keeps those with changes after
// the position every device had pulled at the previous compaction (pulled
// is this one's): a device of the old village that has not pulled the move,
// or whose last push may still be landing, can still send an edit that
// raced it, which must find the record (moves.ConcurrentEdit). The log is
// kept whole; compaction drops it in time.
func (s *Server) forgetMovedAway(ctx context.Context, up syncengine.ReplicaID, pulled syncengine.Position) error {
	through := syncengine.Position(s.pulledByAll.Swap(uint64(pulled)))
	if through == 0 {
		return nil
	}
	n, err := s.store.ForgetOutside(ctx, []string{s.cfg.Area}, up, min(through, pulled))
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.InfoContext(ctx, "records moved out of the area forgotten", "records", n, "through", uint64(through))
	}
	return nil
}

// The server's background work (compaction, the indicators' read model,
// backups, the upstream relay) runs in blocking loops, Run…(ctx) error: each
// returns nil when ctx is done, or ErrClosed when the server closed under
// it; a failed round is logged and tried again at the next. The caller runs
// each on a goroutine and cancels ctx and waits for them before Close.

// RunCompaction runs CompactLog(ctx, retention) at once and then every
// interval (DefaultCompactionInterval if every <= 0).
func (s *Server) RunCompaction(ctx context.Context, retention, every time.Duration) error {
	if every <= 0 {
		every = DefaultCompactionInterval
	}
	return s.repeat(ctx, every, func(ctx context.Context) error {
		_, err := s.CompactLog(ctx, retention)
		if err != nil {
			s.log.WarnContext(ctx, "log compaction failed; trying again later", "err", err, "every", every.String())
		}
		return err
	})
}

// RunIndicators keeps the indicators' read model (factstore) in step with
// the store every every, and the figures of the server's area as of today
// computed for the villages changed since, so that a report, the web page's
// first of the day included, finds them ready.
func (s *Server) RunIndicators(ctx context.Context, every time.Duration) error {
	return s.repeat(ctx, every, func(ctx context.Context) error {
		err := s.warmIndicators(ctx)
		if err != nil {
			s.log.WarnContext(ctx, "indicators read model failed to catch up; trying again later", "err", err)
		}
		return err
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
// (RunBackups).
const BackupFile = "server-backup.db"

// RunBackups writes a consistent copy of the store into dir/BackupFile at
// once and then every every (boltstore.Store.BackupTo): each copy replaces
// the last only once it is whole.
func (s *Server) RunBackups(ctx context.Context, dir string, every time.Duration) error {
	return s.repeat(ctx, every, func(ctx context.Context) error {
		n, err := s.store.BackupTo(ctx, filepath.Join(dir, BackupFile))
		if err != nil {
			s.log.WarnContext(ctx, "store backup failed; trying again later", "err", err, "every", every.String())
			return err
		}
		s.log.InfoContext(ctx, "store backed up", "bytes", n)
		return nil
	})
}

// repeat runs round at once and then every every until ctx is done (nil) or
// the server is closed (ErrClosed); a round's error is its own to report.
func (s *Server) repeat(ctx context.Context, every time.Duration, round func(context.Context) error) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		switch {
		case ctx.Err() != nil:
			return nil
		case s.closed.Load():
			return ErrClosed
		}
		_ = round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
