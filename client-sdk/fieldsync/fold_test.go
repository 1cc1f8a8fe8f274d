package fieldsync

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncengine"
)

// rpcTrace is a server interceptor that records the sync calls in order,
// with whether a Push carried a handshake, and can make the server answer
// as an older build (no handshake with the push, capability version 1).
type rpcTrace struct {
	mu    sync.Mutex
	calls []string
	// pushed is closed when the first Push reaches its handler after arm.
	pushed chan struct{}
	once   *sync.Once
	old    atomic.Bool
	// packedPulls counts the pulls that asked for packed records, and
	// packedExchanges the Exchange calls that carried some.
	packedPulls, packedExchanges atomic.Int32
	// otherSchema: the handshake answers name another record schema.
	otherSchema atomic.Bool
}

func newTrace() *rpcTrace { return &rpcTrace{pushed: make(chan struct{}), once: new(sync.Once)} }

func (r *rpcTrace) arm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls, r.pushed, r.once = nil, make(chan struct{}), new(sync.Once)
}

func (r *rpcTrace) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	name, ok := strings.CutPrefix(info.FullMethod, "/fieldsync.v1.SyncService/")
	if !ok {
		return h(ctx, req)
	}
	if x, ok := req.(*fieldsyncv1.ExchangeRequest); ok {
		if x.GetHello() != nil {
			name += "+Hello"
		}
		if packedIn(x.GetPush()) {
			r.packedExchanges.Add(1)
		}
	}
	if p, ok := req.(*fieldsyncv1.PushRequest); ok && packedIn(p) {
		// An older server would take them for changes that clear fields.
		return nil, status.Error(codes.InvalidArgument, "packed records in Push")
	}
	if name != "Hello" {
		r.mu.Lock()
		pushed, once := r.pushed, r.once
		r.mu.Unlock()
		once.Do(func() { close(pushed) })
	}
	r.mu.Lock()
	r.calls = append(r.calls, name)
	r.mu.Unlock()
	if info.FullMethod == fieldsyncv1.SyncService_Exchange_FullMethodName && r.old.Load() {
		// What grpc answers a method a server does not have.
		return nil, status.Errorf(codes.Unimplemented, "unknown method Exchange for service fieldsync.v1.SyncService")
	}
	resp, err := h(ctx, req)
	hello, ok := resp.(*fieldsyncv1.HelloResponse)
	if x, isX := resp.(*fieldsyncv1.ExchangeResponse); isX {
		hello, ok = x.GetHello(), x.GetHello() != nil
	}
	if ok && r.old.Load() {
		hello.CapabilityVersion = 1
	}
	if ok && r.otherSchema.Load() {
		hello.RecordSchema = []byte("another")
	}
	return resp, err
}

// packedIn reports whether req carries a packed record.
func packedIn(req *fieldsyncv1.PushRequest) bool {
	for _, c := range req.GetChanges() {
		if len(c.GetUpsert().GetPackedRecord()) > 0 {
			return true
		}
	}
	return false
}

func (r *rpcTrace) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	r.mu.Lock()
	r.calls = append(r.calls, info.FullMethod[len("/fieldsync.v1.SyncService/"):])
	r.mu.Unlock()
	return h(srv, &pullSpy{ServerStream: ss, r: r})
}

// pullSpy counts the Pull requests that ask for packed records.
type pullSpy struct {
	grpc.ServerStream
	r *rpcTrace
}

func (p *pullSpy) RecvMsg(m any) error {
	err := p.ServerStream.RecvMsg(m)
	if req, ok := m.(*fieldsyncv1.PullRequest); ok && err == nil && req.GetPacked() {
		p.r.packedPulls.Add(1)
	}
	return err
}

// get returns the calls recorded since arm, the Pull, which runs beside the
// push, moved last.
func (r *rpcTrace) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.DeleteFunc(slices.Clone(r.calls), func(c string) bool { return c == "Pull" })
	for range len(r.calls) - len(out) {
		out = append(out, "Pull")
	}
	return out
}

func (r *rpcTrace) serve(t *testing.T) *liveServer {
	return serve(t, server.Config{}, listen(t, "127.0.0.1:0"), grpc.ChainUnaryInterceptor(r.unary), grpc.ChainStreamInterceptor(r.stream))
}

// heldLink dials connections whose reads, while held, return nothing of
// the server's until release is closed (or 5 s passed, which it records).
type heldLink struct {
	held    atomic.Bool
	release func() <-chan struct{}
	waited  atomic.Bool
}

func (l *heldLink) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || !l.held.Load() {
		return c, err
	}
	return &heldConn{Conn: c, l: l, release: l.release()}, nil
}

type heldConn struct {
	net.Conn
	l       *heldLink
	release <-chan struct{}
}

func (c *heldConn) Read(p []byte) (int, error) {
	select {
	case <-c.release:
	case <-time.After(5 * time.Second):
		c.l.waited.Store(true)
	}
	return c.Conn.Read(p)
}

// A phone that synced before sends its day's changes on a cold connection
// before it reads a byte from the server: no wait for the server's HTTP/2
// settings, and the handshake travels with the push. The first sync, which
// does not yet know the server's version, says Hello first, then pushes
// with Exchange.
func TestDayEndSyncTakesOneExchange(t *testing.T) {
	tr := newTrace()
	s := tr.serve(t)
	cty := newCounty(t)
	link := &heldLink{release: func() <-chan struct{} { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.pushed }}
	phone := s.enrol(t, cty.village1, WithDialOptions(grpc.WithContextDialer(link.dial)))
	other := s.enrol(t, cty.village1)
	mustSave(t, phone, cty.records1[0])
	mustSync(t, phone)
	if got := tr.get(); !slices.Equal(got, []string{"Hello", "Exchange", "Pull"}) {
		t.Errorf("first sync called %v, want Hello, then Exchange and Pull", got)
	}
	for _, r := range cty.records1[1:5] {
		mustSave(t, phone, r)
	}
	mustSave(t, other, cty.records1[5])
	mustSync(t, other)
	tr.arm()
	link.held.Store(true)
	mustSync(t, phone)
	if link.waited.Load() {
		t.Error("the phone read from the server before its push arrived: it waited for the server")
	}
	if tr.packedExchanges.Load() == 0 {
		t.Error("the day-end exchange packed no record")
	}
	if got := tr.get(); !slices.Equal(got, []string{"Exchange+Hello", "Pull"}) {
		t.Errorf("day-end sync called %v, want Exchange+Hello and Pull", got)
	}
	checkHas(t, "phone", phone, cty.records1[:6])
	checkHas(t, "other", other, cty.records1[:1])
	tr.packedPulls.Store(0)
	mustSync(t, other)
	checkHas(t, "other", other, cty.records1[:6])
	if n := tr.packedPulls.Load(); n != 1 {
		t.Errorf("other's pull asked for packed records %d times, want 1", n)
	}
}

// A phone whose clock runs ahead of the server's (within the skew the
// server allows) has the changes stamped after the server's present
// refused from the folded push, re-stamps them from the answer and sends
// them again in the same attempt: stored stamps are never in the server's
// future, as with a separate Hello.
func TestFoldedPushRestampsAClockAhead(t *testing.T) {
	tr := newTrace()
	s := tr.serve(t)
	cty := newCounty(t)
	phone := s.enrol(t, cty.village1)
	mustSync(t, phone)
	phone.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	for _, r := range cty.records1[:3] {
		mustSave(t, phone, r)
	}
	tr.arm()
	var pl progressLog
	if err := phone.Sync(t.Context(), pl.option()); err != nil {
		t.Fatal(err)
	}
	if got := tr.get(); !slices.Equal(got, []string{"Exchange+Hello", "Exchange", "Pull"}) || pl.maxAttempt() != 1 {
		t.Errorf("sync with the clock 2 min ahead called %v in %d attempts, want Exchange+Hello, Exchange, Pull in one", got, pl.maxAttempt())
	}
	end := time.Now().UnixMilli()
	var n int
	err := s.srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		page, err := tx.ReadLog(t.Context(), 0, 100)
		for _, e := range page {
			if e.Change.Origin == phone.Replica() {
				n++
				if e.Change.Stamp.WallMS > end {
					t.Errorf("change stored with a stamp %d ms in the server's future", e.Change.Stamp.WallMS-end)
				}
			}
		}
		return err
	})
	if err != nil || n < 3 {
		t.Fatalf("server holds %d of the phone's changes, %v", n, err)
	}
	checkHas(t, "phone", phone, cty.records1[:3])
}

// A server that said it speaks version 2 but answers Exchange UNIMPLEMENTED
// (an older build put back) stored nothing: the phone says Hello, pushes
// with Push, unpacked, asks for its pull again as version 1 (an older
// server does not have zstd, and would fail the pull asked with it), and
// says Hello first from then on.
func TestFoldedPushToAnOlderServer(t *testing.T) {
	tr := newTrace()
	s := tr.serve(t)
	cty := newCounty(t)
	phone, other := s.enrol(t, cty.village1), s.enrol(t, cty.village1)
	mustSync(t, phone)
	tr.old.Store(true)
	mustSave(t, phone, cty.records1[0])
	tr.arm()
	mustSync(t, phone)
	if got := tr.get(); !slices.Equal(got, []string{"Exchange+Hello", "Hello", "Push", "Pull", "Pull"}) {
		t.Errorf("sync with an older server called %v, want Exchange+Hello (unknown to it), Hello, Push, and Pull again without zstd", got)
	}
	mustSave(t, phone, cty.records1[1])
	tr.arm()
	mustSync(t, phone)
	if got := tr.get(); !slices.Equal(got, []string{"Hello", "Push", "Pull"}) {
		t.Errorf("next sync called %v, want Hello, Push, Pull", got)
	}
	mustSync(t, other)
	checkHas(t, "other", other, cty.records1[:2])
	if st, err := phone.Status(t.Context()); err != nil || st.Pending != 0 {
		t.Errorf("phone status = %+v, %v; want nothing pending", st, err)
	}
}

// A server whose handshake names another record schema (another build)
// gets Exchange without packed records, and pulls unpacked: a field one end
// does not know would be read back wrong by the other.
func TestPackingNeedsTheSameSchema(t *testing.T) {
	tr := newTrace()
	tr.otherSchema.Store(true)
	s := tr.serve(t)
	cty := newCounty(t)
	phone, other := s.enrol(t, cty.village1), s.enrol(t, cty.village1)
	mustSync(t, phone)
	mustSync(t, other)
	for _, r := range cty.records1[:3] {
		mustSave(t, phone, r)
	}
	tr.arm()
	tr.packedPulls.Store(0)
	mustSync(t, phone)
	mustSync(t, other)
	if got := tr.get(); len(got) < 2 || got[0] != "Exchange+Hello" {
		t.Errorf("sync called %v, want the handshake folded into an Exchange", got)
	}
	if n := tr.packedExchanges.Load(); n != 0 {
		t.Errorf("%d Exchange calls carried packed records for a server of another schema", n)
	}
	if n := tr.packedPulls.Load(); n == 0 {
		t.Error("no pull asked as version 2")
	}
	checkHas(t, "other", other, cty.records1[:3])
}
