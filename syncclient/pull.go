package syncclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor the client sends with

	"github.com/fieldsync/fieldsync/internal/zstdgrpc"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// pull receives the server's changes from the stored cursor until caught up.
// Each response is stored in one transaction with the cursor token after it
// (storePage: its records merged into the stored states, then its changes,
// through syncengine.ReceivePulledTx), so a response is either kept with
// its token or not at all; a snapshot's records are gathered over a few
// responses and stored together.
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
			return lost(fmt.Errorf("fieldsync: pull: %w", stalled), snap.flush(context.WithoutCancel(ctx)))
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
			return lost(fmt.Errorf("fieldsync: pull: %w", pullErr(sctx, err)), snap.flush(context.WithoutCancel(ctx)))
		}
		if err := snap.failed(); err != nil {
			return fmt.Errorf("fieldsync: pull: %w", err)
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
			if err := snap.flush(ctx); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
			if err := s.storePage(ctx, pulledPage{recs: resp.GetRecords(), changes: resp.GetChanges(), tok: tok}); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
		} else {
			snap.begin = snap.begin || phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN
			snap.end = phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END
			snap.add(resp.GetRecords(), tok)
			var err error
			switch {
			case len(resp.GetRecords()) == 0 || phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END:
				err = snap.flush(ctx)
			case snap.due():
				// Stored while the next records arrive: the server reads
				// and sends them as the replica writes these.
				err = snap.start(ctx)
			}
			if err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
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
	// stored is the outcome of the records being stored in the background
	// (start), nil when none are.
	stored chan error
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

// flush stores the gathered records and the token in one transaction, after
// those being stored in the background, and returns once they are.
func (b *snapshotBuffer) flush(ctx context.Context) error {
	if err := b.start(ctx); err != nil {
		return err
	}
	return b.wait()
}

// start waits for the records being stored in the background, then starts
// storing the gathered records and the token (in one transaction, as
// flush) in their place and returns; the next start, flush or wait returns
// how that went. Transactions so commit in the order the records came, one
// at a time, and at most two batches are held in memory.
func (b *snapshotBuffer) start(ctx context.Context) error {
	if err := b.wait(); err != nil {
		return err
	}
	if len(b.recs) == 0 && len(b.tok) == 0 && !b.begin && !b.end {
		return nil
	}
	p := pulledPage{recs: b.recs, tok: b.tok, begin: b.begin, end: b.end, keep: b.keep}
	b.recs, b.tok, b.begin, b.end = nil, nil, false, false
	done := make(chan error, 1)
	b.stored = done
	// Not cancelled with the sync: the records came whole and are kept (a
	// transaction would roll back with its context); every return from
	// the pull waits for them.
	s, keep := b.s, context.WithoutCancel(ctx)
	go func() { done <- s.storePage(keep, p) }()
	return nil
}

// failed returns the error of the records stored in the background if
// they are and failed, without waiting, so that the pull stops at once.
func (b *snapshotBuffer) failed() error {
	select {
	case err := <-b.stored: // nil channel: never ready
		b.stored = nil
		return err
	default:
		return nil
	}
}

// wait returns once the records being stored in the background are, with
// how that went.
func (b *snapshotBuffer) wait() error {
	if b.stored == nil {
		return nil
	}
	err := <-b.stored
	b.stored = nil
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
	// tok is the stored token the pull resumes from.
	tok []byte
	// v2: opened as protocol version 2 (packed, zstd).
	v2 bool
}

// openPull asks for the server's changes after the stored cursor. The caller
// must call the result's cancel when done with it.
func (s *session) openPull(ctx context.Context, known *fieldsyncv1.HelloResponse) (*pullStream, error) {
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
	v2 := known.GetCapabilityVersion() >= foldingVersion
	req := &fieldsyncv1.PullRequest{Packed: v2, RecordSchema: wire.RecordSchema()}
	if len(tok) > 0 {
		req.Cursor = &fieldsyncv1.Cursor{Token: tok}
	}
	idle := PullIdle(int(known.GetLimits().GetMaxPullBytes()), s.cfg.IdleTimeout)
	sctx, cancel := context.WithCancelCause(ctx)
	var opts []grpc.CallOption
	if v2 {
		opts = append(opts, grpc.UseCompressor(zstdgrpc.Name))
	}
	stream, err := s.rpc.Pull(sctx, req, opts...)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fieldsync: pull: %w", err)
	}
	return &pullStream{stream: stream, ctx: sctx, cancel: cancel, idle: idle, stalled: &stalledError{idle: idle}, acked: cur.Acked, tok: tok, v2: v2}, nil
}

// reopenPull returns pl, or a new pull in its place when the handshake
// taken since pl was opened (with the push it was folded into) changed the
// stored pull position (a replica restored from an older copy forgets it,
// RaiseCounterFloor, so that its pull is a snapshot) or the version the
// pull was asked in (a server put back to version 1 does not have zstd).
func (s *session) reopenPull(ctx context.Context, pl *pullStream, hello *fieldsyncv1.HelloResponse) (*pullStream, error) {
	var tok []byte
	err := s.cfg.Store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		tok, err = tx.Meta(ctx, s.cfg.CursorKey)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fieldsync: pull: %w", err)
	}
	if bytes.Equal(tok, pl.tok) && pl.v2 == (hello.GetCapabilityVersion() >= foldingVersion) {
		return pl, nil
	}
	pl.cancel(nil)
	return s.openPull(ctx, hello)
}

// lost returns the error of a pull whose stream failed (cut, stalled)
// after the records received whole were stored with flush: the stream's
// error, or the store's when that failed too (a full disk is no reason to
// try again).
func lost(stream, stored error) error {
	if stored != nil {
		return fmt.Errorf("fieldsync: pull: %w (the stream had failed: %v)", stored, stream)
	}
	return stream
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

// pulledPage is what the replica stores of a pull in one transaction: the
// records (a snapshot's, or those changes brought into its areas), the
// changes, and the server's cursor token after them. begin and end: the
// records begin a fresh snapshot, or end one (snapshotBuffer).
type pulledPage struct {
	recs       []*fieldsyncv1.RecordState
	changes    []*fieldsyncv1.Change
	tok        []byte
	begin, end bool
	keep       syncengine.Position
}

// storePage stores page p through syncengine.ReceivePulledTx, with the pull
// token if set, in one transaction. When the records begin a fresh
// snapshot, the replica's records (but those with its changes after p.keep)
// are marked first; when they end one, the records still marked are dropped
// once the pull has caught up (unseenSweeper, if the store offers it).
func (s *session) storePage(ctx context.Context, p pulledPage) error {
	cfg := s.cfg
	pulled := syncengine.Pulled{Sender: s.t.Server, Records: make([]syncengine.Record, len(p.recs))}
	for i, rs := range p.recs {
		if err := pulled.Records[i].UnmarshalBinary(rs.GetEngineState()); err != nil {
			return fmt.Errorf("snapshot record %x: %w", rs.GetRecordId(), err)
		}
	}
	// In id order, as the replica's tables keep them: each insert then
	// lands beside the one before, in pages already at hand. Stable, so a
	// record sent twice is merged in the order it came.
	slices.SortStableFunc(pulled.Records, func(a, b syncengine.Record) int {
		x, y := a.ID(), b.ID()
		return bytes.Compare(x[:], y[:])
	})
	for _, pc := range p.changes {
		ch, err := wire.ChangeFromProto(pc)
		if err != nil {
			return err
		}
		pulled.Changes = append(pulled.Changes, ch)
	}
	self := cfg.Store.Replica()
	changer, _ := cfg.Host.(SnapshotChanger)
	opts := syncengine.PulledOptions{Clock: cfg.Clock, WallMS: cfg.now().UnixMilli(), Compare: changer != nil && len(p.recs) > 0}
	return cfg.Store.Update(ctx, func(tx syncengine.Tx) error {
		sweep, _ := tx.(unseenSweeper)
		if p.begin && sweep != nil {
			if err := sweep.MarkUnseen(ctx, self, p.keep); err != nil {
				return err
			}
		}
		res, err := syncengine.ReceivePulledTx(ctx, tx, pulled, opts)
		if err != nil {
			return err
		}
		if p.end && sweep != nil {
			// Dropped once the changes after the snapshot are in too: a
			// record that moved between two of the replica's areas while
			// the snapshot was read may be in neither, and its move
			// follows as a change, which clears its mark.
			if err := tx.SetMeta(ctx, s.sweepKey(), []byte{1}); err != nil {
				return err
			}
		}
		if res.Changed {
			if err := changer.SnapshotChanged(ctx, tx); err != nil {
				return err
			}
		}
		if len(p.tok) > 0 {
			return tx.SetMeta(ctx, cfg.CursorKey, p.tok)
		}
		return nil
	})
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
