package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// TestScope proves that a device's areas bound what reaches it and what it
// can change. With the server holding two villages, phones of village A never
// receive a village-B record, through the SDK or through a raw Pull. A device
// of village A that pushes a raw batch (the SDK's Save would refuse) mixing
// valid A changes with an edit of a B record, a new B record, a move of an A
// record into B and a change in another phone's name has each of those
// refused as out of scope, alone: the A changes of the same batch are
// applied, the refused ones leave no trace in the server's log or records
// (the other phone's next change still gets through), and a retry of the
// batch stores nothing.
func TestScope(t *testing.T) {
	srv, addr := servertest.Start(t, server.Config{IDHashKey: testIDHashKey})
	cty := newCounty(t, 11, 10, householdsAndVisits)
	villageA, villageB := cty.villages[0], cty.villages[1]

	// Keep back, for the raw push, a household and a visit of A and a
	// household of B.
	recsA, recsB := cty.records[0], cty.records[1]
	hA, rest := takeFirst(recsA, func(r *fieldsyncv1.Record) bool { return r.GetHousehold() != nil })
	vA, recsA := takeFirst(rest, func(r *fieldsyncv1.Record) bool { return r.GetHouseholdVisit() != nil })
	hBNew, recsB := takeFirst(recsB, func(r *fieldsyncv1.Record) bool { return r.GetHousehold() != nil })

	// Phones of A and B and a township device, which saves records of both
	// villages; everyone syncs twice.
	phoneA := openDevice(t, "phone-A", []string{villageA})
	phoneB := openDevice(t, "phone-B", []string{villageB})
	township := openDevice(t, "township", []string{cty.township})
	for _, d := range []*device{phoneA, phoneB, township} {
		d.enrollWith(t, srv, addr)
	}
	for i, r := range recsA {
		save(t, []*device{phoneA, township}[i%2], r)
	}
	for i, r := range recsB {
		save(t, []*device{phoneB, township}[i%2], r)
	}
	syncAll := func() {
		t.Helper()
		for range 2 {
			for _, d := range []*device{phoneA, phoneB, township} {
				if err := d.sync(t.Context()); err != nil {
					t.Fatalf("%s: Sync: %v", d.name, err)
				}
			}
		}
	}
	syncAll()
	notFound(t, phoneA, recsB)
	notFound(t, phoneB, recsA)

	// A raw device of village A.
	forger := enrollRaw(t, srv, addr, villageA)
	rpc := fieldsyncv1.NewSyncServiceClient(forger.conn)
	hello, err := rpc.Hello(forger.ctx, &fieldsyncv1.HelloRequest{ReplicaId: forger.id[:], CapabilityVersion: wire.CapabilityVersion})
	if err != nil {
		t.Fatal(err)
	}
	if got := hello.GetAreaPrefixes(); len(got) != 1 || got[0] != villageA {
		t.Fatalf("Hello areas = %v, want [%s]", got, villageA)
	}

	// The batch: A household, edit of a B household the server holds, A
	// visit, new B household, the A household moved to B.
	var hB *fieldsyncv1.Record
	for _, r := range recsB {
		if r.GetHousehold() != nil {
			hB = r
			break
		}
	}
	hBState := serverRecord(t, srv, recordID(t, hB))
	hBEdit := proto.Clone(hB).(*fieldsyncv1.Record)
	hBEdit.GetHousehold().HeadName = "冒名"
	hAMoved := proto.Clone(hA).(*fieldsyncv1.Record)
	hAMoved.GetHousehold().AreaCode = villageB
	// phone-A's next dot, claimed for a record of A.
	phoneANext := syncengine.Dot{Replica: phoneA.Replica(), Counter: serverMaxCounter(t, srv, phoneA.Replica()) + 1}
	const headName, areaCode = 4, 2 // Household field numbers
	batch := []syncengine.Change{
		forger.change(t, hA, syncengine.VersionVector{}),
		forger.change(t, hBEdit, hBState.Version(), headName),
		forger.change(t, vA, syncengine.VersionVector{}),
		forger.change(t, hBNew, syncengine.VersionVector{}),
		forger.change(t, hAMoved, syncengine.NewVersionVector(syncengine.Dot{Replica: forger.id, Counter: 1}), areaCode),
		changeAs(t, phoneANext, recsA[0], syncengine.VersionVector{}),
	}
	want := []fieldsyncv1.ChangeOutcome{
		fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED,
		fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE,
		fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED,
		fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE,
		fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE,
		fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE,
	}
	req := &fieldsyncv1.PushRequest{FirstPosition: 1, LastPosition: uint64(len(batch))}
	for i, c := range batch {
		pc, err := wire.ChangeToProto(c)
		if err != nil {
			t.Fatal(err)
		}
		req.Changes = append(req.Changes, pc)
		req.Positions = append(req.Positions, uint64(i+1))
	}
	before := readState(t, "server before the push", srv.Replica(), nil, srv.Store())
	checkPush := func(attempt string, want []fieldsyncv1.ChangeOutcome) {
		t.Helper()
		resp, err := rpc.Push(forger.ctx, req)
		if err != nil {
			t.Fatalf("%s push: %v (reason %v), want per-change outcomes", attempt, err, servertest.ReasonOf(err))
		}
		if got := resp.GetAcknowledgedPosition(); got != uint64(len(batch)) {
			t.Errorf("%s push: acknowledged position %d, want %d: a refused change is passed, not retried", attempt, got, len(batch))
		}
		if len(resp.GetResults()) != len(batch) {
			t.Fatalf("%s push: %d results for %d changes", attempt, len(resp.GetResults()), len(batch))
		}
		for i, r := range resp.GetResults() {
			if r.GetOutcome() != want[i] || string(r.GetChangeId()) != string(batch[i].ID[:]) {
				t.Errorf("%s push: change %d (%v): %v %q, want %v", attempt, i, batch[i].Dot, r.GetOutcome(), r.GetMessage(), want[i])
			}
			if want[i] == fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE && r.GetMessage() == "" {
				t.Errorf("%s push: change %d refused without a message", attempt, i)
			}
		}
	}
	checkPush("first", want)

	// The A changes are stored, the B changes nowhere.
	after := readState(t, "server after the push", srv.Replica(), nil, srv.Store())
	checkLogUnique(t, after)
	if got, want := len(after.log), len(before.log)+2; got != want {
		t.Errorf("server log has %d entries after the push, want %d", got, want)
	}
	onServer := make(map[syncengine.Dot]bool)
	for _, e := range after.log {
		onServer[e.Change.Dot] = true
		if !inAreas(e.Change.Area, []string{villageA}) && e.Change.Origin == forger.id {
			t.Errorf("server log holds the forger's change %v in area %s", e.Change.Dot, e.Change.Area)
		}
	}
	for i, c := range batch {
		if applied := want[i] == fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED; onServer[c.Dot] != applied {
			t.Errorf("change %d (%v) on the server: %v, want %v", i, c.Dot, onServer[c.Dot], applied)
		}
	}
	if got := after.records[recordID(t, hB)]; got.Digest() != hBState.Digest() {
		t.Errorf("B household changed by the refused edit:\n before %v\n after  %v", hBState, got)
	}
	if _, ok := after.records[recordID(t, hBNew)]; ok {
		t.Errorf("server holds the refused new B household")
	}
	checkSaved(t, after, map[syncengine.RecordID]*fieldsyncv1.Record{recordID(t, hA): hA, recordID(t, vA): vA})
	for id, r := range before.records {
		if after.records[id].Digest() != r.Digest() {
			t.Errorf("record %v changed by the push", id)
		}
	}

	// A retry of the whole batch stores nothing: the A changes are
	// duplicates, the B changes refused again.
	retryWant := append([]fieldsyncv1.ChangeOutcome(nil), want...)
	retryWant[0] = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_ALREADY_APPLIED
	retryWant[2] = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_ALREADY_APPLIED
	checkPush("retried", retryWant)
	if again := readState(t, "server after the retry", srv.Replica(), nil, srv.Store()); len(again.log) != len(after.log) {
		t.Errorf("server log has %d entries after the retry, want %d", len(again.log), len(after.log))
	}

	// A raw Pull of the forger brings village A only, its own records
	// included (a first pull is a snapshot).
	got := rawPull(t, rpc, forger.ctx)
	for id, area := range got {
		if area != villageA {
			t.Errorf("raw pull of village %s brought record %v of area %s", villageA, id, area)
		}
	}
	for _, r := range []*fieldsyncv1.Record{hA, vA} {
		if _, ok := got[recordID(t, r)]; !ok {
			t.Errorf("raw pull lacks record %v", recordID(t, r))
		}
	}

	// The phones see the A records and nothing of the refused changes;
	// phone-A's next change, with the dot the forger claimed, is stored.
	edited := proto.Clone(hA).(*fieldsyncv1.Record)
	edited.GetHousehold().Notes = "户主外出务工"
	syncAll()
	save(t, phoneA, edited)
	syncAll()
	if got := serverMaxCounter(t, srv, phoneA.Replica()); got != phoneANext.Counter {
		t.Errorf("server holds phone-A's changes through %d, want %d", got, phoneANext.Counter)
	}
	hA = edited
	checkHas(t, phoneA, hA, vA)
	checkHas(t, township, hA, vA, hB)
	checkHas(t, phoneB, hB)
	notFound(t, phoneA, slices.Concat(recsB, []*fieldsyncv1.Record{hBNew}))
	notFound(t, phoneB, slices.Concat(recsA, []*fieldsyncv1.Record{hA, vA, hBNew}))
	notFound(t, township, []*fieldsyncv1.Record{hBNew})
	for _, d := range []*device{phoneA, phoneB, township} {
		d.checkClean(t)
	}
	srvState := readState(t, "server", srv.Replica(), nil, srv.Store())
	checkConverged(t, srvState, readDevice(t, phoneA), readDevice(t, phoneB), readDevice(t, township))
}

// takeFirst returns the first record of recs for which match is true and the
// others.
func takeFirst(recs []*fieldsyncv1.Record, match func(*fieldsyncv1.Record) bool) (*fieldsyncv1.Record, []*fieldsyncv1.Record) {
	for i, r := range recs {
		if match(r) {
			return r, append(recs[:i:i], recs[i+1:]...)
		}
	}
	panic("no matching record")
}

// save saves r on d and returns how many changes the save wrote (the
// record's, and those of the problems and risk flags it raised).
func save(t *testing.T, d *device, r *fieldsyncv1.Record) int {
	t.Helper()
	res, err := d.SaveRecord(t.Context(), r)
	if err != nil {
		t.Fatalf("%s: Save: %v", d.name, err)
	}
	n := res.Problems + res.Flags
	if res.Changed {
		n++
	}
	return n
}

// checkHas fails unless d shows each of recs as it is.
func checkHas(t *testing.T, d *device, recs ...*fieldsyncv1.Record) {
	t.Helper()
	for _, r := range recs {
		got, err := d.Get(t.Context(), recordID(t, r).String())
		if err != nil || !proto.Equal(got, r) {
			t.Errorf("%s: Get(%v) = %v, %v; want %v", d.name, recordID(t, r), got, err, r)
		}
	}
}

// serverRecord returns the server's state of record id.
func serverRecord(t *testing.T, srv *server.Server, id syncengine.RecordID) syncengine.Record {
	t.Helper()
	var r syncengine.Record
	err := srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// serverMaxCounter returns the highest dot counter of replica's changes the
// server holds.
func serverMaxCounter(t *testing.T, srv *server.Server, replica syncengine.ReplicaID) uint64 {
	t.Helper()
	var n uint64
	err := srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		n, err = tx.MaxCounter(t.Context(), replica)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rawDevice is a device enrolled through the EnrolmentService by hand, which
// talks to the SyncService with its token directly.
type rawDevice struct {
	id      syncengine.ReplicaID
	conn    *grpc.ClientConn
	ctx     context.Context // carries the device token
	counter uint64
}

func enrollRaw(t *testing.T, srv *server.Server, addr, area string) *rawDevice {
	t.Helper()
	code, _, err := srv.IssueEnrolmentCode([]string{area}, "raw", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := &rawDevice{}
	rand.Read(d.id[:])
	d.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.conn.Close() })
	resp, err := fieldsyncv1.NewEnrolmentServiceClient(d.conn).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: d.id[:]})
	if err != nil {
		t.Fatal(err)
	}
	d.ctx = metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+resp.GetDeviceToken())
	return d
}

// change makes d's next change: rec written over context, all its fields or
// only those listed.
func (d *rawDevice) change(t *testing.T, rec *fieldsyncv1.Record, context syncengine.VersionVector, only ...int32) syncengine.Change {
	t.Helper()
	d.counter++
	return changeAs(t, syncengine.Dot{Replica: d.id, Counter: d.counter}, rec, context, only...)
}

// changeAs makes the change with dot that writes rec over context, all its
// fields or only those listed.
func changeAs(t *testing.T, dot syncengine.Dot, rec *fieldsyncv1.Record, context syncengine.VersionVector, only ...int32) syncengine.Change {
	t.Helper()
	id, area, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := wire.Fields(wire.Body(rec))
	if err != nil {
		t.Fatal(err)
	}
	if len(only) > 0 {
		some := make(map[int32][]byte)
		for _, n := range only {
			some[n] = fields[n]
		}
		fields = some
	}
	c := syncengine.Change{
		RecordID: id, Kind: wire.KindOf(rec), Area: area, Origin: dot.Replica, Dot: dot,
		Stamp:   syncengine.Stamp{WallMS: time.Now().UnixMilli(), Counter: uint32(dot.Counter), Replica: dot.Replica},
		Context: context, Fields: fields,
	}
	rand.Read(c.ID[:])
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// rawPull pulls from no cursor until caught up and returns the area of every
// record and change received, by record.
func rawPull(t *testing.T, rpc fieldsyncv1.SyncServiceClient, ctx context.Context) map[syncengine.RecordID]string {
	t.Helper()
	stream, err := rpc.Pull(ctx, &fieldsyncv1.PullRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[syncengine.RecordID]string)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("raw pull: %v", err)
		}
		for _, rs := range resp.GetRecords() {
			out[syncengine.RecordID(rs.GetRecordId())] = rs.GetAreaCode()
		}
		for _, c := range resp.GetChanges() {
			out[syncengine.RecordID(c.GetRecordId())] = c.GetAreaCode()
		}
	}
}
