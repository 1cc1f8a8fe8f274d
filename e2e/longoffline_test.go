package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
)

// TestLongOfflineAfterCompaction is a phone that comes back after 60 days,
// after the township compacted its log: it keeps all its work, pushes it,
// then starts again from a snapshot.
//
// Phones A and B of one village sync on day 0. A goes offline and records
// visits and edits two households, one of which B also edits meanwhile.
// For 60 days (by the server's clock) B edits and records every day and
// syncs, and the server compacts its log every day with a retention of 30
// days, as fieldsyncd does every hour. Then A syncs. A's work is on the
// server exactly once, A's pull was a snapshot because its cursor had
// expired, B never needed one, A and B hold the server's records in the same
// states, and the household both edited keeps both values in a conflict.
func TestLongOfflineAfterCompaction(t *testing.T) {
	var clock dayClock
	srv, addr := servertest.Start(t, server.Config{IDHashKey: testIDHashKey, Now: clock.now})
	ctx := t.Context()
	cty := newCounty(t, 60, 12, householdsAndVisits)
	village := cty.villages[0]
	households, visits := splitHouseholds(cty.records[0])
	if len(households) < 3 || len(visits) < 6 {
		t.Fatalf("village too small: %d households, %d visits", len(households), len(visits))
	}
	var causesA, causesB snapshotCauses
	a := openDevice(t, "phoneA", []string{village}, append(quickRetry(3), causesA.option())...)
	b := openDevice(t, "phoneB", []string{village}, append(quickRetry(3), causesB.option())...)
	a.enrollWith(t, srv, addr)
	b.enrollWith(t, srv, addr)
	const retention = 30 * 24 * time.Hour

	// Day 0: A records the households and a third of the visits; both phones
	// sync until each has pulled everything.
	third := len(visits) / 3
	for _, r := range slices.Concat(households, visits[:third]) {
		save(t, a, r)
	}
	for _, d := range []*device{a, b, a} {
		d.syncUntilClean(t, 3)
	}
	dayZero := causesB.take()
	if !slices.Equal(dayZero, []fieldsyncv1.SnapshotCause{fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_NO_CURSOR}) {
		t.Errorf("B's first pulls began snapshots %v, want one for its missing cursor", dayZero)
	}
	causesA.take()
	compactEveryDay(t, srv, retention)

	// A, offline: a third of the visits, and two households edited. The
	// shared one B edits too.
	shared, onlyA, onlyB := households[0], households[1], households[2]
	offline := visits[third : 2*third]
	offlineChanges := 0
	for _, r := range offline {
		offlineChanges += save(t, a, r)
	}
	sharedByA := editNotes(t, a, shared, "A: 户主外出务工, 已电话随访")
	onlyAByA := editNotes(t, a, onlyA, "A: 新生儿已登记")
	stA, err := a.Status(ctx)
	if err != nil || stA.Pending != offlineChanges+2 {
		t.Fatalf("A's Status offline = %+v, %v; want %d pending", stA, err, offlineChanges+2)
	}
	pulledA := pulledThrough(t, srv, a)

	// 60 days: B edits a household every day, records the last third of the
	// visits, edits the shared household on day 5, and syncs; the server
	// compacts every day.
	rest := visits[2*third:]
	var sharedByB *fieldsyncv1.Record
	for day := 1; day <= 60; day++ {
		clock.advance(24 * time.Hour)
		editNotes(t, b, onlyB, fmt.Sprintf("B: 第%d天复查", day))
		if day%4 == 0 && len(rest) > 0 {
			save(t, b, rest[0])
			rest = rest[1:]
		}
		if day == 5 {
			sharedByB = editNotes(t, b, shared, "B: 户主已返乡, 入户核实")
		}
		b.syncUntilClean(t, 3)
		compactEveryDay(t, srv, retention)
	}
	for _, r := range rest {
		save(t, b, r)
	}
	b.syncUntilClean(t, 3)
	if got := causesB.take(); len(got) != 0 {
		t.Errorf("B, syncing every day, had to start again from snapshots %v", got)
	}
	compacted, err := srv.Store().Compacted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if compacted <= pulledA {
		t.Fatalf("after 60 days the log is compacted through %d, not past A's pull position %d", compacted, pulledA)
	}
	t.Logf("A pulled through %d on day 0; on day 60 the log is compacted through %d, its end is %d", pulledA, compacted, logEnd(t, srv))

	// A comes back: it pushes, and pulls a snapshot for its expired cursor.
	snapshot := false
	err = a.Sync(ctx, fieldsync.OnProgress(func(p fieldsync.Progress) { snapshot = snapshot || p.Snapshot }))
	if err != nil {
		t.Fatalf("A's sync after 60 days: %v", err)
	}
	if !snapshot {
		t.Error("A's sync after 60 days did not report a snapshot")
	}
	if got := causesA.take(); !slices.Equal(got, []fieldsyncv1.SnapshotCause{fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_CURSOR_EXPIRED}) {
		t.Errorf("A's pull began snapshots %v, want one for its expired cursor", got)
	}
	a.checkClean(t)
	for _, d := range []*device{b, a, b} {
		d.syncUntilClean(t, 3)
	}
	if got := causesA.take(); len(got) != 0 {
		t.Errorf("A's later syncs began snapshots %v, want none", got)
	}
	if got := causesB.take(); len(got) != 0 {
		t.Errorf("B's later syncs began snapshots %v, want none", got)
	}

	// Both values of the shared household's notes are kept, the same way on
	// every replica.
	checkNotesConflict(t, a, shared, sharedByA, sharedByB)
	checkNotesConflict(t, b, shared, sharedByA, sharedByB)

	// The stores.
	if err := srv.Store().Check(ctx); err != nil {
		t.Error(err)
	}
	srvState := readCompactedServer(t, srv)
	aState, bState := readDevice(t, a), readDevice(t, b)
	inLog := checkOwnChangesOnce(t, srv, srvState, aState, bState)
	for _, p := range stA.PendingChanges {
		if id := changeID(t, p.ChangeID); !inLog[0][id] {
			t.Errorf("A's offline change %s (%s %s) is not in the server's log", p.ChangeID, p.Kind, p.RecordID)
		}
	}
	checkSameRecords(t, srvState, aState, bState)
	saved := make(map[syncengine.RecordID]*fieldsyncv1.Record)
	for _, r := range slices.Concat(visits, []*fieldsyncv1.Record{onlyAByA}) {
		saved[recordID(t, r)] = r
	}
	checkSaved(t, srvState, saved)
	if r := srvState.records[recordID(t, shared)]; len(r.Conflicts()) != 1 {
		t.Errorf("the server's shared household has conflicts %v, want one on its notes", r.Conflicts())
	}
}

// dayClock is the server's clock, which the test moves forward by days.
type dayClock struct{ offset atomic.Int64 }

func (c *dayClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *dayClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// snapshotCauses records, from a device's side of the wire, the cause of
// every snapshot its pulls begin.
type snapshotCauses struct {
	mu     sync.Mutex
	causes []fieldsyncv1.SnapshotCause
}

// option is a client option that records the causes.
func (s *snapshotCauses) option() fieldsync.Option {
	return fieldsync.WithDialOptions(grpc.WithChainStreamInterceptor(
		func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return &causeStream{ClientStream: cs, s: s}, nil
		}))
}

// take returns the causes recorded since the last call.
func (s *snapshotCauses) take() []fieldsyncv1.SnapshotCause {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.causes
	s.causes = nil
	return out
}

type causeStream struct {
	grpc.ClientStream
	s *snapshotCauses
}

func (c *causeStream) RecvMsg(m any) error {
	err := c.ClientStream.RecvMsg(m)
	if resp, ok := m.(*fieldsyncv1.PullResponse); ok && err == nil {
		if sm := resp.GetSnapshot(); sm.GetPhase() == fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN {
			c.s.mu.Lock()
			c.s.causes = append(c.s.causes, sm.GetCause())
			c.s.mu.Unlock()
		}
	}
	return err
}

// compactEveryDay compacts the server's log as its hourly job does.
func compactEveryDay(t *testing.T, srv *server.Server, retention time.Duration) {
	t.Helper()
	if _, err := srv.CompactLog(t.Context(), retention); err != nil {
		t.Fatalf("CompactLog: %v", err)
	}
}

// editNotes saves rec, as d holds it, with its notes set to notes, and
// returns the record saved.
func editNotes(t *testing.T, d *device, rec *fieldsyncv1.Record, notes string) *fieldsyncv1.Record {
	t.Helper()
	got, err := d.Get(t.Context(), recordID(t, rec).String())
	if err != nil {
		t.Fatalf("%s: Get: %v", d.name, err)
	}
	got = proto.Clone(got).(*fieldsyncv1.Record)
	got.GetHousehold().Notes = notes
	save(t, d, got)
	return got
}

func changeID(t *testing.T, s string) syncengine.ChangeID {
	t.Helper()
	u, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return syncengine.ChangeID(u)
}

func pulledThrough(t *testing.T, srv *server.Server, d *device) syncengine.Position {
	t.Helper()
	dev, err := srv.Store().Registry().Device(t.Context(), d.Replica())
	if err != nil {
		t.Fatal(err)
	}
	return dev.Activity.PulledThrough
}

func logEnd(t *testing.T, srv *server.Server) syncengine.Position {
	t.Helper()
	end, err := srv.Store().LogEnd(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// checkNotesConflict fails unless d shows household rec with an open
// conflict on its notes holding the values of byA and byB.
func checkNotesConflict(t *testing.T, d *device, rec, byA, byB *fieldsyncv1.Record) {
	t.Helper()
	cs, err := d.Conflicts(t.Context(), recordID(t, rec).String())
	if err != nil {
		t.Fatalf("%s: Conflicts: %v", d.name, err)
	}
	notes := int32((&fieldsyncv1.Household{}).ProtoReflect().Descriptor().Fields().ByName("notes").Number())
	if len(cs) != 1 || cs[0].Field != notes {
		t.Fatalf("%s: conflicts on the shared household %+v, want one on its notes (field %d)", d.name, cs, notes)
	}
	var got []string
	for _, v := range cs[0].Values {
		var h fieldsyncv1.Household
		if err := proto.Unmarshal(v, &h); err != nil {
			t.Fatalf("%s: conflict value: %v", d.name, err)
		}
		got = append(got, h.GetNotes())
	}
	slices.Sort(got)
	want := []string{byA.GetHousehold().GetNotes(), byB.GetHousehold().GetNotes()}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: the shared household's notes conflict holds %q, want %q", d.name, got, want)
	}
}

// readCompactedServer reads the server's log from its compaction point and
// every record it holds.
func readCompactedServer(t *testing.T, srv *server.Server) replicaState {
	t.Helper()
	ctx := context.Background()
	st := srv.Store()
	cp, err := st.Compacted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := replicaState{name: "server", replica: srv.Replica(), records: make(map[syncengine.RecordID]syncengine.Record)}
	err = st.View(ctx, func(tx syncengine.ReadTx) error {
		for after := cp; ; {
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
		t.Fatalf("server: read log: %v", err)
	}
	for tok := []byte(nil); ; {
		page, err := st.Snapshot(ctx, "", tok, 0)
		if err != nil {
			t.Fatalf("server: snapshot: %v", err)
		}
		for _, r := range page.Records {
			s.records[r.ID()] = r
		}
		if tok = page.Next; tok == nil {
			return s
		}
	}
}

// checkOwnChangesOnce checks that every change each device made is on the
// server once: in what is left of its log, as the device now holds it, or,
// when compacted away, recognised by its dot; and that neither log holds a
// change twice. It returns, per device, the ids of its changes in the
// server's log.
func checkOwnChangesOnce(t *testing.T, srv *server.Server, srvState replicaState, devs ...replicaState) []map[syncengine.ChangeID]bool {
	t.Helper()
	ctx := context.Background()
	onServer := checkLogUnique(t, srvState)
	var out []map[syncengine.ChangeID]bool
	for _, d := range devs {
		checkLogUnique(t, d)
		inLog := make(map[syncengine.ChangeID]bool)
		compacted := 0
		err := srv.Store().View(ctx, func(tx syncengine.ReadTx) error {
			for _, e := range d.log {
				if e.Change.Origin != d.replica {
					continue
				}
				if s, ok := onServer[e.Change.Dot]; ok {
					inLog[e.Change.ID] = true
					if !sameChange(s.Change, e.Change) {
						t.Errorf("%s's change %v differs on the server:\n device %+v\n server %+v", d.name, e.Change.Dot, e.Change, s.Change)
					}
					continue
				}
				compacted++
				if seen, err := tx.Seen(ctx, e.Change.Dot); err != nil {
					return err
				} else if !seen {
					t.Errorf("%s's change %v (record %v) is not on the server", d.name, e.Change.Dot, e.Change.RecordID)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d own changes in the server's log, %d compacted away", d.name, len(inLog), compacted)
		out = append(out, inLog)
	}
	return out
}

// checkSameRecords fails unless every device holds exactly the server's
// records of its areas, each in the same state (values, conflicts and
// versions).
func checkSameRecords(t *testing.T, srv replicaState, devs ...replicaState) {
	t.Helper()
	for _, d := range devs {
		for id := range d.records {
			if _, ok := srv.records[id]; !ok {
				t.Errorf("%s holds record %v, which the server lacks", d.name, id)
			}
		}
		n := 0
		for id, s := range srv.records {
			if !inAreas(s.Area(), d.areas) {
				continue
			}
			n++
			r, ok := d.records[id]
			switch {
			case !ok:
				t.Errorf("%s lacks record %v", d.name, id)
			case r.Digest() != s.Digest():
				t.Errorf("%s's record %v differs from the server's:\n device %v\n server %v", d.name, id, r, s)
			}
		}
		t.Logf("%s: %d records compared with the server's", d.name, n)
	}
}

// A phone back after the log's retention takes a fresh snapshot, which says
// nothing of the records that left its village meanwhile: it drops every
// record the snapshot did not bring (a household moved to another village
// while it was away), keeps the records it created and synced before, and
// keeps and delivers what it saved while away.
func TestLongOfflinePhoneDropsWhatMovedAway(t *testing.T) {
	var clock dayClock
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, IDHashKey: testIDHashKey, Now: clock.now})
	cty := newCounty(t, 61, 6, householdsAndVisits)
	villageA, villageB := cty.villages[0], cty.villages[1]
	households, visits := splitHouseholds(cty.records[0])
	if len(households) < 2 || len(visits) < 2 {
		t.Fatalf("village too small: %d households, %d visits", len(households), len(visits))
	}
	a := openDevice(t, "phoneA", []string{villageA}, quickRetry(3)...)
	b := openDevice(t, "phoneB", []string{villageB}, quickRetry(3)...)
	a.enrollWith(t, srv, addr)
	b.enrollWith(t, srv, addr)
	for _, r := range slices.Concat(households, visits[:1]) {
		save(t, a, r)
	}
	mustSync(t, a, b)

	// A goes away. The household leaves for village B; A records a visit.
	moved := households[0]
	moveHousehold(t, dir, addr, recordID(t, moved), villageB)
	save(t, a, visits[1])
	mustSync(t, b)
	for range 60 {
		clock.advance(24 * time.Hour)
		editNotes(t, b, inVillage(moved, villageB), "B: 已迁入")
		mustSync(t, b)
		compactEveryDay(t, srv, 30*24*time.Hour)
	}
	if compacted, err := srv.Store().Compacted(t.Context()); err != nil || compacted <= pulledThrough(t, srv, a) {
		t.Fatalf("log compacted through %d (%v), not past A's pull position %d", compacted, err, pulledThrough(t, srv, a))
	}

	dropped := 0
	err := a.Sync(t.Context(), fieldsync.OnProgress(func(p fieldsync.Progress) { dropped = p.Dropped }))
	if err != nil {
		t.Fatalf("A's sync after 60 days: %v", err)
	}
	if dropped != 1 {
		t.Errorf("A's snapshot dropped %d records, want the household that moved away", dropped)
	}
	notFound(t, a, []*fieldsyncv1.Record{moved})
	checkHas(t, a, slices.Concat(households[1:], visits[:2])...)
	mustSync(t, a, b)
	a.checkClean(t)
	srvState := readCompactedServer(t, srv)
	checkSaved(t, srvState, map[syncengine.RecordID]*fieldsyncv1.Record{recordID(t, visits[1]): visits[1]})
	checkSameRecords(t, srvState, readDevice(t, a), readDevice(t, b))
}

// splitHouseholds returns the households of recs, and the other records.
func splitHouseholds(recs []*fieldsyncv1.Record) (households, others []*fieldsyncv1.Record) {
	for _, r := range recs {
		if r.GetHousehold() != nil {
			households = append(households, r)
		} else {
			others = append(others, r)
		}
	}
	return households, others
}
