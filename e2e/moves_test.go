package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// enrolled opens and enrols a device of areas at an in-process server.
func enrolled(t *testing.T, srv *server.Server, addr, name string, areas ...string) *device {
	t.Helper()
	d := openDevice(t, name, areas, quickRetry(1)...)
	d.enrollWith(t, srv, addr)
	return d
}

func mustSync(t *testing.T, ds ...*device) {
	t.Helper()
	for _, d := range ds {
		if err := d.sync(t.Context()); err != nil {
			t.Fatalf("%s: Sync: %v", d.name, err)
		}
	}
}

// householdsAndPeople keeps the registry.
func householdsAndPeople(r *fieldsyncv1.Record) bool {
	return r.GetHousehold() != nil || r.GetPerson() != nil
}

// inVillage returns rec with its area_code set to village.
func inVillage(rec *fieldsyncv1.Record, village string) *fieldsyncv1.Record {
	out := proto.Clone(rec).(*fieldsyncv1.Record)
	switch b := out.GetBody().(type) {
	case *fieldsyncv1.Record_Household:
		b.Household.AreaCode = village
	case *fieldsyncv1.Record_Person:
		b.Person.AreaCode = village
	}
	return out
}

// moveHousehold asks the server, as its operator, to move household id to
// village.
func moveHousehold(t *testing.T, dir, addr string, id syncengine.RecordID, village string) *fieldsyncv1.MoveRecordResponse {
	t.Helper()
	admin, ctx := adminClient(t, dir, addr)
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	resp, err := admin.MoveRecord(ctx, &fieldsyncv1.MoveRecordRequest{RecordId: id[:], AreaCode: village})
	if err != nil {
		t.Fatalf("MoveRecord %v to %s: %v", id, village, err)
	}
	return resp
}

// A household of village A and its people move to village B (issue 6,
// "Moves"; it was the e2e_bugs reproduction
// TestBugMovedRecordReachesNewVillageIncomplete). Meanwhile village A's
// phone, offline, edits the household, before the move in one run and after
// it in the other. After one sync, village B's phone shows the household and
// its people whole, every field; after its next sync village A's phone no
// longer has them, and its edit is not refused but in the server's record,
// which B's phone then shows too. A phone of village C never receives them,
// and every replica ends converged, holding nothing of another village.
func TestMovedHousehold(t *testing.T) {
	for _, editFirst := range []bool{true, false} {
		name := "edit after the move"
		if editFirst {
			name = "edit before the move"
		}
		t.Run(name, func(t *testing.T) { testMovedHousehold(t, editFirst) })
	}
}

func testMovedHousehold(t *testing.T, editFirst bool) {
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, IDHashKey: testIDHashKey})
	cty := newCounty(t, 11, 4, householdsAndPeople)
	villageA, villageB := cty.villages[0], cty.villages[1]
	villageC := cty.township + "099"
	phoneA := enrolled(t, srv, addr, "phone-A", villageA)
	phoneB := enrolled(t, srv, addr, "phone-B", villageB)
	phoneC := enrolled(t, srv, addr, "phone-C", villageC)
	for _, r := range cty.records[0] {
		save(t, phoneA, r)
	}
	for _, r := range cty.records[1] {
		save(t, phoneB, r)
	}
	mustSync(t, phoneA, phoneB, phoneC, phoneA)

	h, _ := takeFirst(cty.records[0], func(r *fieldsyncv1.Record) bool { return r.GetHousehold() != nil })
	var people, neighbours []*fieldsyncv1.Record
	for _, r := range cty.records[0] {
		switch {
		case r.GetPerson().GetHouseholdId() == h.GetHousehold().GetId():
			people = append(people, r)
		case r != h:
			neighbours = append(neighbours, r)
		}
	}
	if len(people) == 0 {
		t.Fatal("the household has no people")
	}
	hid := recordID(t, h)
	edited := proto.Clone(h).(*fieldsyncv1.Record)
	edited.GetHousehold().Notes = "户主外出务工，妻子在家"
	move := func() {
		resp := moveHousehold(t, dir, addr, hid, villageB)
		if got, want := len(resp.GetRecordIds()), 1+len(people); got != want {
			t.Errorf("MoveRecord moved %d records, want the household and its %d people", got, len(people))
		}
	}
	if editFirst {
		save(t, phoneA, edited) // offline: phone-A does not sync until later
		time.Sleep(5 * time.Millisecond)
		move()
	} else {
		move()
		time.Sleep(5 * time.Millisecond)
		save(t, phoneA, edited)
	}
	moved := []*fieldsyncv1.Record{inVillage(h, villageB)}
	for _, p := range people {
		moved = append(moved, inVillage(p, villageB))
	}

	// One sync: village B's phone has the household and its people, whole.
	mustSync(t, phoneB)
	checkHas(t, phoneB, moved...)

	// Village A's phone syncs: its edit is accepted and the records leave it.
	mustSync(t, phoneA)
	phoneA.checkClean(t)
	notFound(t, phoneA, moved)
	checkHas(t, phoneA, neighbours...)
	got, err := wire.FromState(serverRecord(t, srv, hid))
	if err != nil {
		t.Fatal(err)
	}
	if got.GetHousehold().GetNotes() != edited.GetHousehold().GetNotes() {
		t.Errorf("server's household lacks phone-A's edit: %v", got)
	}

	// B's next sync brings the edit; the household stays in B everywhere.
	mustSync(t, phoneB, phoneC, phoneA)
	moved[0] = inVillage(edited, villageB)
	checkHas(t, phoneB, moved...)
	notFound(t, phoneA, moved)
	notFound(t, phoneC, moved)
	if got := serverRecord(t, srv, hid); got.Area() != villageB {
		t.Errorf("server's household in %s, want %s", got.Area(), villageB)
	}
	for _, d := range []*device{phoneA, phoneB, phoneC} {
		d.checkClean(t)
	}
	srvState := readState(t, "server", srv.Replica(), nil, srv.Store())
	if err := srv.Store().Check(t.Context()); err != nil {
		t.Error(err)
	}
	checkConverged(t, srvState, readDevice(t, phoneA), readDevice(t, phoneB), readDevice(t, phoneC))
}

// The original reproduction: a township's device saves a household of
// village A with village B's code (a move made on a device, not by the
// operator). B's phone gets the household whole, A's phone lets it go.
func TestHouseholdMovedByTownshipDevice(t *testing.T) {
	srv, addr := servertest.Start(t, server.Config{IDHashKey: testIDHashKey})
	cty := newCounty(t, 11, 4, householdsAndVisits)
	phoneA := enrolled(t, srv, addr, "phone-A", cty.villages[0])
	phoneB := enrolled(t, srv, addr, "phone-B", cty.villages[1])
	township := enrolled(t, srv, addr, "township", cty.township)
	h, _ := takeFirst(cty.records[0], func(r *fieldsyncv1.Record) bool { return r.GetHousehold() != nil })
	save(t, township, h)
	mustSync(t, township, phoneA, phoneB)
	checkHas(t, phoneA, h)

	moved := inVillage(h, cty.villages[1])
	save(t, township, moved)
	mustSync(t, township, phoneA, phoneB)

	checkHas(t, phoneB, moved)
	checkHas(t, township, moved)
	notFound(t, phoneA, []*fieldsyncv1.Record{h})
	srvState := readState(t, "server", srv.Replica(), nil, srv.Store())
	checkConverged(t, srvState, readDevice(t, phoneA), readDevice(t, phoneB), readDevice(t, township))
}
