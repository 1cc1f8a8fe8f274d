package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

const idHashKey = "bench id hash key"

// township is a real fieldsync server (bbolt store in a temporary directory)
// serving one grpc.Server on two loopback listeners: plainAddr, unshaped, for
// setting up state, and shapedAddr, whose accepted connections are wrapped
// with downlink2G, for the measured syncs.
type township struct {
	srv                   *server.Server
	plainAddr, shapedAddr string
	// down is the link the shaped listener's connections send over.
	down linkModel
	// clientTLS is what its devices connect with: nil for plaintext.
	clientTLS *tls.Config
}

func startTownship(tb testing.TB, down linkModel) *township { return startTownshipTLS(tb, down, false) }

// startTownshipTLS starts a township that serves with TLS when secure (a
// certificate of a test CA its devices trust).
func startTownshipTLS(tb testing.TB, down linkModel, secure bool) *township {
	tb.Helper()
	srv, err := server.New(server.Config{DataDir: tb.TempDir(), IDHashKey: []byte(idHashKey)})
	if err != nil {
		tb.Fatal(err)
	}
	opts := srv.GRPCOptions()
	var clientTLS *tls.Config
	if secure {
		var serverTLS *tls.Config
		serverTLS, clientTLS = newPKI(tb)
		opts = append(opts, grpc.Creds(credentials.NewTLS(serverTLS)))
	}
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		tb.Fatal(err)
	}
	shaped, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		plain.Close()
		srv.Close()
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, l := range []net.Listener{plain, down.listener(shaped)} {
		wg.Go(func() { _ = gs.Serve(l) })
	}
	tb.Cleanup(func() {
		gs.GracefulStop()
		wg.Wait()
		if err := srv.Close(); err != nil {
			tb.Error(err)
		}
	})
	return &township{srv: srv, plainAddr: plain.Addr().String(), shapedAddr: shaped.Addr().String(), down: down, clientTLS: clientTLS}
}

// logEnd is the server's log end.
func (t *township) logEnd(tb testing.TB) syncengine.Position {
	tb.Helper()
	end, err := t.srv.Store().LogEnd(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return end
}

// has reports whether the server holds a live record id.
func (t *township) has(ctx context.Context, id syncengine.RecordID) (bool, error) {
	var ok bool
	err := t.srv.Store().View(ctx, func(tx syncengine.ReadTx) error {
		r, err := tx.Record(ctx, id)
		ok = r.Exists()
		return err
	})
	return ok, err
}

// link is a device's network. Devices enrol with the township's plain
// (loopback) address; link dials it over the plain listener, or over the
// shaped one with its side of the connection wrapped in up, and
// counts the bytes of every connection above the emulation (HTTP/2 frames as
// grpc writes and reads them; no TCP/IP headers, no emulation headers).
type link struct {
	town   *township
	up     linkModel
	shaped atomic.Bool

	mu    sync.Mutex
	conns []*countConn
	// dials and dialed are when each connection's dial began and when the
	// dialer returned it (after the emulated connection set-up delay).
	dials, dialed []time.Time
}

func newLink(t *township, up linkModel) *link { return &link{town: t, up: up} }

func (l *link) dial(ctx context.Context, addr string) (net.Conn, error) {
	if addr != l.town.plainAddr {
		return nil, fmt.Errorf("bench link: unknown address %q", addr)
	}
	start := time.Now()
	var d net.Dialer
	shaped := l.shaped.Load()
	target := l.town.plainAddr
	if shaped {
		target = l.town.shapedAddr
	}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	if shaped {
		// The TCP handshake's round trip, before the client may send.
		select {
		case <-time.After(dialDelay(l.up, l.town.down)):
		case <-ctx.Done():
			c.Close()
			return nil, ctx.Err()
		}
		c = l.up.conn(c)
	}
	cc := &countConn{Conn: c, closed: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, cc)
	l.dials = append(l.dials, start)
	l.dialed = append(l.dialed, time.Now())
	l.mu.Unlock()
	return cc, nil
}

// dialOption is the link as a grpc dial option.
func (l *link) dialOption() grpc.DialOption { return grpc.WithContextDialer(l.dial) }

// reset forgets the connections counted so far.
func (l *link) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns, l.dials, l.dialed = nil, nil, nil
}

// firstDial returns when the first connection since reset was dialed and
// when the dialer returned it.
func (l *link) firstDial() (start, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.dials) == 0 {
		return time.Time{}, time.Time{}
	}
	return l.dials[0], l.dialed[0]
}

// traffic waits (up to 10 s) until every connection dialed since reset has
// been closed, and returns their count and byte totals.
func (l *link) traffic(tb testing.TB) (conns int, up, down int64) {
	tb.Helper()
	l.mu.Lock()
	cs := append([]*countConn(nil), l.conns...)
	l.mu.Unlock()
	timeout := time.After(10 * time.Second)
	for _, c := range cs {
		select {
		case <-c.closed:
		case <-timeout:
			tb.Fatal("bench link: a connection was not closed within 10 s of the sync")
		}
		up += c.written.Load()
		down += c.read.Load()
	}
	return len(cs), up, down
}

// countConn counts the bytes written to and read from a connection.
type countConn struct {
	net.Conn
	written, read atomic.Int64
	closeOnce     sync.Once
	closed        chan struct{}
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *countConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}

// rpcLog is a client-side grpc stats handler that records, per call, its
// method, begin and end, and message sizes (uncompressed, compressed, and
// compressed with the 5-byte gRPC message prefix).
type rpcLog struct {
	mu    sync.Mutex
	calls []*call
}

type call struct {
	method     string
	begin, end time.Time
	out, in    payload
}

type payload struct {
	msgs, length, compressed, wire int
}

type callKey struct{}

func (l *rpcLog) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c := &call{method: info.FullMethodName}
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	return context.WithValue(ctx, callKey{}, c)
}

func (l *rpcLog) HandleRPC(ctx context.Context, s stats.RPCStats) {
	c, ok := ctx.Value(callKey{}).(*call)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s := s.(type) {
	case *stats.Begin:
		c.begin = s.BeginTime
	case *stats.End:
		c.end = s.EndTime
	case *stats.OutPayload:
		c.out.add(s.Length, s.CompressedLength, s.WireLength)
	case *stats.InPayload:
		c.in.add(s.Length, s.CompressedLength, s.WireLength)
	}
}

func (p *payload) add(length, compressed, wire int) {
	p.msgs++
	p.length += length
	p.compressed += compressed
	p.wire += wire
}

func (l *rpcLog) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (l *rpcLog) HandleConn(context.Context, stats.ConnStats)                       {}

func (l *rpcLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = nil
}

// all returns a copy of every call, in call order.
func (l *rpcLog) all() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]call, len(l.calls))
	for i, c := range l.calls {
		out[i] = *c
	}
	return out
}

// byMethod returns a copy of the calls of method (the short name, e.g.
// "Push"), in call order.
func (l *rpcLog) byMethod(method string) []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []call
	for _, c := range l.calls {
		if c.method == "/fieldsync.v1.SyncService/"+method {
			out = append(out, *c)
		}
	}
	return out
}

// device is an SDK client whose replica lives in a temporary directory and
// whose connections go over its link.
type device struct {
	path   string
	link   *link
	rpcs   *rpcLog
	extra  []grpc.DialOption
	key    []byte // the replica's secret key; nil: kept in clear
	tls    *tls.Config
	client *fieldsync.Client
}

func newDevice(tb testing.TB, t *township, up linkModel, extra ...grpc.DialOption) *device {
	tb.Helper()
	d := &device{path: filepath.Join(tb.TempDir(), "replica.db"), link: newLink(t, up), rpcs: &rpcLog{}, extra: extra, tls: t.clientTLS}
	d.open(tb)
	tb.Cleanup(func() { d.close(tb) })
	return d
}

// open opens the device's replica (the app starting).
func (d *device) open(tb testing.TB) {
	tb.Helper()
	opts := append([]grpc.DialOption{d.link.dialOption(), grpc.WithStatsHandler(d.rpcs)}, d.extra...)
	copts := []fieldsync.Option{fieldsync.WithDialOptions(opts...)}
	if d.key != nil {
		copts = append(copts, fieldsync.WithSecretKey(d.key))
	}
	if d.tls != nil {
		copts = append(copts, fieldsync.WithTLS(d.tls))
	}
	c, err := fieldsync.Open(tb.Context(), d.path, copts...)
	if err != nil {
		tb.Fatal(err)
	}
	d.client = c
}

// close closes the replica (the app stopping).
func (d *device) close(tb testing.TB) {
	tb.Helper()
	if d.client == nil {
		return
	}
	if err := d.client.Close(); err != nil {
		tb.Error(err)
	}
	d.client = nil
}

// enroll enrols the device for area over the plain link.
func (d *device) enroll(tb testing.TB, t *township, area string) {
	tb.Helper()
	code, _, err := t.srv.IssueEnrolmentCode([]string{area}, "bench phone", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	d.link.shaped.Store(false)
	if err := d.client.Enroll(tb.Context(), t.plainAddr, code); err != nil {
		tb.Fatal(err)
	}
}

// saveAll saves recs on the device.
//
// It saves through the SDK's save path, as a phone does: visits and audits
// raise their problems and risk flags; a generated problem is moved through
// the ledger (raised, rectified) but not verified, which is the township's
// job. It returns how many changes the saves wrote.
func (d *device) saveAll(tb testing.TB, recs []*fieldsyncv1.Record) int {
	tb.Helper()
	n := 0
	save := func(r *fieldsyncv1.Record) {
		res, err := d.client.SaveRecord(tb.Context(), r)
		if err != nil {
			tb.Fatalf("Save %s: %v", idOf(tb, r), err)
		}
		n += res.Problems + res.Flags
		if res.Changed {
			n++
		}
	}
	for _, r := range recs {
		p := r.GetProblem()
		if p == nil {
			save(r)
			continue
		}
		for _, step := range phoneSteps(p) {
			save(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: step}})
		}
	}
	return n
}

// phoneSteps are the ledger steps of a generated problem a phone saves: up to
// RECTIFIED.
func phoneSteps(p *fieldsyncv1.Problem) []*fieldsyncv1.Problem {
	steps := countygen.LedgerSteps(p)
	return steps[:min(len(steps), 2)]
}

// asSaved returns recs as saveAll leaves them on the device: a generated
// problem at its last phone step.
func asSaved(recs []*fieldsyncv1.Record) []*fieldsyncv1.Record {
	out := make([]*fieldsyncv1.Record, len(recs))
	for i, r := range recs {
		out[i] = r
		if p := r.GetProblem(); p != nil {
			steps := phoneSteps(p)
			out[i] = &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: steps[len(steps)-1]}}
		}
	}
	return out
}

// syncPlain runs a Sync over the plain link and checks that nothing is left
// pending or refused.
func (d *device) syncPlain(tb testing.TB) {
	tb.Helper()
	d.link.shaped.Store(false)
	if err := d.client.Sync(tb.Context()); err != nil {
		tb.Fatalf("Sync: %v", err)
	}
	d.checkClean(tb)
}

// checkClean fails unless the server has acknowledged every change of the
// device and refused none.
func (d *device) checkClean(tb testing.TB) {
	tb.Helper()
	st, err := d.client.Status(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	if st.Pending != 0 || len(st.Rejected) != 0 || st.LastError != "" {
		tb.Fatalf("device status after sync: %d pending, %d rejected (%+v), last error %q", st.Pending, len(st.Rejected), st.Rejected, st.LastError)
	}
}

// asOf is the moment the generated county is generated as of: countygen's
// default, unless this machine's clock is earlier (the server refuses
// records dated in its future).
func asOf() time.Time {
	if t := countygen.DefaultAsOf(); t.Before(time.Now()) {
		return t
	}
	return time.Now().Add(-time.Hour)
}

// kindsOf returns the records of g's village v of the given kinds, in
// generation order.
func kindsOf(tb testing.TB, g *countygen.Generator, v *countygen.Village, kinds ...syncengine.Kind) []*fieldsyncv1.Record {
	tb.Helper()
	var out []*fieldsyncv1.Record
	err := g.EachInVillage(v, func(r *fieldsyncv1.Record) error {
		for _, k := range kinds {
			if wire.KindOf(r) == k {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Record kinds: the body's field number in the Record envelope.
var (
	kindHousehold      = wire.KindOf(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{}}})
	kindPerson         = wire.KindOf(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: &fieldsyncv1.Person{}}})
	kindClinic         = wire.KindOf(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Clinic{Clinic: &fieldsyncv1.Clinic{}}})
	kindWorker         = wire.KindOf(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Worker{Worker: &fieldsyncv1.Worker{}}})
	kindHouseholdVisit = wire.KindOf(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: &fieldsyncv1.HouseholdVisit{}}})
	kindFollowUp       = wire.KindOf(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: &fieldsyncv1.FollowUp{}}})
)

// fresh returns n copies of pool's records from index from on (wrapping
// around), each with a new UUIDv7 id: new records of the same shape and size
// as the generated ones.
func fresh(tb testing.TB, pool []*fieldsyncv1.Record, from, n int) []*fieldsyncv1.Record {
	tb.Helper()
	out := make([]*fieldsyncv1.Record, n)
	for i := range out {
		r := proto.Clone(pool[(from+i)%len(pool)]).(*fieldsyncv1.Record)
		id, err := uuid.NewV7()
		if err != nil {
			tb.Fatal(err)
		}
		body := wire.Body(r).ProtoReflect()
		fd := body.Descriptor().Fields().ByNumber(1) // every record kind's id
		if fd == nil || fd.Kind() != protoreflect.StringKind {
			tb.Fatalf("record kind %d has no string id field 1", wire.KindOf(r))
		}
		body.Set(fd, protoreflect.ValueOfString(id.String()))
		out[i] = r
	}
	return out
}

func idOf(tb testing.TB, r *fieldsyncv1.Record) syncengine.RecordID {
	tb.Helper()
	id, _, err := wire.Identity(r)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// checkServerHas fails unless the server holds every record of recs.
func checkServerHas(tb testing.TB, t *township, recs []*fieldsyncv1.Record) {
	tb.Helper()
	missing := 0
	for _, r := range recs {
		ok, err := t.has(tb.Context(), idOf(tb, r))
		if err != nil {
			tb.Fatal(err)
		}
		if !ok {
			missing++
		}
	}
	if missing > 0 {
		tb.Fatalf("server lacks %d of the %d records sent", missing, len(recs))
	}
}

// checkDeviceHas fails unless the device shows every record of recs exactly.
func checkDeviceHas(tb testing.TB, d *device, recs []*fieldsyncv1.Record) {
	tb.Helper()
	bad := 0
	var first error
	for _, r := range recs {
		got, err := d.client.Get(tb.Context(), idOf(tb, r).String())
		if err == nil && !proto.Equal(got, r) {
			err = errors.New("differs from the record saved")
		}
		if err != nil {
			bad++
			if first == nil {
				first = fmt.Errorf("record %v: %w", idOf(tb, r), err)
			}
		}
	}
	if bad > 0 {
		tb.Fatalf("device lacks %d of %d records (first: %v)", bad, len(recs), first)
	}
}

// profileEnv names a directory: when set, a benchmark writes a CPU profile of
// its first measured section alone (setup excluded, unlike go test
// -cpuprofile) to <dir>/<benchmark name>.cpu. Do not combine with
// -cpuprofile.
const profileEnv = "FIELDSYNC_BENCH_CPUPROFILE"

// profileSection starts the CPU profile of a measured section if profileEnv
// is set and first is true; the returned function stops it.
func profileSection(tb testing.TB, first bool) (stop func()) {
	tb.Helper()
	dir := os.Getenv(profileEnv)
	if dir == "" || !first {
		return func() {}
	}
	name := filepath.Join(dir, strings.ReplaceAll(tb.Name(), "/", "_")+".cpu")
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		tb.Fatalf("%s: %v (is go test -cpuprofile on too?)", profileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			tb.Error(err)
		}
		tb.Logf("CPU profile of the measured section: %s", name)
	}
}

// records returns how many live records the device holds, of every kind.
func (d *device) records(tb testing.TB) int {
	tb.Helper()
	n := 0
	for k := range fieldsyncv1.RecordKind_name {
		if k == 0 {
			continue
		}
		recs, err := d.client.List(tb.Context(), fieldsyncv1.RecordKind(k))
		if err != nil {
			tb.Fatalf("List(%v): %v", fieldsyncv1.RecordKind(k), err)
		}
		n += len(recs)
	}
	return n
}
