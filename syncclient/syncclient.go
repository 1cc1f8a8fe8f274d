// Package syncclient is the client side of fieldsync's sync protocol: one
// sync round with a server (the handshake, then Push of what the server
// lacks while a Pull of the server's changes travels down; with a server of
// protocol version 2 one Exchange carries the handshake and the first
// batch, records packed), retried with backoff over the transient failures
// of rural links. The device SDK (client-sdk) runs it
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
	// kept under, written in the transaction of the batch it follows. The
	// round also keeps, under keys it makes from it, what the last
	// handshake said of the server (".server") and a snapshot's pending
	// sweep (".sweep").
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

// A replica gathers snapshot records over several responses and commits them
// when it holds snapshotCommit of them, or has held the first for
// snapshotCommitAge: on loopback or 3G that is several thousand records per
// commit (a bootstrap spends its time in commits otherwise: 8,192 rather
// than 2,048 took a 20,000-record bootstrap from about ten commits to three),
// on 2G every response or two, so that a cut link loses a second of
// transfer at most.
var snapshotCommit = 8192 // a variable for the tests only

const snapshotCommitAge = time.Second

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
