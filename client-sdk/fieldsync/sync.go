package fieldsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncclient"
)

// Sync runs one sync round with the enrolled server: the handshake, then a
// push of the device's unacknowledged changes, then a pull of the server's
// changes in the device's areas (syncclient.Sync).
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
	err := c.sync(ctx, run)
	// Record the outcome even when ctx is done.
	rctx := context.WithoutCancel(ctx)
	// The TLS session to resume next time; not keeping it only costs the
	// next sync a full handshake.
	_ = c.sessions.persist(rctx)
	_, why := deviceRefusal(err)
	if merr := c.store.SetMeta(rctx, metaLastRefused, []byte(why)); merr != nil {
		return errors.Join(err, merr)
	}
	if err != nil {
		if merr := c.store.SetMeta(rctx, metaLastError, []byte(describeSyncError(err))); merr != nil {
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

func (c *Client) sync(ctx context.Context, run *syncRun) error {
	addr, err := c.store.Meta(ctx, metaServerAddr)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	token, err := c.secret(ctx, metaToken)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	srv, err := c.serverReplica(ctx)
	if err != nil {
		return fmt.Errorf("fieldsync: sync: %w", err)
	}
	return syncclient.Sync(ctx, c.syncConfig(), syncclient.Target{Addr: string(addr), Token: string(token), Server: srv}, run.onProgress)
}

// syncConfig is how the device runs syncclient's rounds over its replica.
func (c *Client) syncConfig() *syncclient.Config {
	return &syncclient.Config{
		Store:        c.store,
		Clock:        c.clock,
		CorrectClock: true,
		Now:          c.now,
		Retry:        c.retry,
		TLS:          c.tls,
		DialOptions:  c.dialOpts,
		IdleTimeout:  c.idleTimeout,
		CursorKey:    metaPullCursor,
		Host:         deviceHost{c},
	}
}

// deviceHost is what the device does around syncclient's rounds.
type deviceHost struct{ c *Client }

// HelloInfo tells the operator's status what the device still has to send
// and how its last sync ended.
func (h deviceHost) HelloInfo(ctx context.Context) (int, string) {
	st, err := h.c.Status(ctx)
	if err != nil {
		return 0, ""
	}
	return st.Pending, st.LastError
}

// OnHello keeps the corrected clock, the rules in force, the upstream
// receipt, and the server's highest dot of the device as the floor of its
// next dots. A replica behind it was restored from an older copy of itself:
// it forgets its pull position, so that this round's pull is a snapshot
// that brings back the work the copy lacked.
func (h deviceHost) OnHello(ctx context.Context, hello *fieldsyncv1.HelloResponse) error {
	if err := h.c.saveClock(ctx); err != nil {
		return err
	}
	if _, err := h.c.store.RaiseCounterFloor(ctx, hello.GetMaxCounter(), metaPullCursor); err != nil {
		return err
	}
	if err := h.c.saveRules(ctx, hello.GetRules()); err != nil {
		return err
	}
	return h.c.saveReceipt(ctx, hello)
}

// AfterPull forgets the records no longer in the device's areas.
func (h deviceHost) AfterPull(ctx context.Context, hello *fieldsyncv1.HelloResponse) error {
	return h.c.forgetOutside(ctx, hello.GetAreaPrefixes())
}

// AfterRound does nothing on a device.
func (deviceHost) AfterRound(context.Context, fieldsyncv1.SyncServiceClient) error { return nil }
