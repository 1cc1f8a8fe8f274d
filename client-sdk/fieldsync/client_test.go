package fieldsync

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save/savetest"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// testServer is a real server on 127.0.0.1:0 with its bbolt store in a
// temporary directory.
type testServer struct {
	srv  *server.Server
	addr string
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	srv, addr := servertest.Start(t, server.Config{IDHashKey: []byte("test id hash key")})
	return &testServer{srv: srv, addr: addr}
}

func (s *testServer) logEnd(t *testing.T) syncengine.Position {
	t.Helper()
	end, err := s.srv.Store().LogEnd(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// device opens a new replica and enrols it for area.
func (s *testServer) device(t *testing.T, area string) *Client {
	t.Helper()
	c, err := Open(t.Context(), filepath.Join(t.TempDir(), "replica.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	code, _, err := s.srv.IssueEnrolmentCode([]string{area}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), s.addr, code); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Areas(t.Context()); err != nil || len(got) != 1 || got[0] != area {
		t.Fatalf("Areas() = %v, %v, want [%s]", got, err, area)
	}
	if key, err := c.IDHashKey(t.Context()); err != nil || string(key) != "test id hash key" {
		t.Fatalf("IDHashKey() = %q, %v", key, err)
	}
	return c
}

// county is a small generated county: its first two villages' households and
// household visits.
type county struct {
	village1, village2 string
	records1           []*fieldsyncv1.Record // village 1
	records2           []*fieldsyncv1.Record // village 2
}

func newCounty(t *testing.T) county {
	t.Helper()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 2, HouseholdsPerVillage: 8, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	out := county{village1: vs[0].Code, village2: vs[1].Code}
	err = g.Each(func(r *fieldsyncv1.Record) error {
		if r.GetHousehold() == nil && r.GetHouseholdVisit() == nil {
			return nil
		}
		_, area, err := wire.Identity(r)
		if err != nil {
			return err
		}
		switch area {
		case out.village1:
			out.records1 = append(out.records1, r)
		case out.village2:
			out.records2 = append(out.records2, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.records1) < 10 || len(out.records2) == 0 {
		t.Fatalf("county too small: %d and %d records", len(out.records1), len(out.records2))
	}
	return out
}

func recordID(t *testing.T, r *fieldsyncv1.Record) string {
	t.Helper()
	id, _, err := wire.Identity(r)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func mustSync(t *testing.T, c *Client) {
	t.Helper()
	if err := c.Sync(t.Context()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// mustSave saves r and returns how many changes the save wrote: the record's,
// and those of the problems and risk flags it raised.
func mustSave(t *testing.T, c *Client, r *fieldsyncv1.Record) int {
	t.Helper()
	saved, err := c.SaveRecord(t.Context(), r)
	if err != nil {
		t.Fatalf("Save %s: %v", recordID(t, r), err)
	}
	n := saved.Problems + saved.Flags
	if saved.Changed {
		n++
	}
	return n
}

// logEntries returns every entry of c's log.
func logEntries(t *testing.T, c *Client) []syncengine.Entry {
	t.Helper()
	var out []syncengine.Entry
	err := c.store.View(t.Context(), func(tx syncengine.ReadTx) error {
		for after := syncengine.Position(0); ; {
			page, err := tx.ReadLog(t.Context(), after, 100)
			if err != nil {
				return err
			}
			out = append(out, page...)
			if len(page) < 100 {
				return nil
			}
			after = page[len(page)-1].Pos
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkHas fails unless c shows every record of want exactly as saved.
func checkHas(t *testing.T, name string, c *Client, want []*fieldsyncv1.Record) {
	t.Helper()
	for _, w := range want {
		got, err := c.Get(t.Context(), recordID(t, w))
		if err != nil {
			t.Errorf("%s: Get(%s): %v", name, recordID(t, w), err)
			continue
		}
		if !proto.Equal(got, w) {
			t.Errorf("%s: Get(%s) = %v, want %v", name, recordID(t, w), got, w)
		}
	}
}

func TestSyncDeliversInScopeExactlyOnce(t *testing.T) {
	s := startServer(t)
	cty := newCounty(t)
	a, b, other := s.device(t, cty.village1), s.device(t, cty.village1), s.device(t, cty.village2)

	first, second := cty.records1[:len(cty.records1)/2], cty.records1[len(cty.records1)/2:]
	nFirst, nAll := 0, 0
	for _, r := range first {
		nFirst += mustSave(t, a, r)
	}
	if st, err := a.Status(t.Context()); err != nil || st.Pending != nFirst {
		t.Fatalf("Status before sync = %+v, %v; want %d pending", st, err, nFirst)
	}
	mustSync(t, a)
	st, err := a.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || len(st.Rejected) != 0 || st.LastError != "" || st.LastSuccess.IsZero() {
		t.Fatalf("Status after sync = %+v", st)
	}
	if got, want := s.logEnd(t), syncengine.Position(nFirst); got != want {
		t.Fatalf("server LogEnd = %d, want %d", got, want)
	}

	// B's first pull is a snapshot.
	mustSync(t, b)
	checkHas(t, "B", b, first)
	mustSync(t, other)
	for _, r := range cty.records1 {
		if _, err := other.Get(t.Context(), recordID(t, r)); !errors.Is(err, ErrNotFound) {
			t.Errorf("other village: Get(%s) = %v, want ErrNotFound", recordID(t, r), err)
		}
	}

	// Later changes come from the log.
	nAll = nFirst
	for _, r := range second {
		nAll += mustSave(t, a, r)
	}
	mustSync(t, a)
	end := s.logEnd(t)
	if want := syncengine.Position(nAll); end != want {
		t.Fatalf("server LogEnd = %d, want %d", end, want)
	}
	mustSync(t, b)
	checkHas(t, "B", b, cty.records1)
	bLog := logEntries(t, b)
	seen := make(map[syncengine.Dot]int)
	for _, e := range bLog {
		seen[e.Change.Dot]++
		if e.Change.Origin != a.Replica() {
			t.Errorf("B's log holds a change of %v, want only A's", e.Change.Origin)
		}
	}
	if len(seen) != nAll-nFirst {
		t.Errorf("B's log holds %d changes, want the %d made after its snapshot", len(seen), nAll-nFirst)
	}
	for d, n := range seen {
		if n != 1 {
			t.Errorf("B's log holds %v %d times", d, n)
		}
	}

	// Syncing again stores nothing twice anywhere.
	for range 2 {
		mustSync(t, a)
		mustSync(t, b)
		mustSync(t, other)
	}
	if got := s.logEnd(t); got != end {
		t.Errorf("server LogEnd after repeated syncs = %d, want %d", got, end)
	}
	if got := len(logEntries(t, b)); got != len(bLog) {
		t.Errorf("B's log after repeated syncs has %d entries, want %d", got, len(bLog))
	}
	if got := logEntries(t, other); len(got) != 0 {
		t.Errorf("other village's log has %d entries, want 0", len(got))
	}
	for _, r := range cty.records1 {
		if _, err := other.Get(t.Context(), recordID(t, r)); !errors.Is(err, ErrNotFound) {
			t.Errorf("other village: Get(%s) = %v, want ErrNotFound", recordID(t, r), err)
		}
	}
}

func TestRejectedChangeDoesNotBlock(t *testing.T) {
	s := startServer(t)
	cty := newCounty(t)
	a, b := s.device(t, cty.village1), s.device(t, cty.village1)
	var households []*fieldsyncv1.Record
	for _, r := range cty.records1 {
		if r.GetHousehold() != nil {
			households = append(households, r)
		}
	}
	good1, bad, good2 := households[0], proto.Clone(households[1]).(*fieldsyncv1.Record), households[2]
	bad.GetHousehold().HeadName = ""
	if len(survey.Validate(bad, time.Now())) == 0 {
		t.Fatal("household without a head name passes validation")
	}
	var verr *ValidationError
	if err := a.Save(t.Context(), bad); !errors.As(err, &verr) || len(verr.Fields) == 0 {
		t.Fatalf("Save(invalid) = %v, want a *ValidationError", err)
	}
	if err := a.Save(t.Context(), cty.records2[0]); !errors.Is(err, ErrOutOfScope) {
		t.Fatalf("Save(other village) = %v, want ErrOutOfScope", err)
	}

	// An invalid change the device stored anyway (an older app, a rule the
	// server has and the device lacks) is refused by the server.
	mustSave(t, a, good1)
	if err := a.write(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	mustSave(t, a, good2)
	mustSync(t, a)

	st, err := a.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 {
		t.Errorf("Pending = %d, want 0", st.Pending)
	}
	if len(st.Rejected) != 1 {
		t.Fatalf("Rejected = %+v, want one", st.Rejected)
	}
	rej := st.Rejected[0]
	if rej.RecordID != recordID(t, bad) || rej.Outcome != syncengine.OutcomeInvalid.String() || len(rej.Fields) == 0 || rej.Message == "" ||
		rej.Reason != "INVALID_RECORD" || !slices.ContainsFunc(rej.Fields, func(f survey.FieldError) bool { return f.Path == "head_name" }) {
		t.Errorf("rejection = %+v, want the invalid household, reason INVALID_RECORD, with its head_name field error", rej)
	}
	// One copy: the rejections table, written with the receipt; none in
	// the meta table, as earlier versions kept.
	if b, err := a.store.Meta(t.Context(), metaRejections); err != nil || b != nil {
		t.Errorf("meta %s = %q, %v; want none", metaRejections, b, err)
	}

	// Later changes go through.
	good3 := households[3]
	mustSave(t, a, good3)
	mustSync(t, a)
	mustSync(t, b)
	checkHas(t, "B", b, []*fieldsyncv1.Record{good1, good2, good3})
	if _, err := b.Get(t.Context(), recordID(t, bad)); !errors.Is(err, ErrNotFound) {
		t.Errorf("B: Get(rejected) = %v, want ErrNotFound", err)
	}
	if st, err := a.Status(t.Context()); err != nil || st.Pending != 0 || len(st.Rejected) != 1 {
		t.Errorf("Status = %+v, %v; want nothing pending, one rejected", st, err)
	}
}

func TestConcurrentEditSameConflictEverywhere(t *testing.T) {
	s := startServer(t)
	cty := newCounty(t)
	a, b := s.device(t, cty.village1), s.device(t, cty.village1)
	var h *fieldsyncv1.Record
	for _, r := range cty.records1 {
		if r.GetHousehold() != nil {
			h = r
			break
		}
	}
	mustSave(t, a, h)
	mustSync(t, a)
	mustSync(t, b)
	checkHas(t, "B", b, []*fieldsyncv1.Record{h})

	ha, hb := proto.Clone(h).(*fieldsyncv1.Record), proto.Clone(h).(*fieldsyncv1.Record)
	ha.GetHousehold().HeadName = "杨国华"
	hb.GetHousehold().HeadName = "杨国强"
	mustSave(t, a, ha)
	mustSave(t, b, hb)
	for range 2 {
		mustSync(t, a)
		mustSync(t, b)
	}

	id := recordID(t, h)
	ca, err := a.Conflicts(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Conflicts(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(ca) != 1 || ca[0].Field != 4 || len(ca[0].Values) != 2 {
		t.Fatalf("A's conflicts = %+v, want one on head_name with two values", ca)
	}
	if len(cb) != 1 || cb[0].Field != ca[0].Field || len(cb[0].Values) != len(ca[0].Values) {
		t.Fatalf("B's conflicts = %+v, want A's %+v", cb, ca)
	}
	for i := range ca[0].Values {
		if string(ca[0].Values[i]) != string(cb[0].Values[i]) {
			t.Errorf("conflict value %d: A %x, B %x", i, ca[0].Values[i], cb[0].Values[i])
		}
	}
	ra, err := a.record(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.record(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Digest() != rb.Digest() {
		t.Errorf("record states differ:\nA %v\nB %v", ra, rb)
	}
	ga, _ := a.Get(t.Context(), id)
	gb, _ := b.Get(t.Context(), id)
	if !proto.Equal(ga, gb) {
		t.Errorf("A shows %v, B shows %v", ga, gb)
	}
}

func TestSyncBeforeEnrolment(t *testing.T) {
	c, err := Open(t.Context(), filepath.Join(t.TempDir(), "replica.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Sync(t.Context()); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("Sync = %v, want ErrNotEnrolled", err)
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.LastError == "" || !st.LastSuccess.IsZero() {
		t.Errorf("Status = %+v, want the error recorded and no success", st)
	}
}

// A pull whose cursor write was lost (a crash after the batch committed)
// receives the batch again and stores nothing twice.
func TestPullAfterLostCursorStoresNothingTwice(t *testing.T) {
	s := startServer(t)
	cty := newCounty(t)
	a, b := s.device(t, cty.village1), s.device(t, cty.village1)
	mustSave(t, a, cty.records1[0])
	mustSync(t, a)
	mustSync(t, b)
	old, err := b.store.Meta(t.Context(), metaPullCursor)
	if err != nil || len(old) == 0 {
		t.Fatalf("pull cursor = %x, %v", old, err)
	}
	n := 0
	for _, r := range cty.records1[1:] {
		n += mustSave(t, a, r)
	}
	mustSync(t, a)
	mustSync(t, b)
	want := logEntries(t, b)
	if len(want) != n {
		t.Fatalf("B's log has %d entries, want %d", len(want), n)
	}
	if err := b.store.SetMeta(t.Context(), metaPullCursor, old); err != nil {
		t.Fatal(err)
	}
	mustSync(t, b)
	if got := logEntries(t, b); len(got) != len(want) {
		t.Errorf("B's log after a repeated pull has %d entries, want %d", len(got), len(want))
	}
	checkHas(t, "B", b, cty.records1)
}

// write stores rec as a local change without validating or deriving anything,
// as an older or buggy app would: the tests' way of making a change the
// server must refuse.
func (c *Client) write(ctx context.Context, rec *fieldsyncv1.Record) error {
	if _, err := savetest.Raw(ctx, c.store, c.clock, c.now().UnixMilli(), rec); err != nil {
		return err
	}
	return c.saveClock(ctx)
}
