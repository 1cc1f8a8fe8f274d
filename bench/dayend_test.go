package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the compressor the SDK sends with
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// visitsPerDay is a village doctor's busy day (perf_rel_anchors.md §8).
const visitsPerDay = 40

// othersPerDay is how many records another device (township staff) adds to
// the village during the day, for the day-end pull.
const othersPerDay = 3

// village is the generated village the day-end benchmarks work in.
type village struct {
	code string
	// registry is the village's clinic, workers, households and people,
	// synced before the measured day.
	registry []*fieldsyncv1.Record
	// visits and followUps are the generated ones, templates for the day's
	// new records (fresh).
	visits, followUps []*fieldsyncv1.Record
}

// newVillage generates a county of two villages of 75 households (about 290
// people) and returns the first village.
func newVillage(tb testing.TB) village {
	tb.Helper()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 2, Seed: 3, AsOf: asOf()})
	if err != nil {
		tb.Fatal(err)
	}
	v := g.County.Villages()[0]
	out := village{
		code:      v.Code,
		registry:  kindsOf(tb, g, v, kindClinic, kindWorker, kindHousehold, kindPerson),
		visits:    kindsOf(tb, g, v, kindHouseholdVisit),
		followUps: kindsOf(tb, g, v, kindFollowUp),
	}
	if len(out.visits) < visitsPerDay || len(out.followUps) < othersPerDay {
		tb.Fatalf("village too small: %d visits, %d follow-ups", len(out.visits), len(out.followUps))
	}
	return out
}

// dayEnd is the state the day-end benchmarks share: a township server whose
// shaped listener sends over down, the village doctor's phone (enrolled, its
// village registry synced; its shaped connections send over up) and a
// township staff member's phone in the same village.
type dayEnd struct {
	town  *township
	vil   village
	phone *device
	staff *device
	// changes the phone wrote for the day: its visits and the problems and
	// risk flags they raised.
	changes int
}

func newDayEnd(tb testing.TB, up, down linkModel, phoneOpts ...grpc.DialOption) *dayEnd {
	tb.Helper()
	return newDayEndTLS(tb, up, down, false, phoneOpts...)
}

// newDayEndTLS is newDayEnd with a township that serves with TLS when
// secure.
func newDayEndTLS(tb testing.TB, up, down linkModel, secure bool, phoneOpts ...grpc.DialOption) *dayEnd {
	tb.Helper()
	d := &dayEnd{town: startTownshipTLS(tb, down, secure), vil: newVillage(tb)}
	d.phone = newDevice(tb, d.town, up, phoneOpts...)
	d.phone.enroll(tb, d.town, d.vil.code)
	d.phone.saveAll(tb, d.vil.registry)
	d.phone.syncPlain(tb)
	d.staff = newDevice(tb, d.town, local)
	d.staff.enroll(tb, d.town, d.vil.code)
	d.staff.syncPlain(tb)
	return d
}

// day prepares day i outside the timer: the staff phone pushes othersPerDay
// new follow-ups, and the doctor's phone, restarted (so its next connection
// is cold whatever the SDK caches), records visitsPerDay new visits. It
// returns both.
func (d *dayEnd) day(tb testing.TB, i int) (visits, others []*fieldsyncv1.Record) {
	tb.Helper()
	others = fresh(tb, d.vil.followUps, i*othersPerDay, othersPerDay)
	d.staff.saveAll(tb, others)
	d.staff.syncPlain(tb)
	d.phone.close(tb)
	d.phone.open(tb)
	visits = fresh(tb, d.vil.visits, i*visitsPerDay, visitsPerDay)
	d.changes = d.phone.saveAll(tb, visits)
	d.phone.link.reset()
	d.phone.rpcs.reset()
	return visits, others
}

// timed runs f with the benchmark timer running when tb is a *testing.B
// (whose timer is otherwise stopped).
func timed(tb testing.TB, f func()) {
	if b, ok := tb.(*testing.B); ok {
		b.StartTimer()
		defer b.StopTimer()
	}
	f()
}

// sample is what one measured day-end session cost.
type sample struct {
	// wall is the whole session; dial ends when the dialer returned the
	// connection, connect when the handshake ended (a Hello, or with the
	// handshake folded into the push, the dial); push runs from there to
	// the end of the last Push, pull from there to the end of Pull.
	wall, dial, connect, push, pull time.Duration
	conns                           int
	// up and down are the bytes the phone's connection carried each way.
	up, down int64
	// pushMsg and pushGz are the PushRequests' bytes, uncompressed and
	// compressed as sent; pushRPCs is the number of Push calls.
	pushMsg, pushGz, pushRPCs int
	// framingUp and framingDown are the bytes of the connection that were not
	// gRPC messages (with their 5-byte prefix): HTTP/2 preface, settings,
	// headers, window updates, pings, GOAWAY.
	framingUp, framingDown int64
}

// session fills the parts of s that the phone's link and RPC log know after
// a session that started at start.
func (d *dayEnd) session(tb testing.TB, s *sample, start time.Time) {
	tb.Helper()
	s.conns, s.up, s.down = d.phone.link.traffic(tb)
	_, dialed := d.phone.link.firstDial()
	s.dial = dialed.Sub(start)
	var out, in int64
	for _, c := range d.phone.rpcs.all() {
		out, in = out+int64(c.out.wire), in+int64(c.in.wire)
		if c.method == "/fieldsync.v1.SyncService/Push" || c.method == "/fieldsync.v1.SyncService/Exchange" {
			s.pushMsg += c.out.length
			s.pushGz += c.out.compressed
			s.pushRPCs++
		}
	}
	s.framingUp, s.framingDown = s.up-out, s.down-in
}

// syncDay is one measured day of BenchmarkDayEndSync2G: day i prepared, the
// phone's Sync over the shaped link timed, and its outcome checked.
func (d *dayEnd) syncDay(tb testing.TB, i int) sample {
	tb.Helper()
	visits, others := d.day(tb, i)
	d.phone.link.shaped.Store(true)
	var s sample
	var err error
	_, bench := tb.(*testing.B)
	stopProfile := profileSection(tb, bench && i == 0)
	start := time.Now()
	timed(tb, func() {
		err = d.phone.client.Sync(tb.Context())
		s.wall = time.Since(start)
	})
	stopProfile()
	if err != nil {
		tb.Fatalf("day-end Sync: %v", err)
	}
	d.session(tb, &s, start)
	if s.conns != 1 {
		tb.Fatalf("the day-end Sync made %d connections, want 1 (cold)", s.conns)
	}
	d.phone.checkClean(tb)
	checkServerHas(tb, d.town, visits)
	checkDeviceHas(tb, d.phone, others)

	// The phone synced before: its handshake travels with its first push.
	hello, pushes, pulls := d.phone.rpcs.byMethod("Hello"), d.phone.rpcs.byMethod("Exchange"), d.phone.rpcs.byMethod("Pull")
	if len(hello) != 0 || len(pushes) == 0 || len(d.phone.rpcs.byMethod("Push")) != 0 || len(pulls) != 1 {
		tb.Fatalf("day-end Sync made %d Hello, %d Exchange, %d Push, %d Pull calls; want 0 (folded into the exchange), ≥1, 0, 1",
			len(hello), len(pushes), len(d.phone.rpcs.byMethod("Push")), len(pulls))
	}
	s.connect = s.dial
	s.push = pushes[len(pushes)-1].end.Sub(start.Add(s.dial))
	s.pull = pulls[0].end.Sub(pushes[len(pushes)-1].end)
	return s
}

// unaryDay is one measured day of BenchmarkDayEndUnary2G: day i prepared,
// its visits pushed one per RPC over the shaped link (timed), and checked.
func (d *dayEnd) unaryDay(tb testing.TB, i int, token string) sample {
	tb.Helper()
	visits, _ := d.day(tb, i)
	d.phone.close(tb) // the unary sender below reads the replica file directly
	st, err := sqlitestore.Open(tb.Context(), d.phone.path)
	if err != nil {
		tb.Fatal(err)
	}
	d.phone.link.shaped.Store(true)
	var s sample
	var helloEnd time.Time
	var n int
	start := time.Now()
	timed(tb, func() {
		helloEnd, n, err = unaryPush(tb.Context(), st, token, d.phone)
		s.wall = time.Since(start)
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatalf("unary push: %v", err)
	}
	if n != d.changes {
		tb.Fatalf("unary push sent %d changes, want %d (%d visits and what they raised)", n, d.changes, visitsPerDay)
	}
	d.session(tb, &s, start)
	if s.conns != 1 {
		tb.Fatalf("the unary push made %d connections, want 1", s.conns)
	}
	checkServerHas(tb, d.town, visits)
	d.phone.open(tb)
	d.phone.checkClean(tb)
	s.connect = helloEnd.Sub(start)
	s.push = s.wall - s.connect
	return s
}

// totals sums the samples of a day-end benchmark.
type totals struct {
	n int
	sample
}

func (t *totals) add(s sample) {
	t.n++
	t.wall += s.wall
	t.dial += s.dial
	t.connect += s.connect
	t.push += s.push
	t.pull += s.pull
	t.conns += s.conns
	t.up += s.up
	t.down += s.down
	t.pushMsg += s.pushMsg
	t.pushGz += s.pushGz
	t.pushRPCs += s.pushRPCs
	t.framingUp += s.framingUp
	t.framingDown += s.framingDown
}

// floor is the least time the link takes to carry a session's bytes: the
// TCP handshake's round trip, then the bytes up and down at the link's
// rates (the two directions at once, so the longer of the two), and one
// more round trip for the last byte up to be answered. Any protocol moving
// these bytes over this link from a cold connection takes at least that.
func floor(up, down linkModel, upBytes, downBytes int64) time.Duration {
	rtt := dialDelay(up, down)
	return 2*rtt + max(up.serialize(int(upBytes)), down.serialize(int(downBytes)))
}

// dayEndTargets are issue 15's targets for a day-end session.
type dayEndTargets struct {
	name     string
	wall     time.Duration // the session
	perVisit float64       // bytes up per visit, framing included
	ofFloor  float64       // the session over the floor
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// report reports the samples' means as metrics and, when want names
// targets, logs each figure beside its target and the floor of the link
// (benchmark logs are printed whatever -v).
func (t *totals) report(b *testing.B, up, down linkModel, want dayEndTargets) {
	n := float64(t.n)
	visits := n * visitsPerDay
	fl := floor(up, down, t.up/int64(t.n), t.down/int64(t.n))
	wall := t.wall / time.Duration(t.n)
	b.ReportMetric(fl.Seconds(), "s-floor/sync")
	if want.name != "" {
		perVisit := float64(t.up) / visits
		ratio := float64(wall) / float64(fl)
		b.Logf("%s: %.2f s a sync (target ≤ %.1f s %s); %.0f B up a visit, framing included (target ≤ %.0f B %s); "+
			"the link's floor for the bytes sent %.2f s (two round trips of %.1f s, the longer of %d B up at %d bit/s and %d B down at %d bit/s): %.2f× it (target ≤ %.1f× %s)",
			want.name, wall.Seconds(), want.wall.Seconds(), mark(wall <= want.wall), perVisit, want.perVisit, mark(perVisit <= want.perVisit),
			fl.Seconds(), dialDelay(up, down).Seconds(), t.up/int64(t.n), up.bps, t.down/int64(t.n), down.bps, ratio, want.ofFloor, mark(ratio <= want.ofFloor))
		b.Logf("%s, by phase: dial %.2f s (the TCP handshake), to the end of the handshake %.2f s, to the last push answered %.2f s more, pull done %.2f s after it; %.1f push RPCs",
			want.name, t.dial.Seconds()/n, t.connect.Seconds()/n, t.push.Seconds()/n, t.pull.Seconds()/n, float64(t.pushRPCs)/n)
	}
	b.ReportMetric(t.wall.Seconds()/n, "s/sync")
	b.ReportMetric(t.dial.Seconds()/n, "s-dial/sync")
	b.ReportMetric(t.connect.Seconds()/n, "s-connect+hello/sync")
	b.ReportMetric(t.push.Seconds()/n, "s-push/sync")
	if t.pull > 0 {
		b.ReportMetric(t.pull.Seconds()/n, "s-pull/sync")
	}
	b.ReportMetric(float64(t.up)/visits, "wire-B-up/visit")
	b.ReportMetric(float64(t.up+t.down)/visits, "wire-B-total/visit")
	b.ReportMetric(float64(t.up)/n, "wire-B-up/sync")
	b.ReportMetric(float64(t.down)/n, "wire-B-down/sync")
	b.ReportMetric(float64(t.framingUp)/n, "framing-B-up/sync")
	b.ReportMetric(float64(t.framingDown)/n, "framing-B-down/sync")
	b.ReportMetric(float64(t.pushMsg)/visits, "push-msg-B/visit")
	b.ReportMetric(float64(t.pushGz)/visits, "push-msg-gz-B/visit")
	b.ReportMetric(float64(t.pushRPCs)/n, "push-RPCs/sync")
	b.ReportMetric(float64(t.conns)/n, "conns/sync")
}

// BenchmarkDayEndSync2G measures a village doctor's day-end Sync over the
// emulated 2G link from a cold connection: the day's 40 new visits pushed,
// then 3 new follow-ups by another device pulled.
func BenchmarkDayEndSync2G(b *testing.B) {
	d := newDayEnd(b, uplink2G, downlink2G)
	b.StopTimer()
	b.ResetTimer()
	var tot totals
	for i := range b.N {
		tot.add(d.syncDay(b, i))
	}
	tot.report(b, uplink2G, downlink2G, dayEndTargets{name: "day-end sync on 2G", wall: 5500 * time.Millisecond, perVisit: 150, ofFloor: 1.2})
}

// BenchmarkDayEndSync2GTLS is BenchmarkDayEndSync2G with the township
// serving TLS 1.3 (an ECDSA P-256 certificate of a test county CA, sent
// without its CA) and the phone verifying it.
func BenchmarkDayEndSync2GTLS(b *testing.B) {
	d := newDayEndTLS(b, uplink2G, downlink2G, true)
	b.StopTimer()
	b.ResetTimer()
	var tot totals
	for i := range b.N {
		tot.add(d.syncDay(b, i))
	}
	tot.report(b, uplink2G, downlink2G, dayEndTargets{name: "day-end sync on 2G with TLS", wall: 7 * time.Second, perVisit: 150, ofFloor: 1.2})
}

// BenchmarkDayEndUnary2G pushes the same day's 40 visits as 40 Push RPCs of
// one change each, sequentially, over the same emulated link and a cold
// connection: the anti-pattern of one request per record, for the ratio to
// BenchmarkDayEndSync2G. Like the SDK it says Hello first (to learn the
// position the server has acknowledged), reads each change from the phone's
// replica (syncengine.NextBatch with a limit of 1) and records each answer
// with syncengine.Acknowledge; it does not pull.
func BenchmarkDayEndUnary2G(b *testing.B) {
	tap := &enrolTap{}
	d := newDayEnd(b, uplink2G, downlink2G, grpc.WithChainUnaryInterceptor(tap.intercept))
	token := tap.get(b)
	b.StopTimer()
	b.ResetTimer()
	var tot totals
	for i := range b.N {
		tot.add(d.unaryDay(b, i, token))
	}
	tot.report(b, uplink2G, downlink2G, dayEndTargets{})
}

// TestDayEndSessions runs both day-end sessions over a fast emulated link
// (5 ms one way, no bandwidth limit), so that go test checks what the
// benchmarks measure: one cold connection, the visits stored on the server,
// the other device's records on the phone, and byte counts that hold every
// gRPC message sent and received.
func TestDayEndSessions(t *testing.T) {
	fast := linkModel{latency: 5 * time.Millisecond, mtu: 1400}
	tap := &enrolTap{}
	d := newDayEnd(t, fast, fast, grpc.WithChainUnaryInterceptor(tap.intercept))
	token := tap.get(t)
	for i, s := range []sample{d.syncDay(t, 0), d.unaryDay(t, 1, token)} {
		if s.framingUp <= 0 || s.framingDown <= 0 || s.pushGz <= 0 || s.pushGz > s.pushMsg {
			t.Errorf("session %d: implausible counts %+v", i, s)
		}
		t.Logf("session %d: %d B up, %d B down, %d Push calls, PushRequests %d B (%d B compressed)", i, s.up, s.down, s.pushRPCs, s.pushMsg, s.pushGz)
	}
}

// unaryPush is the one-change-per-RPC sender: a new connection over the
// phone's link with the SDK's dial options (plaintext, gzip, bearer token),
// Hello, then one Push per change of the phone's own unacknowledged changes,
// each acknowledged in the replica before the next is read. It returns when
// Hello ended and the number of changes pushed.
func unaryPush(ctx context.Context, st *sqlitestore.Store, token string, phone *device) (helloEnd time.Time, pushed int, err error) {
	conn, err := grpc.NewClient(phone.link.town.plainAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.UseCompressor("gzip")),
		grpc.WithPerRPCCredentials(bearerToken(token)),
		phone.link.dialOption(),
		grpc.WithStatsHandler(phone.rpcs),
	)
	if err != nil {
		return time.Time{}, 0, err
	}
	defer conn.Close()
	rpc := fieldsyncv1.NewSyncServiceClient(conn)
	self := st.Replica()
	hello, err := rpc.Hello(ctx, &fieldsyncv1.HelloRequest{
		ReplicaId: self[:], CapabilityVersion: wire.CapabilityVersion, ClientTime: timestamppb.Now(),
	})
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("hello: %w", err)
	}
	helloEnd = time.Now()
	srv := syncengine.ReplicaID(hello.GetServerReplicaId())
	own := func(ch *syncengine.Change) bool { return ch.Origin == self }
	after := syncengine.Position(hello.GetAcknowledgedPosition())
	for {
		b, err := syncengine.NextBatch(ctx, st, self, after, syncengine.SendOptions{Limit: 1, Exclude: srv, Filter: own})
		if err != nil {
			return helloEnd, pushed, err
		}
		if len(b.Changes) == 0 {
			if !b.More {
				return helloEnd, pushed, nil
			}
			after = b.Through
			continue
		}
		// As the SDK's pushRequest: the change, its position, and the range
		// of positions the batch accounts for.
		e := b.Changes[0]
		pc, err := wire.ChangeToProto(e.Change)
		if err != nil {
			return helloEnd, pushed, err
		}
		resp, err := rpc.Push(ctx, &fieldsyncv1.PushRequest{
			FirstPosition: uint64(b.After) + 1, LastPosition: uint64(b.Through),
			Changes: []*fieldsyncv1.Change{pc}, Positions: []uint64{uint64(e.Pos)},
		})
		if err != nil {
			return helloEnd, pushed, fmt.Errorf("push: %w", err)
		}
		if len(resp.GetResults()) != 1 {
			return helloEnd, pushed, fmt.Errorf("push: %d results for 1 change", len(resp.GetResults()))
		}
		out, ok := wire.OutcomeFromProto(resp.GetResults()[0].GetOutcome())
		if !ok || out != syncengine.OutcomeApplied {
			return helloEnd, pushed, fmt.Errorf("push: change %v: outcome %v: %s", e.Change.ID, resp.GetResults()[0].GetOutcome(), resp.GetResults()[0].GetMessage())
		}
		rc := syncengine.Receipt{Sender: srv, Through: syncengine.Position(resp.GetAcknowledgedPosition()), Results: []syncengine.ChangeResult{
			{Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: out},
		}}
		if rc.Through < e.Pos {
			return helloEnd, pushed, fmt.Errorf("push: server acknowledged %d, before the change's position %d", rc.Through, e.Pos)
		}
		if err := syncengine.Acknowledge(ctx, st, srv, rc); err != nil {
			return helloEnd, pushed, err
		}
		pushed++
		after = rc.Through
	}
}

// bearerToken is the device token as per-RPC credentials, as the SDK sends it.
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

// enrolTap keeps the device token from the phone's Enroll answer, for the
// unary sender, which talks to the server without the SDK.
type enrolTap struct {
	mu    sync.Mutex
	token string
}

func (t *enrolTap) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if r, ok := reply.(*fieldsyncv1.EnrollResponse); ok && err == nil {
		t.mu.Lock()
		t.token = r.GetDeviceToken()
		t.mu.Unlock()
	}
	return err
}

func (t *enrolTap) get(tb testing.TB) string {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == "" {
		tb.Fatal("no device token seen in the Enroll answer")
	}
	return t.token
}
