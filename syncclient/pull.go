package syncclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor the client sends with

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// pull receives the server's changes from the stored cursor until caught up.
// Each response is stored in one transaction with the cursor token after it
// (snapshot records merged into the stored states, or changes through
// syncengine.ReceiveBatch with the token in ReceiveOptions.Also), so a
// response is either kept with its token or not at all.
//
// The stream is cancelled when no message arrives within the idle time of
// one full response on a slow link, so a stalled connection ends the attempt
// instead of hanging it.
func (s *session) pull(ctx context.Context, pl *pullStream) error {
	stream, sctx, idle, stalled := pl.stream, pl.ctx, pl.idle, pl.stalled
	timer := time.AfterFunc(idle, func() { pl.cancel(stalled) })
	defer timer.Stop()
	inSnapshot := false
	snap := &snapshotBuffer{s: s, keep: pl.acked}
	for {
		resp, err := stream.Recv()
		if !timer.Stop() {
			// The idle timer fired: the stream is cancelled, whatever Recv
			// returned. Keep the whole responses received so far.
			return errors.Join(fmt.Errorf("fieldsync: pull: %w", stalled), snap.flush(context.WithoutCancel(ctx)))
		}
		if errors.Is(err, io.EOF) {
			if err := snap.flush(ctx); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
			if err := s.sweepUnseen(ctx); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
			return nil
		}
		if err != nil {
			return errors.Join(fmt.Errorf("fieldsync: pull: %w", pullErr(sctx, err)), snap.flush(context.WithoutCancel(ctx)))
		}
		// A batch and the token after it commit in one transaction. Snapshot
		// records are gathered over a few responses and committed together
		// (with the last response's token): each commit rewrites the pages
		// it touches, and a bootstrap is thousands of records.
		tok := resp.GetCursor().GetToken()
		phase := resp.GetSnapshot().GetPhase()
		if len(resp.GetChanges()) > 0 {
			// Records sent with changes are those the changes bring into the
			// replica's areas (a household moved in), whole. They are merged
			// as a snapshot's are: a relay's log does not explain their
			// history, so its own devices must take a snapshot again
			// (SnapshotChanged); moves are rare enough for that.
			snap.add(resp.GetRecords(), nil)
			if err := snap.flush(ctx); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
			if err := s.receiveChanges(ctx, resp.GetChanges(), tok); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
		} else {
			snap.begin = snap.begin || phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN
			snap.end = phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END
			snap.add(resp.GetRecords(), tok)
			if snap.due() || len(resp.GetRecords()) == 0 || phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END {
				if err := snap.flush(ctx); err != nil {
					return fmt.Errorf("fieldsync: pull: %w", err)
				}
			}
		}
		if phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN {
			inSnapshot = true
		}
		s.run.p.Snapshot = inSnapshot || len(resp.GetRecords()) > 0
		s.run.p.Pulled += len(resp.GetRecords()) + len(resp.GetChanges())
		s.run.report(PhasePull)
		if phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END {
			inSnapshot = false
		}
		timer.Reset(idle)
	}
}

// snapshotBuffer holds snapshot records received and not yet stored, and the
// token of the last response they came with.
type snapshotBuffer struct {
	s     *session
	recs  []*fieldsyncv1.RecordState
	tok   []byte
	since time.Time // when the first of recs arrived
	// begin and end: the records begin a fresh snapshot, or end one, so the
	// replica's records are marked before they are merged, or those the
	// snapshot did not bring dropped after (unseenSweeper). keep is the
	// replica's acknowledged position when the round began: its changes
	// after it may have reached the server after the snapshot was read.
	begin, end bool
	keep       syncengine.Position
}

// unseenSweeper is what a store's transaction offers so that a fresh
// snapshot (the server's log compacted past the replica's cursor) drops the
// records the server no longer has in the replica's areas: those that moved
// away while the log that said so was compacted. The phone's SQLite replica
// offers it; a relay's store does not (its county's snapshot is of its whole
// area, and its records outside it are dropped by compaction's forgetting).
type unseenSweeper interface {
	// MarkUnseen marks every record held but those with a change of self
	// after position keep.
	MarkUnseen(ctx context.Context, self syncengine.ReplicaID, keep syncengine.Position) error
	// DropUnseen forgets the records still marked: no write reached them
	// since MarkUnseen.
	DropUnseen(ctx context.Context, self syncengine.ReplicaID) (int, error)
}

// due reports whether the gathered records should be committed now.
func (b *snapshotBuffer) due() bool {
	return len(b.recs) >= snapshotCommit || (len(b.recs) > 0 && time.Since(b.since) >= snapshotCommitAge)
}

func (b *snapshotBuffer) add(recs []*fieldsyncv1.RecordState, tok []byte) {
	if len(b.recs) == 0 {
		b.since = time.Now()
	}
	b.recs = append(b.recs, recs...)
	if len(tok) > 0 {
		b.tok = tok
	}
}

// flush stores the gathered records and the token in one transaction.
func (b *snapshotBuffer) flush(ctx context.Context) error {
	if len(b.recs) == 0 && len(b.tok) == 0 && !b.begin && !b.end {
		return nil
	}
	err := b.s.mergeSnapshot(ctx, b.recs, b.tok, b.begin, b.end, b.keep)
	b.recs, b.tok, b.begin, b.end = nil, nil, false, false
	return err
}

// pullStream is a Pull opened before the push and read after it.
type pullStream struct {
	stream  grpc.ServerStreamingClient[fieldsyncv1.PullResponse]
	ctx     context.Context
	cancel  context.CancelCauseFunc
	idle    time.Duration
	stalled *stalledError
	// acked is the replica's acknowledged position before the round's push.
	acked syncengine.Position
}

// openPull asks for the server's changes after the stored cursor. The caller
// must call the result's cancel when done with it.
func (s *session) openPull(ctx context.Context, hello *fieldsyncv1.HelloResponse) (*pullStream, error) {
	var tok []byte
	var cur syncengine.Cursor
	err := s.cfg.Store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		if tok, err = tx.Meta(ctx, s.cfg.CursorKey); err != nil {
			return err
		}
		cur, err = tx.Cursor(ctx, s.t.Server)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fieldsync: pull: %w", err)
	}
	req := &fieldsyncv1.PullRequest{}
	if len(tok) > 0 {
		req.Cursor = &fieldsyncv1.Cursor{Token: tok}
	}
	idle := PullIdle(int(hello.GetLimits().GetMaxPullBytes()), s.cfg.IdleTimeout)
	sctx, cancel := context.WithCancelCause(ctx)
	stream, err := s.rpc.Pull(sctx, req)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fieldsync: pull: %w", err)
	}
	return &pullStream{stream: stream, ctx: sctx, cancel: cancel, idle: idle, stalled: &stalledError{idle: idle}, acked: cur.Acked}, nil
}

// pullErr returns the stalled error when the idle timer cancelled the
// stream, else err.
func pullErr(sctx context.Context, err error) error {
	var st *stalledError
	if errors.As(context.Cause(sctx), &st) {
		return st
	}
	return err
}

// saveToken returns a function storing the pull token tok in a transaction,
// or nil when there is no token.
func (s *session) saveToken(tok []byte) func(context.Context, syncengine.Tx) error {
	if len(tok) == 0 {
		return nil
	}
	return func(ctx context.Context, tx syncengine.Tx) error {
		return tx.SetMeta(ctx, s.cfg.CursorKey, tok)
	}
}

// mergeSnapshot merges the engine states of snapshot records into the stored
// states, and stores the pull token tok if set, in one transaction. When the
// records begin a fresh snapshot, the replica's records (but those with its
// changes after keep) are marked first; when they end one, the records still
// marked are dropped after (unseenSweeper, if the store offers it).
func (s *session) mergeSnapshot(ctx context.Context, recs []*fieldsyncv1.RecordState, tok []byte, begin, end bool, keep syncengine.Position) error {
	cfg := s.cfg
	states := make([]syncengine.Record, len(recs))
	wallMS := cfg.now().UnixMilli()
	for i, rs := range recs {
		if err := states[i].UnmarshalBinary(rs.GetEngineState()); err != nil {
			return fmt.Errorf("snapshot record %x: %w", rs.GetRecordId(), err)
		}
		// Later local stamps follow every write taken in, as with changes.
		for n := range states[i].Values() {
			for _, w := range states[i].Writes(n) {
				_ = cfg.Clock.Observe(w.Stamp, wallMS) // a stamp beyond the skew is still kept
			}
		}
	}
	self := cfg.Store.Replica()
	changer, _ := cfg.Host.(SnapshotChanger)
	err := cfg.Store.Update(ctx, func(tx syncengine.Tx) error {
		sweep, _ := tx.(unseenSweeper)
		if begin && sweep != nil {
			if err := sweep.MarkUnseen(ctx, self, keep); err != nil {
				return err
			}
		}
		changed := false
		for _, r := range states {
			local, err := tx.Record(ctx, r.ID())
			if err != nil {
				return err
			}
			merged, err := syncengine.Merge(local, r)
			if err != nil {
				return err
			}
			if changer != nil && !changed {
				// Only a relay asks; the digests cost a bootstrap time.
				changed = merged.Digest() != local.Digest()
			}
			if err := tx.PutRecord(ctx, merged); err != nil {
				return err
			}
		}
		if end && sweep != nil {
			// Dropped once the changes after the snapshot are in too: a
			// record that moved between two of the replica's areas while
			// the snapshot was read may be in neither, and its move
			// follows as a change, which clears its mark.
			if err := tx.SetMeta(ctx, s.sweepKey(), []byte{1}); err != nil {
				return err
			}
		}
		if changed && changer != nil {
			if err := changer.SnapshotChanged(ctx, tx); err != nil {
				return err
			}
		}
		if save := s.saveToken(tok); save != nil {
			return save(ctx, tx)
		}
		return nil
	})
	return err
}

// receiveChanges stores the server's changes through syncengine.ReceiveBatch
// as a batch from the server. The server's log positions are not visible in
// its opaque cursor, so the batch is numbered after the replica's own count
// of changes received from the server (its cursor's Received).
func (s *session) receiveChanges(ctx context.Context, pcs []*fieldsyncv1.Change, tok []byte) error {
	if len(pcs) == 0 {
		return nil
	}
	srv := s.t.Server
	cur, err := cursor(ctx, s.cfg.Store, srv)
	if err != nil {
		return err
	}
	b := syncengine.Batch{Sender: srv, After: cur.Received}
	for i, pc := range pcs {
		ch, err := wire.ChangeFromProto(pc)
		if err != nil {
			return err
		}
		b.Changes = append(b.Changes, syncengine.Entry{Pos: cur.Received + syncengine.Position(i+1), Change: ch})
	}
	b.Through = cur.Received + syncengine.Position(len(pcs))
	_, err = syncengine.ReceiveBatch(ctx, s.cfg.Store, b, syncengine.ReceiveOptions{Clock: s.cfg.Clock, WallMS: s.cfg.now().UnixMilli(), Also: s.saveToken(tok)})
	return err
}

// cursor returns what the replica remembers of the server srv.
func cursor(ctx context.Context, st syncengine.Store, srv syncengine.ReplicaID) (syncengine.Cursor, error) {
	var cur syncengine.Cursor
	err := st.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		cur, err = tx.Cursor(ctx, srv)
		return err
	})
	return cur, err
}

// sweepKey is the meta key that says a fresh snapshot ended and its unseen
// records are to be dropped once the pull has caught up.
func (s *session) sweepKey() string { return s.cfg.CursorKey + ".sweep" }

// sweepUnseen drops, when a fresh snapshot ended and the pull has caught up
// since, the records the snapshot did not bring and no change touched
// (unseenSweeper), and clears the mark, in one transaction.
func (s *session) sweepUnseen(ctx context.Context) error {
	var due []byte
	err := s.cfg.Store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		due, err = tx.Meta(ctx, s.sweepKey())
		return err
	})
	if err != nil || len(due) == 0 {
		return err
	}
	self, dropped := s.cfg.Store.Replica(), 0
	err = s.cfg.Store.Update(ctx, func(tx syncengine.Tx) error {
		dropped = 0
		sweep, ok := tx.(unseenSweeper)
		if !ok {
			return nil
		}
		due, err := tx.Meta(ctx, s.sweepKey())
		if err != nil || len(due) == 0 {
			return err
		}
		if dropped, err = sweep.DropUnseen(ctx, self); err != nil {
			return err
		}
		return tx.SetMeta(ctx, s.sweepKey(), []byte{})
	})
	if err == nil {
		s.run.p.Dropped += dropped
	}
	return err
}
