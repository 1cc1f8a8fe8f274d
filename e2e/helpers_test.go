package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

var (
	seedFlag  = flag.Uint64("e2e.seed", 0, "seed of the randomised tests; 0 draws a new one, which the tests log")
	scaleFlag = flag.Int("e2e.scale", 1, "multiply the cuts, kills and rounds of the randomised tests by `K`")
)

// testSeed returns the seed of a randomised test and logs how to replay it.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())%1_000_000_000 + 1
	}
	t.Logf("seed %d; replay with: go test ./e2e -run '^%s$' -e2e.seed=%d", seed, t.Name(), seed)
	return seed
}

// scale returns -e2e.scale, at least 1.
func scale() int { return max(1, *scaleFlag) }

// testIDHashKey is the county's ID-hash key of the in-process servers.
var testIDHashKey = []byte("e2e county id-hash key, 32 bytes")

// syncTimeout bounds one Sync or RPC of a test: not an assertion, a guard
// that turns a hang into an error the test reports.
const syncTimeout = 2 * time.Minute

// county is a generated county of one township with two villages, and the
// records of each village that a test uses.
type county struct {
	township string // 9-digit prefix
	villages [2]string
	records  [2][]*fieldsyncv1.Record
}

// newCounty generates a county with households per village (seeded) and keeps
// the records of its villages for which keep is true.
func newCounty(t *testing.T, seed uint64, households int, keep func(*fieldsyncv1.Record) bool) county {
	t.Helper()
	g, err := countygen.New(countygen.Config{
		Townships: 1, VillagesPerTownship: 2, HouseholdsPerVillage: households, Seed: seed,
		AsOf: time.Date(2026, 6, 1, 0, 0, 0, 0, survey.ChinaTime),
	})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	var c county
	c.township = vs[0].Code[:9]
	for i, v := range vs[:2] {
		c.villages[i] = v.Code
		err := g.EachInVillage(v, func(r *fieldsyncv1.Record) error {
			if _, area, err := wire.Identity(r); err != nil || area != v.Code {
				return fmt.Errorf("record outside its village %s: %v", v.Code, err)
			}
			if keep(r) {
				c.records[i] = append(c.records[i], r)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// householdsAndVisits keeps the records village doctors make most.
func householdsAndVisits(r *fieldsyncv1.Record) bool {
	return r.GetHousehold() != nil || r.GetHouseholdVisit() != nil
}

func recordID(t testing.TB, r *fieldsyncv1.Record) syncengine.RecordID {
	t.Helper()
	id, _, err := wire.Identity(r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// device is a phone: a client SDK replica in its own SQLite file.
type device struct {
	name  string
	path  string
	areas []string
	*fieldsync.Client
	closed bool
}

// openDevice opens a new replica for a device of areas, with opts; it is
// closed when the test ends unless closed before.
func openDevice(t *testing.T, name string, areas []string, opts ...fieldsync.Option) *device {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".db")
	c, err := fieldsync.Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{name: name, path: path, areas: areas, Client: c}
	t.Cleanup(func() { d.close(t) })
	return d
}

// enroll enrols d at addr with code and checks the areas it was given.
func (d *device) enroll(t *testing.T, addr, code string) {
	t.Helper()
	if err := d.Enroll(t.Context(), addr, code); err != nil {
		t.Fatalf("%s: Enroll: %v", d.name, err)
	}
	if got, err := d.Areas(t.Context()); err != nil || !slices.Equal(got, d.areas) {
		t.Fatalf("%s: Areas() = %v, %v; want %v", d.name, got, err, d.areas)
	}
}

// enrollWith enrols d at addr with a code the in-process server srv issues
// for d's areas.
func (d *device) enrollWith(t *testing.T, srv *server.Server, addr string) {
	t.Helper()
	code, _, err := srv.IssueEnrolmentCode(d.areas, d.name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d.enroll(t, addr, code)
}

func (d *device) close(t testing.TB) {
	if d.closed {
		return
	}
	d.closed = true
	if err := d.Close(); err != nil {
		t.Errorf("%s: Close: %v", d.name, err)
	}
}

// reopen opens d's replica again after a close, with opts.
func (d *device) reopen(t testing.TB, opts ...fieldsync.Option) {
	t.Helper()
	c, err := fieldsync.Open(t.Context(), d.path, opts...)
	if err != nil {
		t.Fatalf("%s: reopen: %v", d.name, err)
	}
	d.Client, d.closed = c, false
}

// quickRetry has Sync make at most attempts attempts, with waits of
// milliseconds, and gRPC reconnect just as quickly: the tests cut links and
// kill servers far more often than a 2G link fails, and would otherwise spend
// their time in the SDK's backoff for phones.
func quickRetry(attempts int) []fieldsync.Option {
	return []fieldsync.Option{
		fieldsync.WithRetry(fieldsync.RetryPolicy{MaxAttempts: attempts, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond}),
		fieldsync.WithDialOptions(grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: 5 * time.Second,
		})),
	}
}

// sync runs one Sync with a hang guard.
func (d *device) sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	return d.Sync(ctx)
}

// syncUntilClean syncs d until a Sync succeeds with nothing pending, trying at
// most attempts times.
func (d *device) syncUntilClean(t *testing.T, attempts int) {
	t.Helper()
	var err error
	for range attempts {
		if err = d.sync(t.Context()); err != nil {
			continue
		}
		st, serr := d.Status(t.Context())
		if serr != nil {
			t.Fatalf("%s: Status: %v", d.name, serr)
		}
		if st.Pending == 0 {
			return
		}
		err = fmt.Errorf("sync succeeded with %d changes pending", st.Pending)
	}
	t.Fatalf("%s: not clean after %d syncs: %v", d.name, attempts, err)
}

// syncUntilOK syncs d until a Sync succeeds, trying at most attempts times.
func (d *device) syncUntilOK(t *testing.T, attempts int) {
	t.Helper()
	var err error
	for range attempts {
		if err = d.sync(t.Context()); err == nil {
			return
		}
	}
	t.Fatalf("%s: no sync succeeded in %d: %v", d.name, attempts, err)
}

// checkClean fails unless d has nothing pending and no rejected changes.
func (d *device) checkClean(t *testing.T) {
	t.Helper()
	st, err := d.Status(t.Context())
	if err != nil {
		t.Fatalf("%s: Status: %v", d.name, err)
	}
	if st.Pending != 0 || len(st.Rejected) != 0 || st.LastError != "" {
		t.Errorf("%s: Status = %+v, want nothing pending, rejected or failed", d.name, st)
	}
}

// stateReader is what both stores offer for reading a whole replica.
type stateReader interface {
	View(ctx context.Context, fn func(syncengine.ReadTx) error) error
	Snapshot(ctx context.Context, prefix string, token []byte, limit int) (syncengine.SnapshotPage, error)
}

// replicaState is everything a replica holds: its log and its records.
type replicaState struct {
	name    string
	replica syncengine.ReplicaID
	areas   []string // nil: every area (the server)
	log     []syncengine.Entry
	records map[syncengine.RecordID]syncengine.Record
}

// readState reads st's whole log and every record it holds. A record listed
// twice by the store's snapshot is an error.
func readState(t testing.TB, name string, replica syncengine.ReplicaID, areas []string, st stateReader) replicaState {
	t.Helper()
	ctx := context.Background()
	s := replicaState{name: name, replica: replica, areas: areas, records: make(map[syncengine.RecordID]syncengine.Record)}
	err := st.View(ctx, func(tx syncengine.ReadTx) error {
		for after := syncengine.Position(0); ; {
			page, err := tx.ReadLog(ctx, after, 500)
			if err != nil {
				return err
			}
			s.log = append(s.log, page...)
			if len(page) < 500 {
				return nil
			}
			after = page[len(page)-1].Pos
		}
	})
	if err != nil {
		t.Fatalf("%s: read log: %v", name, err)
	}
	for tok := []byte(nil); ; {
		page, err := st.Snapshot(ctx, "", tok, 0)
		if err != nil {
			t.Fatalf("%s: snapshot: %v", name, err)
		}
		for _, r := range page.Records {
			if _, dup := s.records[r.ID()]; dup {
				t.Errorf("%s holds record %v twice", name, r.ID())
			}
			s.records[r.ID()] = r
		}
		if tok = page.Next; tok == nil {
			break
		}
	}
	return s
}

// readDevice closes d and reads its replica file with sqlitestore, after
// checking the file's integrity.
func readDevice(t *testing.T, d *device) replicaState {
	t.Helper()
	id := d.Replica()
	d.close(t)
	st, err := sqlitestore.Open(context.Background(), d.path)
	if err != nil {
		t.Fatalf("%s: reopen replica: %v", d.name, err)
	}
	defer st.Close()
	if err := st.Check(context.Background()); err != nil {
		t.Errorf("%s: %v", d.name, err)
	}
	return readState(t, d.name, id, d.areas, st)
}

func inAreas(area string, prefixes []string) bool {
	if prefixes == nil {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(area, p) {
			return true
		}
	}
	return false
}

// checkLogUnique fails if s's log holds a change (by dot or by change id) more
// than once, and returns its changes by dot.
func checkLogUnique(t *testing.T, s replicaState) map[syncengine.Dot]syncengine.Entry {
	t.Helper()
	byDot := make(map[syncengine.Dot]syncengine.Entry, len(s.log))
	ids := make(map[syncengine.ChangeID]syncengine.Dot, len(s.log))
	for _, e := range s.log {
		if prev, dup := byDot[e.Change.Dot]; dup {
			t.Errorf("%s's log holds change %v twice, at %d and %d", s.name, e.Change.Dot, prev.Pos, e.Pos)
		}
		byDot[e.Change.Dot] = e
		if d, dup := ids[e.Change.ID]; dup {
			t.Errorf("%s's log holds change id %v twice (dots %v and %v)", s.name, e.Change.ID, d, e.Change.Dot)
		}
		ids[e.Change.ID] = e.Change.Dot
	}
	return byDot
}

// checkConverged checks the end state of a run against the server's:
//   - neither the server's log nor any device's holds a change twice;
//   - every change a device made is in the server's log, once, as the device
//     holds it;
//   - every device holds exactly the server's records in its areas, each in
//     the same state (Record.Digest: values, conflicts and versions), and
//     nothing of other areas, in its records (as it or the server sees them)
//     or its log.
func checkConverged(t *testing.T, srv replicaState, devs ...replicaState) {
	t.Helper()
	onServer := checkLogUnique(t, srv)
	for _, d := range devs {
		own := 0
		checkLogUnique(t, d)
		for _, e := range d.log {
			if !inAreas(e.Change.Area, d.areas) {
				t.Errorf("%s's log holds change %v of area %s, outside %v", d.name, e.Change.Dot, e.Change.Area, d.areas)
			}
			if e.Change.Origin != d.replica {
				continue
			}
			own++
			s, ok := onServer[e.Change.Dot]
			if !ok {
				t.Errorf("%s's change %v (record %v) is not on the server", d.name, e.Change.Dot, e.Change.RecordID)
				continue
			}
			if !sameChange(s.Change, e.Change) {
				t.Errorf("%s's change %v differs on the server:\n device %+v\n server %+v", d.name, e.Change.Dot, e.Change, s.Change)
			}
		}
		for id, r := range d.records {
			if !inAreas(r.Area(), d.areas) {
				t.Errorf("%s holds record %v of area %s, outside %v", d.name, id, r.Area(), d.areas)
			}
			if s, ok := srv.records[id]; !ok {
				t.Errorf("%s holds record %v, which the server lacks", d.name, id)
			} else if !inAreas(s.Area(), d.areas) {
				t.Errorf("%s holds record %v, which the server has in area %s, outside %v", d.name, id, s.Area(), d.areas)
			}
		}
		want := 0
		for id, s := range srv.records {
			if !inAreas(s.Area(), d.areas) {
				continue
			}
			want++
			r, ok := d.records[id]
			switch {
			case !ok:
				t.Errorf("%s lacks record %v of area %s", d.name, id, s.Area())
			case r.Digest() != s.Digest():
				t.Errorf("%s's record %v differs from the server's:\n device %v\n server %v", d.name, id, r, s)
			}
		}
		t.Logf("%s: %d own changes checked against the server, %d records of its areas compared, log of %d", d.name, own, want, len(d.log))
	}
}

func sameChange(a, b syncengine.Change) bool {
	x, err1 := a.MarshalBinary()
	y, err2 := b.MarshalBinary()
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// checkSaved fails unless the server shows every record of saved, alive and
// equal to it as typed protobuf.
func checkSaved(t *testing.T, srv replicaState, saved map[syncengine.RecordID]*fieldsyncv1.Record) {
	t.Helper()
	for id, want := range saved {
		r, ok := srv.records[id]
		if !ok || !r.Exists() {
			t.Errorf("server lacks saved record %v", id)
			continue
		}
		got, err := wire.FromState(r)
		if err != nil {
			t.Errorf("server record %v: %v", id, err)
			continue
		}
		if !proto.Equal(got, want) {
			t.Errorf("server record %v = %v, want %v", id, got, want)
		}
	}
}

// notFound fails unless d shows none of recs.
func notFound(t *testing.T, d *device, recs []*fieldsyncv1.Record) {
	t.Helper()
	for _, r := range recs {
		id := recordID(t, r).String()
		if got, err := d.Get(t.Context(), id); !errors.Is(err, fieldsync.ErrNotFound) {
			t.Errorf("%s: Get(%s) = %v, %v; want ErrNotFound", d.name, id, got, err)
		}
	}
}
