// Package syncclient is the client side of fieldsync's sync protocol: one
// sync round with a server (Hello, then Push of what the server lacks while
// a Pull of the server's changes travels down), retried with backoff over
// the transient failures of rural links. The device SDK (client-sdk) runs it
// over a phone's SQLite replica; a township server (fieldsyncd serve
// --upstream) runs the same code over its bbolt store to sync with its
// county, as a relay.
//
// The package depends on the engine's Store interface only, so that the
// device SDK does not link the server's store and the server does not link
// SQLite.
package syncclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor the client sends with
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

var (
	// ErrNotEnrolled is returned by Sync when the replica has not been
	// enrolled with a server.
	ErrNotEnrolled = errors.New("fieldsync: device not enrolled")
	// ErrServerMismatch is returned by Sync when the server answers with
	// another replica id than the one the replica enrolled with.
	ErrServerMismatch = errors.New("fieldsync: server is not the one the device enrolled with")
	// ErrTLSRequired is returned when the server's address is not a loopback
	// address and there is no TLS configuration; nothing is sent.
	ErrTLSRequired = errors.New("fieldsync: TLS required for a server on another machine")
)

// Replica is the local store a round runs against.
type Replica interface {
	syncengine.Store
	// Replica returns the store's replica id.
	Replica() syncengine.ReplicaID
}

// Target is the server to sync with, as enrolment recorded it.
type Target struct {
	Addr   string
	Token  string
	Server syncengine.ReplicaID
}

// Config is what a round needs besides the target. Store, Clock and
// CursorKey are required; the other fields may be left zero.
type Config struct {
	Store Replica
	// Clock observes the stamps of everything received, so that later local
	// stamps follow them. With CorrectClock it is also corrected from the
	// server's time at each handshake, restamping the unsent changes.
	Clock        *syncengine.Clock
	CorrectClock bool
	// Relay pushes every change of the log that did not come from the
	// server (a township relaying its devices' changes to its county), not
	// only the replica's own.
	Relay bool
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// Retry, TLS, DialOptions: see RetryPolicy and DialOptions.
	Retry       RetryPolicy
	TLS         *tls.Config
	DialOptions []grpc.DialOption
	// IdleTimeout, when set, replaces the pull stream's idle time (tests).
	IdleTimeout time.Duration

	// CursorKey is the meta key (syncengine.Tx.SetMeta) the pull token is
	// kept under, written in the transaction of the batch it follows.
	CursorKey string
	// Host, if set, is what the round asks of the program running it.
	Host Host
}

// Host is what a round asks of the program that runs it (the device SDK, a
// township's relay), declared here by its user. A Host whose transactions
// of a snapshot must record that it changed a stored record (a relay, whose
// own devices then take a snapshot again, since such a change is not in its
// log) also implements SnapshotChanger.
type Host interface {
	// HelloInfo reports the pending count and last error the handshake
	// tells the server, for its operator.
	HelloInfo(ctx context.Context) (pending int, lastError string)
	// OnHello runs after each handshake (the device saves the upstream
	// receipt and the rules; a relay keeps its county's rules).
	OnHello(ctx context.Context, hello *fieldsyncv1.HelloResponse) error
	// AfterPull runs after a pull caught up (the device forgets the
	// records no longer in its areas).
	AfterPull(ctx context.Context, hello *fieldsyncv1.HelloResponse) error
	// AfterRound runs last in a round, with the round's connection (a relay
	// pushes its audit trail to its county). Its error fails the round like
	// any other: a retryable one is retried with the whole round.
	AfterRound(ctx context.Context, rpc fieldsyncv1.SyncServiceClient) error
}

// SnapshotChanger is a Host whose replica records, in the transaction of a
// snapshot batch, that the batch changed a stored record.
type SnapshotChanger interface {
	SnapshotChanged(ctx context.Context, tx syncengine.Tx) error
}

func (cfg *Config) now() time.Time {
	if cfg.Now == nil {
		return time.Now()
	}
	return cfg.Now()
}

// Sync runs one sync round with the server t names: the handshake, then a
// push of the replica's unacknowledged changes, then a pull of the server's
// changes in the replica's areas.
//
// A transient failure (the server unreachable or restarting, a cut or stalled
// connection, a deadline of one RPC, the server busy) is retried with
// exponential backoff and jitter up to cfg.Retry; each attempt resumes where
// the last stopped. A permanent failure returns at once: ErrNotEnrolled for
// an empty target, ErrServerMismatch, ErrTLSRequired, a refused or revoked
// token (gRPC Unauthenticated or PermissionDenied), a request the server calls
// malformed (InvalidArgument, FailedPrecondition), a storage error. Sync
// returns the last attempt's error (saying how many attempts were made when
// it gave up), or ctx's error wrapped with it when ctx ends first. What was
// stored before an error stays stored, and the next Sync resumes from there.
//
// progress, if not nil, is called as Progress describes.
func Sync(ctx context.Context, cfg *Config, t Target, progress func(Progress)) error {
	if t.Addr == "" || t.Token == "" || t.Server.IsZero() {
		return ErrNotEnrolled
	}
	r := &run{onProgress: progress}
	pol := cfg.Retry.WithDefaults()
	for attempt := 1; ; attempt++ {
		r.p.Attempt = attempt
		err := round(ctx, cfg, t, r)
		if err == nil {
			r.report(PhaseDone)
			return nil
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// A gRPC status does not wrap the context's error; make
			// errors.Is(err, context.Canceled) hold.
			return fmt.Errorf("%w (%w)", err, cerr)
		}
		if !Retryable(ctx, err) {
			return err
		}
		if attempt >= pol.MaxAttempts {
			if attempt == 1 {
				return err
			}
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		tm := time.NewTimer(pol.Delay(attempt))
		select {
		case <-ctx.Done():
			tm.Stop()
			return fmt.Errorf("fieldsync: sync: %w after %d attempts; last error: %w", ctx.Err(), attempt, err)
		case <-tm.C:
		}
	}
}

// session is one attempt of a round.
type session struct {
	cfg *Config
	t   Target
	run *run
	rpc fieldsyncv1.SyncServiceClient
}

func round(ctx context.Context, cfg *Config, t Target, r *run) error {
	dopts, err := DialOptions(t.Addr, t.Token, cfg.TLS, cfg.DialOptions...)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	r.report(PhaseConnect)
	conn, err := grpc.NewClient(t.Addr, dopts...)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	defer conn.Close()
	s := &session{cfg: cfg, t: t, run: r, rpc: fieldsyncv1.NewSyncServiceClient(conn)}
	// A server that said at the last handshake that it takes the handshake
	// with the first push gets it so (push); otherwise it comes first.
	known, err := s.knownServer(ctx)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	var hello *fieldsyncv1.HelloResponse
	if known == nil {
		if hello, err = s.hello(ctx); err != nil {
			return err
		}
		known = hello
	}
	// The pull is asked for before the push, so that the server's answer
	// travels down while the push travels up: on a 2G link that saves a
	// round trip of over a second. The pull leaves out the replica's own
	// changes, so it does not depend on the push.
	pl, err := s.openPull(ctx, known)
	if err != nil {
		return err
	}
	defer func() { pl.cancel(nil) }()
	if hello, err = s.push(ctx, hello, known); err != nil {
		return err
	}
	npl, err := s.reopenPull(ctx, pl, hello)
	if err != nil {
		return err
	}
	pl = npl
	if err := s.pull(ctx, pl); err != nil {
		return err
	}
	if cfg.Host != nil {
		if err := cfg.Host.AfterPull(ctx, hello); err != nil {
			return fmt.Errorf("fieldsync: sync: %w", err)
		}
		if err := cfg.Host.AfterRound(ctx, s.rpc); err != nil {
			return fmt.Errorf("fieldsync: sync: %w", err)
		}
	}
	return nil
}

// push sends the changes the server lacks after the position it acknowledged
// in the handshake, in batches, and records the server's answers with
// syncengine.Acknowledge. A device sends its own changes only; a relay every
// change that did not come from the server. The changes left out are those
// the server has (it made them, or for a device, sent them): the batch's
// positions list says which positions were sent, and its last position
// covers the ones left out, so the server's cursor moves past them.
//
// With hello nil the handshake travels with the first batch, sized by the
// limits the server gave at the last one (known), and its answer is taken
// with the batch's (pushFolded); with nothing to send it goes alone. push
// returns the round's handshake answer.
func (s *session) push(ctx context.Context, hello, known *fieldsyncv1.HelloResponse) (*fieldsyncv1.HelloResponse, error) {
	cfg := s.cfg
	self := cfg.Store.Replica()
	limit, maxBytes := pushLimits(known, syncengine.DefaultBatchLimit)
	send := syncengine.SendOptions{Exclude: s.t.Server}
	if !cfg.Relay {
		send.Filter = func(ch *syncengine.Change) bool { return ch.Origin == self }
	}
	after, err := s.pushFrom(ctx, hello)
	if err != nil {
		return nil, err
	}
	restamped := false
	for {
		send.Limit = limit
		b, err := syncengine.NextBatch(ctx, cfg.Store, self, after, send)
		if err != nil {
			return nil, fmt.Errorf("fieldsync: push: %w", err)
		}
		if len(b.Changes) == 0 {
			// Nothing to send through b.Through; the server learns of the
			// skipped positions with the next batch that carries a change.
			if b.More {
				after = b.Through
				continue
			}
			if hello == nil {
				return s.hello(ctx)
			}
			return hello, nil
		}
		req, err := pushRequest(b)
		if err != nil {
			return nil, fmt.Errorf("fieldsync: push: %w", err)
		}
		if maxBytes > 0 && proto.Size(req) > maxBytes && limit > 1 {
			limit = max(1, limit/2)
			continue
		}
		folded := hello == nil
		var rc syncengine.Receipt
		if folded {
			var took bool
			if hello, rc, took, err = s.pushFolded(ctx, b, req); err != nil {
				return nil, err
			}
			if !took {
				// The server took nothing of the batch: send again from
				// where it stands, within its limits.
				limit, maxBytes = pushLimits(hello, limit)
				if after, err = s.pushFrom(ctx, hello); err != nil {
					return nil, err
				}
				continue
			}
		} else if rc, err = s.pushBatch(ctx, b, req); err != nil {
			return nil, err
		}
		if pos, ok := reusedDot(rc, self); ok {
			return nil, s.renumber(ctx, hello, pos)
		}
		if rc.Through <= after {
			if folded && cfg.CorrectClock && !restamped {
				// The first change was stamped ahead of the server: the
				// handshake's answer re-stamped it; send it again.
				restamped = true
				continue
			}
			// The first change was refused for clock skew: it stays pending
			// and is restamped at the next handshake.
			return nil, fmt.Errorf("fieldsync: push: %w", &retryError{fmt.Errorf("server stopped at position %d: %s", after, lastDetail(rc))})
		}
		after = rc.Through
		if !b.More && after >= b.Through {
			return hello, nil
		}
	}
}

// pushLimits returns the most changes and bytes of a batch the server's
// handshake answer allows; limit changes when it does not say.
func pushLimits(hello *fieldsyncv1.HelloResponse, limit int) (changes, bytes int) {
	if n := int(hello.GetLimits().GetMaxPushChanges()); n > 0 {
		limit = n
	}
	return limit, int(hello.GetLimits().GetMaxPushBytes())
}

// pushFrom returns the position the push resumes after: what both ends
// agree on. The server may hold more than the replica knows it acknowledged
// (the answer to the last push was lost): sending that stretch again costs
// a batch, but its answer marks the changes acknowledged here and tells
// which were refused, which the server's position alone would not. Before
// the handshake (hello nil, to be folded into the push) the replica sends
// from what it knows; a server behind it answers the handshake alone, and
// the replica sends again from there.
func (s *session) pushFrom(ctx context.Context, hello *fieldsyncv1.HelloResponse) (syncengine.Position, error) {
	cur, err := cursor(ctx, s.cfg.Store, s.t.Server)
	if err != nil {
		return 0, fmt.Errorf("fieldsync: push: %w", err)
	}
	if hello == nil {
		return cur.Acked, nil
	}
	return min(cur.Acked, syncengine.Position(hello.GetAcknowledgedPosition())), nil
}

// pushBatch sends batch b as req and records the server's answer.
func (s *session) pushBatch(ctx context.Context, b syncengine.Batch, req *fieldsyncv1.PushRequest) (syncengine.Receipt, error) {
	pctx, cancel := context.WithTimeout(ctx, RPCDeadline(proto.Size(req)))
	resp, err := s.rpc.Push(pctx, req)
	cancel()
	if err != nil {
		return syncengine.Receipt{}, fmt.Errorf("fieldsync: push: %w", err)
	}
	rc, err := s.acknowledge(ctx, b, resp)
	if err != nil {
		return rc, fmt.Errorf("fieldsync: push: %w", err)
	}
	return rc, nil
}

// pushFolded sends batch b as req with the round's handshake, and takes the
// answer: the handshake's is checked before anything is recorded, then the
// push's recorded, then the handshake's taken (its clock correction sees
// what this push had acknowledged). took is false when the server took
// nothing of the batch (it answered the handshake alone). A server that
// answers without the handshake (an older build than the one that said it
// folds) is asked for it separately.
func (s *session) pushFolded(ctx context.Context, b syncengine.Batch, req *fieldsyncv1.PushRequest) (hello *fieldsyncv1.HelloResponse, rc syncengine.Receipt, took bool, err error) {
	req.Hello = s.helloRequest(ctx)
	// The first RPC of a connection also waits for the connection.
	pctx, cancel := context.WithTimeout(ctx, ConnectTimeout+RPCDeadline(proto.Size(req)))
	resp, err := s.rpc.Push(pctx, req)
	cancel()
	if err != nil {
		return nil, rc, false, fmt.Errorf("fieldsync: push: %w", err)
	}
	localMS := s.cfg.now().UnixMilli()
	hello = resp.GetHello()
	if hello == nil {
		if hello, err = s.hello(ctx); err != nil {
			return nil, rc, false, err
		}
	} else if err := s.checkHello(hello); err != nil {
		return nil, rc, false, err
	}
	if len(resp.GetResults()) > 0 {
		if rc, err = s.acknowledge(ctx, b, resp); err != nil {
			return nil, rc, false, fmt.Errorf("fieldsync: push: %w", err)
		}
	}
	if resp.GetHello() != nil {
		if err := s.takeHello(ctx, hello, localMS); err != nil {
			return nil, rc, false, err
		}
	}
	return hello, rc, len(resp.GetResults()) > 0, nil
}

// maxPlausibleCounter is the highest dot counter of its own a replica takes
// from a server's handshake (HelloResponse.max_counter) as the floor of its
// next changes: far beyond what any replica makes, far below overflow.
const maxPlausibleCounter = 1 << 48

// reusedDot returns the position of the change of self the server refused,
// and did not acknowledge, because it holds another change under its dot
// (REASON_DOT_REUSED), if any.
func reusedDot(rc syncengine.Receipt, self syncengine.ReplicaID) (syncengine.Position, bool) {
	for _, r := range rc.Results {
		if r.Reason == wire.ReasonString(fieldsyncv1.Reason_REASON_DOT_REUSED) && r.Pos > rc.Through && r.Dot.Replica == self {
			return r.Pos, true
		}
	}
	return 0, false
}

// renumber answers a refusal of the change at pos for a reused dot: the
// replica was restored from an older copy of itself, and the server holds
// other changes of it under the dots it numbered on from. Its unsent changes
// from pos on are numbered again above the server's highest dot of it
// (syncengine.Renumber), its pull position is forgotten so that the next
// pull is a snapshot that brings back what the copy lost, and the round is
// tried again.
func (s *session) renumber(ctx context.Context, hello *fieldsyncv1.HelloResponse, pos syncengine.Position) error {
	self := s.cfg.Store.Replica()
	n, err := syncengine.Renumber(ctx, s.cfg.Store, self, pos, hello.GetMaxCounter(), func(ctx context.Context, tx syncengine.Tx) error {
		return tx.SetMeta(ctx, s.cfg.CursorKey, []byte{})
	})
	if err != nil {
		return fmt.Errorf("fieldsync: push: the server holds other changes under this replica's dots (restored from an older copy?): %w", err)
	}
	return fmt.Errorf("fieldsync: push: %w", &retryError{fmt.Errorf("this replica was restored from an older copy of itself: %d unsent changes numbered again from position %d, above the server's dot %d", n, pos, hello.GetMaxCounter())})
}

// acknowledge records the server's answer to pushing b: the changes it took
// are acknowledged and those it refused for good recorded with their reasons
// and field errors, in one transaction (syncengine.Acknowledge), and the
// progress reported.
func (s *session) acknowledge(ctx context.Context, b syncengine.Batch, resp *fieldsyncv1.PushResponse) (syncengine.Receipt, error) {
	srv := s.t.Server
	rc, err := receipt(srv, b, resp)
	if err != nil {
		return rc, err
	}
	if err := syncengine.Acknowledge(ctx, s.cfg.Store, srv, rc); err != nil {
		return rc, err
	}
	for _, e := range b.Changes {
		if e.Pos <= rc.Through {
			s.run.p.Pushed++
		}
	}
	for _, r := range rc.Results {
		if r.Outcome.Refused() && r.Pos <= rc.Through {
			s.run.p.Rejected++
		}
	}
	s.run.report(PhasePush)
	return rc, nil
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

// receipt turns the server's answer to batch b into the engine's receipt,
// with each refused change's reason and field errors.
func receipt(srv syncengine.ReplicaID, b syncengine.Batch, resp *fieldsyncv1.PushResponse) (syncengine.Receipt, error) {
	if len(resp.GetResults()) > len(b.Changes) {
		return syncengine.Receipt{}, fmt.Errorf("%d results for %d changes", len(resp.GetResults()), len(b.Changes))
	}
	rc := syncengine.Receipt{Sender: srv, Through: syncengine.Position(resp.GetAcknowledgedPosition())}
	if rc.Through > b.Through {
		return syncengine.Receipt{}, fmt.Errorf("server acknowledged position %d beyond %d sent", rc.Through, b.Through)
	}
	for i, r := range resp.GetResults() {
		e := b.Changes[i]
		out, ok := wire.OutcomeFromProto(r.GetOutcome())
		if !ok {
			return syncengine.Receipt{}, fmt.Errorf("change %v: unknown outcome %v", e.Change.ID, r.GetOutcome())
		}
		rc.Results = append(rc.Results, syncengine.ChangeResult{
			Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: out, Detail: r.GetMessage(),
			Reason: wire.ReasonString(r.GetReason()), Fields: wire.FieldErrorsFromProto(r.GetFieldErrors()),
		})
	}
	return rc, nil
}

// A replica gathers snapshot records over several responses and commits them
// when it holds snapshotCommit of them, or has held the first for
// snapshotCommitAge: on loopback or 3G that is a few thousand records per
// commit (a bootstrap spends its time in commits otherwise), on 2G every
// response or two, so that a cut link loses a second of transfer at most.
const (
	snapshotCommit    = 2048
	snapshotCommitAge = time.Second
)

// Enroll exchanges a one-time enrolment code for a token at the server at
// addr, for the replica id, with the connection and RPC deadlines of a sync.
// It makes one attempt: the caller retries (a person is typing the code). It
// returns an error wrapping ErrTLSRequired, before dialing, for plaintext
// beyond loopback, the server's gRPC status (PermissionDenied for an unknown
// or expired code), or an error for an answer without a 16-byte server id.
func Enroll(ctx context.Context, addr, code string, id syncengine.ReplicaID, name string, tlsCfg *tls.Config, extra ...grpc.DialOption) (*fieldsyncv1.EnrollResponse, error) {
	dopts, err := DialOptions(addr, "", tlsCfg, extra...)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	req := &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: id[:], DeviceName: name}
	ectx, cancel := context.WithTimeout(ctx, ConnectTimeout+RPCDeadline(proto.Size(req)))
	defer cancel()
	resp, err := fieldsyncv1.NewEnrolmentServiceClient(conn).Enroll(ectx, req)
	if err != nil {
		return nil, err
	}
	if srv := resp.GetServerReplicaId(); len(srv) != len(id) || syncengine.ReplicaID(srv).IsZero() {
		return nil, fmt.Errorf("server replica id of %d bytes", len(srv))
	}
	return resp, nil
}
