package fieldsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor the client sends with
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Sync runs one sync round with the enrolled server: the handshake, then a
// push of the device's unacknowledged changes, then a pull of the server's
// changes in the device's areas.
//
// A transient failure (the server unreachable or restarting, a cut or stalled
// connection, a deadline of one RPC, the server busy) is retried with
// exponential backoff and jitter up to the client's RetryPolicy (WithRetry);
// each attempt resumes where the last stopped. A permanent failure returns at
// once: ErrNotEnrolled before enrolment, ErrServerMismatch, ErrTLSRequired, a
// refused or revoked device token (gRPC Unauthenticated or PermissionDenied),
// a request the server calls malformed (InvalidArgument, FailedPrecondition),
// a storage error. Sync returns the last attempt's error (saying how many
// attempts were made when it gave up), or ctx's error wrapped with it when
// ctx ends first. What was stored before an error stays stored, and the next
// Sync resumes from there.
//
// The outcome is recorded for Status. Calls are serialised: a Sync waits for
// one in progress to end. opts apply to this call only (OnProgress).
func (c *Client) Sync(ctx context.Context, opts ...SyncOption) error {
	run := &syncRun{}
	for _, o := range opts {
		o(run)
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	err := c.syncRetrying(ctx, run)
	// Record the outcome even when ctx is done.
	rctx := context.WithoutCancel(ctx)
	if err != nil {
		if merr := c.store.SetMeta(rctx, metaLastError, []byte(err.Error())); merr != nil {
			return errors.Join(err, merr)
		}
		return err
	}
	if err := c.store.SetMeta(rctx, metaLastError, []byte{}); err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	if err := c.store.SetMeta(rctx, metaLastSuccess, []byte(c.now().UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	return nil
}

// syncRetrying runs attempts of a sync round until one succeeds, one fails
// for good, the policy's attempts are spent or ctx ends.
func (c *Client) syncRetrying(ctx context.Context, run *syncRun) error {
	pol := c.retry.withDefaults()
	for attempt := 1; ; attempt++ {
		run.p.Attempt = attempt
		err := c.sync(ctx, run)
		if err == nil {
			run.report(PhaseDone)
			return nil
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// A gRPC status does not wrap the context's error; make
			// errors.Is(err, context.Canceled) hold.
			return fmt.Errorf("%w (%w)", err, cerr)
		}
		if !retryable(ctx, err) {
			return err
		}
		if attempt >= pol.MaxAttempts {
			if attempt == 1 {
				return err
			}
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		t := time.NewTimer(pol.delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("fieldsync: sync: %w after %d attempts; last error: %w", ctx.Err(), attempt, err)
		case <-t.C:
		}
	}
}

func (c *Client) sync(ctx context.Context, run *syncRun) error {
	addr, err := c.store.Meta(ctx, metaServerAddr)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	token, err := c.store.Meta(ctx, metaToken)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	srv, err := c.serverReplica(ctx)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	if len(addr) == 0 || len(token) == 0 || srv.IsZero() {
		return ErrNotEnrolled
	}
	dopts, err := c.dialOptions(string(addr), string(token))
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	run.report(PhaseConnect)
	conn, err := grpc.NewClient(string(addr), dopts...)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	defer conn.Close()
	rpc := fieldsyncv1.NewSyncServiceClient(conn)
	hello, err := c.hello(ctx, rpc, srv)
	if err != nil {
		return err
	}
	// The pull is asked for before the push, so that the server's answer
	// travels down while the push travels up: on a 2G link that saves a
	// round trip of over a second. The pull leaves out the device's own
	// changes, so it does not depend on the push.
	pl, err := c.openPull(ctx, rpc, hello)
	if err != nil {
		return err
	}
	defer pl.cancel(nil)
	if err := c.push(ctx, rpc, srv, hello, run); err != nil {
		return err
	}
	return c.pull(ctx, pl, srv, run)
}

// hello runs the handshake and corrects the device clock from the server's.
func (c *Client) hello(ctx context.Context, rpc fieldsyncv1.SyncServiceClient, srv syncengine.ReplicaID) (*fieldsyncv1.HelloResponse, error) {
	self := c.store.Replica()
	req := &fieldsyncv1.HelloRequest{
		ReplicaId: self[:], CapabilityVersion: wire.CapabilityVersion, ClientTime: timestamppb.New(c.now()),
	}
	// The operator's status shows what the device still has to send and how
	// its last sync ended.
	if st, err := c.Status(ctx); err == nil {
		req.PendingChanges, req.LastError = int32(st.Pending), st.LastError
	}
	// The first RPC of a connection also waits for the connection.
	hctx, cancel := context.WithTimeout(ctx, connectTimeout+rpcDeadline(proto.Size(req)))
	defer cancel()
	resp, err := rpc.Hello(hctx, req)
	if err != nil {
		return nil, fmt.Errorf("fieldsync: hello: %w", err)
	}
	localMS := c.now().UnixMilli()
	if syncengine.ReplicaID(resp.GetServerReplicaId()) != srv {
		return nil, ErrServerMismatch
	}
	if resp.GetServerTime().IsValid() {
		acked := syncengine.Position(resp.GetAcknowledgedPosition())
		if _, err := syncengine.CorrectClock(ctx, c.store, c.clock, acked, resp.GetServerTime().AsTime().UnixMilli(), localMS); err != nil {
			return nil, fmt.Errorf("fieldsync: hello: %w", err)
		}
		if err := c.saveClock(ctx); err != nil {
			return nil, fmt.Errorf("fieldsync: hello: %w", err)
		}
	}
	return resp, nil
}

// push sends the device's own changes after the position the server
// acknowledged in the handshake, in batches, and records the server's answers
// with syncengine.Acknowledge. Changes the device received from the server
// (every change of another origin) are left out; the batch's positions list
// says which positions were sent, and its last position covers the ones left
// out, so the server's cursor moves past them.
func (c *Client) push(ctx context.Context, rpc fieldsyncv1.SyncServiceClient, srv syncengine.ReplicaID, hello *fieldsyncv1.HelloResponse, run *syncRun) error {
	self := c.store.Replica()
	limit := int(hello.GetLimits().GetMaxPushChanges())
	if limit <= 0 {
		limit = syncengine.DefaultBatchLimit
	}
	maxBytes := int(hello.GetLimits().GetMaxPushBytes())
	own := func(ch *syncengine.Change) bool { return ch.Origin == self }
	// Resume from what both ends agree on. The server may hold more than the
	// device knows it acknowledged (the answer to the last push was lost):
	// sending that stretch again costs a batch, but its answer marks the
	// changes acknowledged here and tells the device which were refused,
	// which the server's position alone would not.
	after := syncengine.Position(hello.GetAcknowledgedPosition())
	cur, err := c.cursor(ctx, srv)
	if err != nil {
		return fmt.Errorf("fieldsync: push: %w", err)
	}
	after = min(after, cur.Acked)
	for {
		b, err := syncengine.NextBatch(ctx, c.store, self, after, syncengine.SendOptions{Limit: limit, Exclude: srv, Filter: own})
		if err != nil {
			return fmt.Errorf("fieldsync: push: %w", err)
		}
		if len(b.Changes) == 0 {
			// Nothing of ours through b.Through; the server learns of the
			// skipped positions with the next batch that carries a change.
			if !b.More {
				return nil
			}
			after = b.Through
			continue
		}
		req, err := pushRequest(b)
		if err != nil {
			return fmt.Errorf("fieldsync: push: %w", err)
		}
		if maxBytes > 0 && proto.Size(req) > maxBytes && limit > 1 {
			limit = max(1, limit/2)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, rpcDeadline(proto.Size(req)))
		resp, err := rpc.Push(pctx, req)
		cancel()
		if err != nil {
			return fmt.Errorf("fieldsync: push: %w", err)
		}
		rc, rejected, err := receipt(srv, b, resp)
		if err != nil {
			return fmt.Errorf("fieldsync: push: %w", err)
		}
		if err := syncengine.Acknowledge(ctx, c.store, srv, rc); err != nil {
			return fmt.Errorf("fieldsync: push: %w", err)
		}
		if err := c.addRejections(ctx, rejected); err != nil {
			return fmt.Errorf("fieldsync: push: %w", err)
		}
		for _, e := range b.Changes {
			if e.Pos <= rc.Through {
				run.p.Pushed++
			}
		}
		run.p.Rejected += len(rejected)
		run.report(PhasePush)
		if rc.Through <= after {
			// The first change was refused for clock skew: it stays pending
			// and is restamped at the next handshake.
			return fmt.Errorf("fieldsync: push: %w", &retryError{fmt.Errorf("server stopped at position %d: %s", after, lastDetail(rc))})
		}
		after = rc.Through
		if !b.More && after >= b.Through {
			return nil
		}
	}
}

func lastDetail(rc syncengine.Receipt) string {
	if n := len(rc.Results); n > 0 {
		return rc.Results[n-1].Detail
	}
	return "no progress"
}

// pushRequest is batch b on the wire: its changes with their positions, and
// b.After+1..b.Through as the range they account for.
func pushRequest(b syncengine.Batch) (*fieldsyncv1.PushRequest, error) {
	req := &fieldsyncv1.PushRequest{
		FirstPosition: uint64(b.After) + 1,
		LastPosition:  uint64(b.Through),
	}
	for _, e := range b.Changes {
		pc, err := wire.ChangeToProto(e.Change)
		if err != nil {
			return nil, err
		}
		req.Changes = append(req.Changes, pc)
		req.Positions = append(req.Positions, uint64(e.Pos))
	}
	return req, nil
}

// receipt turns the server's answer to batch b into the engine's receipt and
// the rejections to show the user.
func receipt(srv syncengine.ReplicaID, b syncengine.Batch, resp *fieldsyncv1.PushResponse) (syncengine.Receipt, []Rejection, error) {
	if len(resp.GetResults()) > len(b.Changes) {
		return syncengine.Receipt{}, nil, fmt.Errorf("%d results for %d changes", len(resp.GetResults()), len(b.Changes))
	}
	rc := syncengine.Receipt{Sender: srv, Through: syncengine.Position(resp.GetAcknowledgedPosition())}
	if rc.Through > b.Through {
		return syncengine.Receipt{}, nil, fmt.Errorf("server acknowledged position %d beyond %d sent", rc.Through, b.Through)
	}
	var rejected []Rejection
	for i, r := range resp.GetResults() {
		e := b.Changes[i]
		out, ok := wire.OutcomeFromProto(r.GetOutcome())
		if !ok {
			return syncengine.Receipt{}, nil, fmt.Errorf("change %v: unknown outcome %v", e.Change.ID, r.GetOutcome())
		}
		rc.Results = append(rc.Results, syncengine.ChangeResult{
			Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: out, Detail: r.GetMessage(),
		})
		if out.Refused() && out != syncengine.OutcomeClockSkew && e.Pos <= rc.Through {
			rej := Rejection{ChangeID: e.Change.ID.String(), RecordID: e.Change.RecordID.String(), Outcome: out.String(), Message: r.GetMessage()}
			for _, fe := range r.GetFieldErrors() {
				rej.Fields = append(rej.Fields, survey.FieldError{Path: fe.GetPath(), Reason: fe.GetReason(), Message: fe.GetMessage()})
			}
			rejected = append(rejected, rej)
		}
	}
	return rc, rejected, nil
}

// pull receives the server's changes from the stored cursor until caught up.
// Each response is stored in one transaction with the cursor token after it
// (snapshot records merged into the stored states, or changes through
// syncengine.ReceiveBatch with the token in ReceiveOptions.Also), so a
// response is either kept with its token or not at all.
//
// The stream is cancelled when no message arrives within the idle time of
// one full response on a slow link (pullIdle), so a stalled connection ends
// the attempt instead of hanging it.
func (c *Client) pull(ctx context.Context, pl *pullStream, srv syncengine.ReplicaID, run *syncRun) error {
	stream, sctx, idle, stalled := pl.stream, pl.ctx, pl.idle, pl.stalled
	timer := time.AfterFunc(idle, func() { pl.cancel(stalled) })
	defer timer.Stop()
	inSnapshot := false
	snap := &snapshotBuffer{c: c}
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
			snap.add(resp.GetRecords(), nil)
			if err := snap.flush(ctx); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
			if err := c.receiveChanges(ctx, srv, resp.GetChanges(), tok); err != nil {
				return fmt.Errorf("fieldsync: pull: %w", err)
			}
		} else {
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
		run.p.Snapshot = inSnapshot || len(resp.GetRecords()) > 0
		run.p.Pulled += len(resp.GetRecords()) + len(resp.GetChanges())
		run.report(PhasePull)
		if phase == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END {
			inSnapshot = false
		}
		timer.Reset(idle)
	}
}

// A device gathers snapshot records over several responses and commits them
// when it holds snapshotCommit of them, or has held the first for
// snapshotCommitAge: on loopback or 3G that is a few thousand records per
// commit (a bootstrap spends its time in commits otherwise), on 2G every
// response or two, so that a cut link loses a second of transfer at most.
const (
	snapshotCommit    = 2048
	snapshotCommitAge = time.Second
)

// snapshotBuffer holds snapshot records received and not yet stored, and the
// token of the last response they came with.
type snapshotBuffer struct {
	c     *Client
	recs  []*fieldsyncv1.RecordState
	tok   []byte
	since time.Time // when the first of recs arrived
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
	if len(b.recs) == 0 && len(b.tok) == 0 {
		return nil
	}
	err := b.c.mergeSnapshot(ctx, b.recs, b.tok)
	b.recs, b.tok = nil, nil
	return err
}

// pullStream is a Pull opened before the push and read after it.
type pullStream struct {
	stream  grpc.ServerStreamingClient[fieldsyncv1.PullResponse]
	ctx     context.Context
	cancel  context.CancelCauseFunc
	idle    time.Duration
	stalled *stalledError
}

// openPull asks for the server's changes after the stored cursor. The caller
// must call the result's cancel when done with it.
func (c *Client) openPull(ctx context.Context, rpc fieldsyncv1.SyncServiceClient, hello *fieldsyncv1.HelloResponse) (*pullStream, error) {
	tok, err := c.store.Meta(ctx, metaPullCursor)
	if err != nil {
		return nil, fmt.Errorf("fieldsync: pull: %w", err)
	}
	req := &fieldsyncv1.PullRequest{}
	if len(tok) > 0 {
		req.Cursor = &fieldsyncv1.Cursor{Token: tok}
	}
	idle := c.pullIdle(int(hello.GetLimits().GetMaxPullBytes()))
	sctx, cancel := context.WithCancelCause(ctx)
	stream, err := rpc.Pull(sctx, req)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fieldsync: pull: %w", err)
	}
	return &pullStream{stream: stream, ctx: sctx, cancel: cancel, idle: idle, stalled: &stalledError{idle: idle}}, nil
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

// setToken returns a function storing the pull token tok in a transaction,
// or nil when there is no token.
func setToken(tok []byte) func(context.Context, syncengine.Tx) error {
	if len(tok) == 0 {
		return nil
	}
	return func(ctx context.Context, tx syncengine.Tx) error {
		return sqlitestore.SetMetaTx(ctx, tx, metaPullCursor, tok)
	}
}

// mergeSnapshot merges the engine states of snapshot records into the stored
// states, and stores the pull token tok if set, in one transaction.
func (c *Client) mergeSnapshot(ctx context.Context, recs []*fieldsyncv1.RecordState, tok []byte) error {
	if len(recs) == 0 {
		if len(tok) == 0 {
			return nil
		}
		return c.store.Update(ctx, func(tx syncengine.Tx) error { return setToken(tok)(ctx, tx) })
	}
	states := make([]syncengine.Record, len(recs))
	wallMS := c.now().UnixMilli()
	for i, rs := range recs {
		if err := states[i].UnmarshalBinary(rs.GetEngineState()); err != nil {
			return fmt.Errorf("snapshot record %x: %w", rs.GetRecordId(), err)
		}
		// Later local stamps follow every write taken in, as with changes.
		for n := range states[i].Values() {
			for _, w := range states[i].Writes(n) {
				_ = c.clock.Observe(w.Stamp, wallMS) // a device clock has no skew guard
			}
		}
	}
	return c.store.Update(ctx, func(tx syncengine.Tx) error {
		for _, r := range states {
			local, err := tx.Record(ctx, r.ID())
			if err != nil {
				return err
			}
			merged, err := syncengine.Merge(local, r)
			if err != nil {
				return err
			}
			if err := tx.PutRecord(ctx, merged); err != nil {
				return err
			}
		}
		if len(tok) > 0 {
			return setToken(tok)(ctx, tx)
		}
		return nil
	})
}

// receiveChanges stores the server's changes through syncengine.ReceiveBatch
// as a batch from the server. The server's log positions are not visible in
// its opaque cursor, so the batch is numbered after the device's own count of
// changes received from the server (its cursor's Received).
func (c *Client) receiveChanges(ctx context.Context, srv syncengine.ReplicaID, pcs []*fieldsyncv1.Change, tok []byte) error {
	if len(pcs) == 0 {
		return nil
	}
	cur, err := c.cursor(ctx, srv)
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
	_, err = syncengine.ReceiveBatch(ctx, c.store, b, syncengine.ReceiveOptions{Clock: c.clock, WallMS: c.now().UnixMilli(), Also: setToken(tok)})
	return err
}

// cursor returns what the replica remembers of the server srv.
func (c *Client) cursor(ctx context.Context, srv syncengine.ReplicaID) (syncengine.Cursor, error) {
	var cur syncengine.Cursor
	err := c.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		cur, err = tx.Cursor(ctx, srv)
		return err
	})
	return cur, err
}
