package fieldsync

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncengine"
)

// liveServer is a real server on a listener the test chose, so that the test
// can stop it, restart it on the same port, or cut its connections.
type liveServer struct {
	srv  *server.Server
	addr string
	stop func()
}

// serve runs a server with cfg on lis (servertest.Start's steps, with extra
// grpc server options). It stops when the test ends, or earlier by stop.
func serve(t *testing.T, cfg server.Config, lis net.Listener, opts ...grpc.ServerOption) *liveServer {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.IDHashKey == nil {
		cfg.IDHashKey = []byte("test id hash key")
	}
	srv, err := server.New(cfg)
	if err != nil {
		lis.Close()
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(srv.GRPCOptions(), opts...)...)
	srv.Register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			gs.Stop()
			<-done
			if err := srv.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return &liveServer{srv: srv, addr: lis.Addr().String(), stop: stop}
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// enrol opens a new replica with opts and enrols it at s for area.
func (s *liveServer) enrol(t *testing.T, area string, opts ...Option) *Client {
	t.Helper()
	c := openReplica(t, opts...)
	code, _, err := s.srv.IssueEnrolmentCode([]string{area}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), s.addr, code); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	return c
}

func (s *liveServer) logEnd(t *testing.T) syncengine.Position {
	t.Helper()
	end, err := s.srv.Store().LogEnd(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// fastRetry retries quickly, for tests.
var fastRetry = WithRetry(RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})

// progressLog records the progress reports of Sync calls.
type progressLog []Progress

func (l *progressLog) option() SyncOption {
	return OnProgress(func(p Progress) { *l = append(*l, p) })
}

func (l progressLog) maxAttempt() int {
	n := 0
	for _, p := range l {
		n = max(n, p.Attempt)
	}
	return n
}

func (l progressLog) last() Progress {
	if len(l) == 0 {
		return Progress{}
	}
	return l[len(l)-1]
}

func TestSyncProgress(t *testing.T) {
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"))
	cty := newCounty(t)
	a, b := s.enrol(t, cty.village1), s.enrol(t, cty.village1)
	saved := 0
	for _, r := range cty.records1 {
		saved += mustSave(t, a, r)
	}
	bad := cty.records1[0]
	for _, r := range cty.records1 {
		if r.GetHousehold() != nil {
			bad = cloneRecord(r)
			bad.GetHousehold().HeadName = ""
			bad.GetHousehold().Id = "01890000-0000-7000-8000-0000000000aa"
			break
		}
	}
	if err := a.write(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	n := saved + 1

	var pa progressLog
	if err := a.Sync(t.Context(), pa.option()); err != nil {
		t.Fatal(err)
	}
	if got := pa[0]; got.Phase != PhaseConnect || got.Attempt != 1 {
		t.Errorf("first report = %+v, want connect of attempt 1", got)
	}
	if got := pa.last(); got.Phase != PhaseDone || got.Pushed != n || got.Rejected != 1 || got.Attempt != 1 {
		t.Errorf("last report = %+v, want done with %d pushed, 1 rejected", got, n)
	}
	pushes := 0
	for i, p := range pa {
		if p.Phase == PhasePush {
			pushes++
		}
		if i > 0 && p.Pushed < pa[i-1].Pushed {
			t.Errorf("Pushed went down: %+v after %+v", p, pa[i-1])
		}
	}
	if pushes == 0 {
		t.Errorf("no push reports in %+v", pa)
	}

	var pb progressLog
	if err := b.Sync(t.Context(), pb.option()); err != nil {
		t.Fatal(err)
	}
	snap := false
	for _, p := range pb {
		snap = snap || (p.Phase == PhasePull && p.Snapshot)
	}
	if !snap {
		t.Errorf("B's first pull reported no snapshot: %+v", pb)
	}
	if got := pb.last(); got.Phase != PhaseDone || got.Pulled != saved || got.Pushed != 0 {
		t.Errorf("B's last report = %+v, want done with %d pulled", got, saved)
	}

	// Later pulls are changes, not a snapshot.
	var h *fieldsyncv1.Record
	for _, r := range cty.records1 {
		if r.GetHousehold() != nil {
			h = cloneRecord(r)
			break
		}
	}
	h.GetHousehold().HeadName = "杨国华"
	mustSave(t, a, h)
	mustSync(t, a)
	pb = nil
	if err := b.Sync(t.Context(), pb.option()); err != nil {
		t.Fatal(err)
	}
	for _, p := range pb {
		if p.Snapshot {
			t.Errorf("incremental pull reported a snapshot: %+v", p)
		}
	}
	if got := pb.last(); got.Pulled != 1 {
		t.Errorf("B's incremental sync = %+v, want 1 pulled", got)
	}
}

// A server that is down when Sync starts and comes back on the same port
// during its retries: Sync succeeds.
func TestSyncRetriesUntilServerRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir}
	s1 := serve(t, cfg, listen(t, "127.0.0.1:0"))
	cty := newCounty(t)
	c := s1.enrol(t, cty.village1, fastRetry)
	saved := 0
	for _, r := range cty.records1 {
		saved += mustSave(t, c, r)
	}
	s1.stop()

	var s2 *liveServer
	var restartErr error
	var log progressLog
	err := c.Sync(t.Context(), OnProgress(func(p Progress) {
		log = append(log, p)
		if p.Phase == PhaseConnect && p.Attempt == 3 {
			lis, err := net.Listen("tcp", s1.addr)
			if err != nil {
				restartErr = err
				return
			}
			s2 = serve(t, cfg, lis)
		}
	}))
	if restartErr != nil {
		t.Fatalf("restart on %s: %v", s1.addr, restartErr)
	}
	if err != nil {
		t.Fatalf("Sync = %v; progress %+v", err, log)
	}
	if got := log.maxAttempt(); got != 3 {
		t.Errorf("Sync took %d attempts, want 3 (two while the server was down)", got)
	}
	if got, want := s2.logEnd(t), syncengine.Position(saved); got != want {
		t.Errorf("server LogEnd = %d, want %d", got, want)
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.LastError != "" || st.LastSuccess.IsZero() {
		t.Errorf("Status = %+v, want nothing pending and the success recorded", st)
	}
}

// Sync gives up after MaxAttempts and records the error.
func TestSyncGivesUp(t *testing.T) {
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"))
	c := s.enrol(t, "532523", WithRetry(RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	s.stop()
	var log progressLog
	err := c.Sync(t.Context(), log.option())
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("Sync = %v, want Unavailable after 3 attempts", err)
	}
	if got := log.maxAttempt(); got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.LastError, "gave up after 3 attempts") {
		t.Errorf("LastError = %q, want the final error", st.LastError)
	}

	// A cancelled context ends the retries.
	ctx, cancel := context.WithCancel(t.Context())
	c2 := openReplica(t, WithRetry(RetryPolicy{MaxAttempts: 100, BaseDelay: time.Hour}))
	copyEnrolment(t, c, c2)
	err = c2.Sync(ctx, OnProgress(func(p Progress) {
		if p.Attempt == 1 {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context = %v, want context.Canceled", err)
	}
}

// copyEnrolment gives to the enrolment of from (tests of a second replica
// against a server that is down).
func copyEnrolment(t *testing.T, from, to *Client) {
	t.Helper()
	for _, k := range []string{metaServerAddr, metaToken, metaAreas, metaServerReplica, metaIDHashKey} {
		v, err := from.store.Meta(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := to.store.SetMeta(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}
}

// A revoked device's Sync fails at once: no retry.
func TestSyncRevokedNotRetried(t *testing.T) {
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"))
	cty := newCounty(t)
	c := s.enrol(t, cty.village1, fastRetry)
	mustSave(t, c, cty.records1[0])
	mustSync(t, c)
	if err := s.srv.Store().Registry().RevokeDevice(t.Context(), c.Replica()); err != nil {
		t.Fatal(err)
	}
	mustSave(t, c, cty.records1[1])
	var log progressLog
	err := c.Sync(t.Context(), log.option())
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Sync of a revoked device = %v, want Unauthenticated", err)
	}
	if got := log.maxAttempt(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
	if st, err := c.Status(t.Context()); err != nil || st.Pending != 1 || st.LastError == "" {
		t.Errorf("Status = %+v, %v; want 1 pending and the error", st, err)
	}
}

// cutListener cuts the first connection accepted after arm: it sends the
// client n bytes, then ends the connection.
type cutListener struct {
	net.Listener
	armed atomic.Int64
	cuts  atomic.Int32
}

func (l *cutListener) arm(n int64) { l.armed.Store(n) }

func (l *cutListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if n := l.armed.Swap(0); n > 0 {
		return &cutConn{Conn: conn, left: n, l: l}, nil
	}
	return conn, nil
}

type cutConn struct {
	net.Conn
	l    *cutListener
	mu   sync.Mutex
	left int64
	cut  bool
}

func (c *cutConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return 0, net.ErrClosed
	}
	if int64(len(b)) < c.left {
		c.left -= int64(len(b))
		return c.Conn.Write(b)
	}
	n, _ := c.Conn.Write(b[:c.left])
	c.cut = true
	c.l.cuts.Add(1)
	// Half-close, so the client reads what was sent and then EOF.
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		c.Conn.Close()
	}
	return n, net.ErrClosed
}

// A connection cut in the middle of a pull: Sync retries, resumes from the
// stored cursor and ends with everything.
func TestSyncResumesAfterCutConnection(t *testing.T) {
	lis := &cutListener{Listener: listen(t, "127.0.0.1:0")}
	s := serve(t, server.Config{MaxPullBytes: 1 << 10}, lis)
	cty := newCounty(t)
	a, b := s.enrol(t, cty.village1, fastRetry), s.enrol(t, cty.village1, fastRetry)
	for _, r := range cty.records1 {
		mustSave(t, a, r)
	}
	mustSync(t, a)

	lis.arm(4 << 10)
	var log progressLog
	if err := b.Sync(t.Context(), log.option()); err != nil {
		t.Fatalf("Sync = %v; progress %+v", err, log)
	}
	if lis.cuts.Load() != 1 {
		t.Fatalf("the connection was not cut")
	}
	if got := log.maxAttempt(); got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
	firstPulled := 0
	for _, p := range log {
		if p.Attempt == 1 && p.Phase == PhasePull {
			firstPulled = p.Pulled
		}
	}
	if firstPulled == 0 {
		t.Errorf("the cut came before any batch was stored; progress %+v", log)
	}
	checkHas(t, "B", b, cty.records1)
	if st, err := b.Status(t.Context()); err != nil || st.LastError != "" {
		t.Errorf("Status = %+v, %v", st, err)
	}
	// The cursor stored after the cut continues: a further sync pulls nothing.
	log = nil
	if err := b.Sync(t.Context(), log.option()); err != nil || log.last().Pulled != 0 {
		t.Errorf("Sync after catching up = %v, progress %+v; want nothing pulled", err, log)
	}
}

// A pull stream on which nothing arrives is cancelled after the idle time
// and the attempt retried; Sync does not hang.
func TestSyncStalledPullEnds(t *testing.T) {
	var stall atomic.Bool
	stall.Store(true)
	release := make(chan struct{})
	stallPull := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if strings.HasSuffix(info.FullMethod, "/Pull") && stall.Load() {
			select {
			case <-release:
			case <-ss.Context().Done():
				return ss.Context().Err()
			}
		}
		return h(srv, ss)
	}
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"), grpc.ChainStreamInterceptor(stallPull))
	defer close(release)
	cty := newCounty(t)
	c := s.enrol(t, cty.village1, WithRetry(RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}))
	c.idleTimeout = 20 * time.Millisecond
	mustSave(t, c, cty.records1[0])

	var log progressLog
	err := c.Sync(t.Context(), log.option())
	if !strings.Contains(err.Error(), "the connection stalled") || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("Sync = %v, want a stalled pull after 2 attempts", err)
	}
	// The push went through before the pull stalled.
	if got := s.logEnd(t); got != 1 {
		t.Errorf("server LogEnd = %d, want 1", got)
	}
	stall.Store(false)
	mustSync(t, c)
}

func cloneRecord(r *fieldsyncv1.Record) *fieldsyncv1.Record {
	return proto.Clone(r).(*fieldsyncv1.Record)
}

// A server whose handshake claims this device's change number near 2^64 is
// refused before the device numbers anything above it; the same device syncs
// with an honest server.
func TestImplausibleMaxCounterRefused(t *testing.T) {
	var lie atomic.Bool
	lie.Store(true)
	liar := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if hello, ok := resp.(*fieldsyncv1.HelloResponse); ok && lie.Load() {
			hello.MaxCounter = 1<<64 - 2
		}
		return resp, err
	}
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"), grpc.ChainUnaryInterceptor(liar))
	cty := newCounty(t)
	c := s.enrol(t, cty.village1, WithRetry(RetryPolicy{MaxAttempts: 1}))
	mustSave(t, c, cty.records1[0])
	err := c.Sync(t.Context())
	if err == nil || !strings.Contains(err.Error(), "more than any replica makes") {
		t.Fatalf("Sync with an implausible max_counter = %v, want a refusal", err)
	}
	lie.Store(false)
	mustSync(t, c)
	mustSave(t, c, cty.records1[1])
	mustSync(t, c)
	if st, err := c.Status(t.Context()); err != nil || st.Pending != 0 || len(st.Rejected) != 0 {
		t.Errorf("Status = %+v, %v; want everything accepted", st, err)
	}
}
