package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncclient"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Meta keys of the upstream relay in the store (boltstore.Store.Meta).
const (
	metaUpstreamAddr    = "upstream_addr"
	metaUpstreamReplica = "upstream_replica_id"
	metaUpstreamCursor  = "upstream_pull_cursor"
	metaUpstreamSuccess = "upstream_last_success"
	metaUpstreamAttempt = "upstream_last_attempt"
	metaUpstreamError   = "upstream_last_error"
	// metaSnapshotEpoch counts the snapshots from upstream that changed
	// records here. Such changes are not in this server's log, so a new
	// epoch makes every device's cursor take a snapshot again (it is part
	// of the cursor's scope hash).
	metaSnapshotEpoch = "snapshot_epoch"
)

// Upstream configures a township server's relay to its county: the same
// sync rounds a device runs (syncclient), over the server's store, pushing
// every change the county lacks and pulling the county's changes in the
// township's areas, then pushing the audit entries the county lacks
// (PushAudit) and the device registry when it changed (ReportDevices).
type Upstream struct {
	// Addr is the county server's host:port, as enrolment recorded it.
	Addr string
	// Token is the township's token at the county (EnrollUpstream's).
	Token string
	// TLS configures the connection; nil means plaintext, to loopback only.
	TLS *tls.Config
	// Every is the time between rounds when the uplink is up; 0 means
	// DefaultUpstreamEvery. A failed round is retried sooner, with backoff
	// from a second up to Every, so a link that comes back is used within
	// seconds to a minute.
	Every time.Duration
	// DialOptions are added to every connection (tests).
	DialOptions []grpc.DialOption
	// Retry is the retry policy within one round; zero means three attempts
	// over about three seconds (the schedule retries later anyway).
	Retry syncclient.RetryPolicy
}

// DefaultUpstreamEvery is the time between relay rounds while the uplink is
// up. A device's push also starts a round (after a short delay that gathers
// the pushes of a day-end rush).
const DefaultUpstreamEvery = time.Minute

// upstreamNudgeDelay gathers the pushes that arrive together into one round.
const upstreamNudgeDelay = 2 * time.Second

// relay is the running upstream relay of a server.
type relay struct {
	cfg   Upstream
	nudge chan struct{}
	mu    sync.Mutex // serialises rounds
}

// EnrollUpstream exchanges an enrolment code issued by the county (fieldsync
// admin device add --relay) for this server's token there, and records the
// county's address and replica id in the store. The caller keeps the token
// (fieldsyncd writes it to the --upstream-token-file). Enrolling again with
// another county's code is refused: the store has synced with its county.
//
// It returns the token and the county's ID-hash key, which the township must
// hand its devices in place of its own.
func (s *Server) EnrollUpstream(ctx context.Context, addr, code string, tlsCfg *tls.Config, extra ...grpc.DialOption) (token string, idHashKey []byte, err error) {
	if strings.TrimSpace(addr) == "" || strings.TrimSpace(code) == "" {
		return "", nil, errors.New("enroll upstream: need the county's address and the enrolment code its operator issued")
	}
	resp, err := syncclient.Enroll(ctx, addr, code, s.store.Replica(), "township "+s.cfg.Area, tlsCfg, extra...)
	if err != nil {
		return "", nil, fmt.Errorf("enroll upstream at %s: %w", addr, err)
	}
	up := syncengine.ReplicaID(resp.GetServerReplicaId())
	if old, err := s.upstreamReplica(ctx); err != nil {
		return "", nil, fmt.Errorf("enroll upstream: %w", err)
	} else if !old.IsZero() && old != up {
		return "", nil, fmt.Errorf("enroll upstream: this server syncs with upstream replica %v, and %s is %v: a township keeps its county", old, addr, up)
	}
	for _, a := range resp.GetAreaPrefixes() {
		if s.cfg.Area != "" && !syncengine.Overlap(a, s.cfg.Area) {
			return "", nil, fmt.Errorf("enroll upstream: the county enrolled this server for area %s, outside its area %s: ask the county for a code of area %s", a, s.cfg.Area, s.cfg.Area)
		}
	}
	if err := s.store.SetMeta(ctx, metaUpstreamAddr, []byte(addr)); err != nil {
		return "", nil, fmt.Errorf("enroll upstream: %w", err)
	}
	if err := s.store.SetMeta(ctx, metaUpstreamReplica, up[:]); err != nil {
		return "", nil, fmt.Errorf("enroll upstream: %w", err)
	}
	s.log.InfoContext(ctx, "enrolled with upstream", "upstream", up.String())
	return resp.GetDeviceToken(), resp.GetIdHashKey(), nil
}

// upstreamReplica returns the county's replica id, zero before enrolment.
func (s *Server) upstreamReplica(ctx context.Context) (syncengine.ReplicaID, error) {
	b, err := s.store.Meta(ctx, metaUpstreamReplica)
	var id syncengine.ReplicaID
	if err == nil && len(b) == len(id) {
		copy(id[:], b)
	}
	return id, err
}

// SetUpstream configures the relay to up without starting its schedule:
// SyncUpstream then runs rounds on demand. It returns an error if the server
// was not enrolled with an upstream (EnrollUpstream) or up has no token.
func (s *Server) SetUpstream(ctx context.Context, up Upstream) error {
	if up.Every <= 0 {
		up.Every = DefaultUpstreamEvery
	}
	if up.Retry == (syncclient.RetryPolicy{}) {
		up.Retry = syncclient.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Second, MaxDelay: 10 * time.Second}
	}
	id, err := s.upstreamReplica(ctx)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	if id.IsZero() {
		return errors.New("upstream: this server is not enrolled with its county: run fieldsyncd enroll-upstream first")
	}
	if up.Token == "" {
		return errors.New("upstream: no token: give the token file enroll-upstream wrote")
	}
	s.relay.Store(&relay{cfg: up, nudge: make(chan struct{}, 1)})
	return nil
}

// RunUpstream runs the relay SetUpstream configured until ctx ends (nil) or
// the server closes (ErrClosed), as the other Run loops (RunCompaction): a
// round at once, then every Upstream.Every, sooner after devices push, and
// with backoff while the uplink is down. Rounds run beside the devices'
// syncs and never hold them up beyond the store's own transactions.
func (s *Server) RunUpstream(ctx context.Context) error {
	r := s.relay.Load()
	if r == nil {
		return errors.New("upstream: no relay configured: call SetUpstream first")
	}
	failures := 0
	for {
		err := s.SyncUpstream(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case s.closed.Load():
			return ErrClosed
		}
		wait := r.cfg.Every
		if err != nil {
			failures++
			wait = syncclient.RetryPolicy{BaseDelay: time.Second, MaxDelay: r.cfg.Every}.Delay(failures)
			s.log.WarnContext(ctx, "upstream sync failed", "err", err, "retry_in", wait)
		} else {
			failures = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-r.nudge:
			t.Stop()
			if err == nil {
				// Gather the pushes of a rush into one round.
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(upstreamNudgeDelay):
				}
			}
		}
	}
}

// nudgeUpstream asks the relay, if there is one, for a round soon.
func (s *Server) nudgeUpstream() {
	if r := s.relay.Load(); r != nil {
		select {
		case r.nudge <- struct{}{}:
		default:
		}
	}
}

// SyncUpstream runs one relay round now (SetUpstream must have been
// called) and records its outcome for SyncStatus.
func (s *Server) SyncUpstream(ctx context.Context) error {
	r := s.relay.Load()
	if r == nil {
		return errors.New("upstream: no upstream configured")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rctx := context.WithoutCancel(ctx)
	now := []byte(s.now().UTC().Format(time.RFC3339Nano))
	if err := s.store.SetMeta(rctx, metaUpstreamAttempt, now); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	err := s.syncUpstream(ctx, r)
	if err != nil {
		if merr := s.store.SetMeta(rctx, metaUpstreamError, []byte(truncate(err.Error(), maxReportedError))); merr != nil {
			return errors.Join(err, merr)
		}
		return err
	}
	if err := s.store.SetMeta(rctx, metaUpstreamError, nil); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	return s.store.SetMeta(rctx, metaUpstreamSuccess, []byte(s.now().UTC().Format(time.RFC3339Nano)))
}

func (s *Server) syncUpstream(ctx context.Context, r *relay) error {
	addr, err := s.store.Meta(ctx, metaUpstreamAddr)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	up, err := s.upstreamReplica(ctx)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	if r.cfg.Addr != "" {
		addr = []byte(r.cfg.Addr)
	}
	// Received stamps are taken without the skew guard of the devices'
	// pushes (a county's clock ahead of this one must not stop the relay),
	// then raise this server's clock.
	clock := syncengine.NewClock(s.store.Replica(), 0)
	clock.Restore(s.clock.Last())
	defer func() { s.clock.Restore(clock.Last()) }()
	cfg := &syncclient.Config{
		Store:       s.store,
		Clock:       clock,
		Relay:       true,
		Now:         s.now,
		Retry:       r.cfg.Retry,
		TLS:         r.cfg.TLS,
		DialOptions: r.cfg.DialOptions,
		CursorKey:   metaUpstreamCursor,
		Host:        &relayHost{s: s, up: up},
	}
	var pushed, pulled, rejected int
	err = syncclient.Sync(ctx, cfg, syncclient.Target{Addr: string(addr), Token: r.cfg.Token, Server: up}, func(p syncclient.Progress) {
		pushed, pulled, rejected = p.Pushed, p.Pulled, p.Rejected
	})
	if rejected > 0 {
		// Counts only: the messages may name fields of records. The
		// store keeps each (boltstore.Store.Rejections).
		s.log.WarnContext(ctx, "upstream refused relayed changes", "count", rejected)
	}
	s.log.InfoContext(ctx, "upstream sync", "pushed", pushed, "pulled", pulled, "ok", err == nil)
	return err
}

// upstreamPending counts the changes of this server's log the upstream has
// not acknowledged, leaving out those it made or sent (a relay push never
// sends them back), up to lagCap. It reads at most 8 × lagCap entries, since
// those it leaves out can be most of the log after the acknowledged
// position; it reports capped when it stopped early (the count is then a
// floor).
func (s *Server) upstreamPending(ctx context.Context, up syncengine.ReplicaID) (n int, capped bool, err error) {
	err = s.store.View(ctx, func(tx syncengine.ReadTx) error {
		n, capped = 0, false
		cur, err := tx.Cursor(ctx, up)
		if err != nil {
			return err
		}
		for after, scanned := cur.Acked, 0; ; scanned += logPageLimit {
			if n >= lagCap || scanned >= 8*lagCap {
				capped = true
				return nil
			}
			page, err := tx.ReadLog(ctx, after, logPageLimit)
			if err != nil {
				return err
			}
			for _, e := range page {
				if e.Change.Origin != up && e.From != up {
					n++
				}
				after = e.Pos
			}
			if len(page) < logPageLimit {
				return nil
			}
		}
	})
	return n, capped, err
}

// upstreamReceipt returns, for the Hello of device id, whether this server
// relays upstream and the highest counter of id's changes through which the
// upstream has acknowledged them.
func (s *Server) upstreamReceipt(ctx context.Context, id syncengine.ReplicaID) (bool, uint64, error) {
	up, err := s.upstreamReplica(ctx)
	if err != nil || up.IsZero() {
		return false, 0, err
	}
	var cur syncengine.Cursor
	err = s.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		cur, err = tx.Cursor(ctx, up)
		return err
	})
	if err != nil {
		return true, 0, err
	}
	n, err := s.store.CounterThrough(ctx, id, cur.Acked)
	return true, n, err
}

// snapshotEpoch is the count of upstream snapshots that changed records
// here ("" for none), part of every device cursor's scope.
func (s *Server) snapshotEpoch(ctx context.Context) (string, error) {
	b, err := s.store.Meta(ctx, metaSnapshotEpoch)
	return string(b), err
}

// upstreamStatus is the relay's state for SyncStatus; nil without one.
func (s *Server) upstreamStatus(ctx context.Context) (*fieldsyncv1.UpstreamStatus, error) {
	up, err := s.upstreamReplica(ctx)
	if err != nil || up.IsZero() {
		return nil, err
	}
	st := &fieldsyncv1.UpstreamStatus{}
	addr, err := s.store.Meta(ctx, metaUpstreamAddr)
	if err != nil {
		return nil, err
	}
	st.Address = string(addr)
	if r := s.relay.Load(); r != nil && r.cfg.Addr != "" {
		st.Address = r.cfg.Addr
	}
	for key, dst := range map[string]**timestamppb.Timestamp{metaUpstreamSuccess: &st.LastSync, metaUpstreamAttempt: &st.LastAttempt} {
		b, err := s.store.Meta(ctx, key)
		if err != nil {
			return nil, err
		}
		if t, err := time.Parse(time.RFC3339Nano, string(b)); err == nil {
			*dst = timestamppb.New(t)
		}
	}
	b, err := s.store.Meta(ctx, metaUpstreamError)
	if err != nil {
		return nil, err
	}
	st.LastError = string(b)
	n, _, err := s.upstreamPending(ctx, up)
	if err != nil {
		return nil, err
	}
	st.PendingChanges = uint64(n)
	return st, nil
}

// afterRound passes on an error of what a township sends its county after a
// round's push and pull: one the county refused as invalid is logged and does
// not fail the round (the changes went through, and sending the same again
// would be refused again); a transport error fails it, to be retried.
func (s *Server) afterRound(ctx context.Context, what string, err error) error {
	if st, ok := status.FromError(err); err != nil && ok && st.Code() == codes.InvalidArgument {
		s.log.WarnContext(ctx, "the county refused the "+what+"; the round's changes went through", "err", err)
		return nil
	}
	return err
}

// relayHost is what a township does around syncclient's rounds with its
// county.
type relayHost struct {
	s  *Server
	up syncengine.ReplicaID
	// areas are the township's areas at the county, as its handshake says.
	areas []string
}

// HelloInfo tells the county's operator what the township still has to
// relay and how its last relay round ended.
func (h *relayHost) HelloInfo(ctx context.Context) (int, string) {
	n, _, _ := h.s.upstreamPending(ctx, h.up)
	b, _ := h.s.store.Meta(ctx, metaUpstreamError)
	return n, string(b)
}

// OnHello keeps the township's areas and the county's rules.
func (h *relayHost) OnHello(ctx context.Context, hello *fieldsyncv1.HelloResponse) error {
	h.areas = hello.GetAreaPrefixes()
	return h.s.keepUpstreamRules(ctx, hello.GetRules())
}

// AfterPull does nothing: a township keeps what moved out of its area
// until its compactions forget it (forgetMovedAway).
func (h *relayHost) AfterPull(context.Context, *fieldsyncv1.HelloResponse) error { return nil }

// AfterRound, after the push and the pull, relays the audit trail and the
// device registry on the same connection.
func (h *relayHost) AfterRound(ctx context.Context, rpc fieldsyncv1.SyncServiceClient) error {
	return errors.Join(h.s.afterRound(ctx, "audit entries", h.s.pushAudit(ctx, rpc)),
		h.s.afterRound(ctx, "device report", h.s.reportDevices(ctx, rpc, h.areas)))
}

// SnapshotChanged starts a new snapshot epoch, in the transaction of a
// snapshot batch from the county that changed a stored record: such a
// change is not in the township's log, so its own devices take a snapshot
// again.
func (h *relayHost) SnapshotChanged(ctx context.Context, tx syncengine.Tx) error {
	epoch, err := tx.Meta(ctx, metaSnapshotEpoch)
	if err != nil {
		return err
	}
	n, _ := strconv.ParseUint(string(epoch), 10, 64)
	return tx.SetMeta(ctx, metaSnapshotEpoch, []byte(strconv.FormatUint(n+1, 10)))
}
