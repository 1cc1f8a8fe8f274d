package sqlitestore_test

import (
	"bytes"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
	"github.com/fieldsync/fieldsync/wire"
)

// save writes rec as a local change of the store's replica, as the device SDK
// does: one transaction for the record, its change and its read-model row.
func save(t testing.TB, s *sqlitestore.Store, clock *syncengine.Clock, rec *fieldsyncv1.Record) syncengine.Change {
	t.Helper()
	body := wire.Body(rec)
	fields, err := wire.Fields(body)
	if err != nil {
		t.Fatal(err)
	}
	id, area, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	var changeID syncengine.ChangeID
	rand.Read(changeID[:])
	c, err := syncenginetest.WriteLocal(t.Context(), s, clock, time.Now().UnixMilli(), syncengine.Edit{
		ID: changeID, Record: id, Kind: wire.KindOf(rec), Area: area, Fields: fields,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// village is a generated village of about 300 people as of 2026-11-01.
func village(t testing.TB) []*fieldsyncv1.Record {
	t.Helper()
	g, err := countygen.New(countygen.Config{People: 300, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*fieldsyncv1.Record
	if err := g.Each(func(r *fieldsyncv1.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// openTempFill saves a generated village into s.
func openTempFill(t testing.TB, s *sqlitestore.Store) []*fieldsyncv1.Record {
	t.Helper()
	clock := syncengine.NewClock(s.Replica(), 0)
	recs := village(t)
	for _, rec := range recs {
		save(t, s, clock, rec)
	}
	return recs
}

func TestReadModel(t *testing.T) {
	t.Run("clear", func(t *testing.T) { testReadModel(t, openTemp(t)) })
	t.Run("sealed", func(t *testing.T) { testReadModel(t, openTempSealed(t)) })
}

func testReadModel(t *testing.T, s *sqlitestore.Store) {
	recs := openTempFill(t, s)
	ctx := t.Context()
	asOf := time.Date(2026, 11, 1, 0, 0, 0, 0, survey.ChinaTime)

	// Due patients: every living patient's latest hypertension or diabetes
	// follow-up due by the day is listed (DuePatients itself is tested in
	// due_test.go).
	latest := map[string]*fieldsyncv1.FollowUp{}
	living := map[string]bool{}
	var villages []string
	for _, r := range recs {
		if f := r.GetFollowUp(); f != nil {
			switch f.GetDisease() {
			case fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION, fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES:
				key := f.GetPersonId() + f.GetDisease().String()
				if l := latest[key]; l == nil || f.GetFollowedUpAt().AsTime().After(l.GetFollowedUpAt().AsTime()) {
					latest[key] = f
				}
			}
		}
		if p := r.GetPerson(); p != nil && p.GetResidency() != fieldsyncv1.Residency_RESIDENCY_DECEASED {
			living[p.GetId()] = true
		}
		if h := r.GetHousehold(); h != nil && len(villages) == 0 {
			villages = append(villages, h.GetAreaCode())
		}
	}
	due, err := s.DuePatients(ctx, villages, asOf)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, d := range due {
		listed[d.LastFollowUpID] = true
	}
	wantDue := 0
	for _, f := range latest {
		if d, _ := survey.DateTime(f.GetNextDueOn()); !d.After(asOf) && living[f.GetPersonId()] {
			wantDue++
			if !listed[f.GetId()] {
				t.Errorf("follow-up %s due on %v is not listed", f.GetId(), d)
			}
		}
	}
	if wantDue == 0 {
		t.Errorf("the village has no follow-up due by %v (of %d patients' latest follow-ups)", asOf, len(latest))
	}
	if other, _ := s.DuePatients(ctx, []string{"532523999201"}, asOf); len(other) != 0 {
		t.Errorf("DuePatients for another village returned %d", len(other))
	}

	// Households not visited: every household was visited in the generated campaign.
	if left, err := s.UnvisitedHouseholds(ctx, villages, "2026-回头看"); err != nil || len(left) != 0 {
		t.Errorf("UnvisitedHouseholds(2026-回头看) = %d, %v; want 0", len(left), err)
	}
	all, err := s.UnvisitedHouseholds(ctx, villages, "2027-春季")
	households := 0
	for _, r := range recs {
		if r.GetHousehold() != nil {
			households++
		}
	}
	if err != nil || len(all) != households {
		t.Errorf("UnvisitedHouseholds(new campaign) = %d, %v; want all %d", len(all), err, households)
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.GetAreaCode() > b.GetAreaCode() || a.GetAreaCode() == b.GetAreaCode() && a.GetHeadName() > b.GetHeadName() {
			t.Fatalf("UnvisitedHouseholds not by area and head: %s %s before %s %s", a.GetAreaCode(), a.GetHeadName(), b.GetAreaCode(), b.GetHeadName())
		}
	}

	// Open problems: those not verified, critical first.
	wantOpen := 0
	for _, r := range recs {
		if p := r.GetProblem(); p != nil && p.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED {
			wantOpen++
		}
	}
	open, err := s.OpenProblems(ctx, villages)
	if err != nil || len(open) != wantOpen {
		t.Errorf("OpenProblems = %d, %v; want %d", len(open), err, wantOpen)
	}
	for i := 1; i < len(open); i++ {
		if open[i].GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL && open[i-1].GetSeverity() != fieldsyncv1.Severity_SEVERITY_CRITICAL {
			t.Fatal("a critical problem listed after a normal one")
		}
	}
}

// TestReadModelFollowsMerges checks that the read model shows the merged state:
// an edit replaces the row, a delete removes it.
func TestReadModelFollowsMerges(t *testing.T) {
	s := openTemp(t)
	clock := syncengine.NewClock(s.Replica(), 0)
	var hh *fieldsyncv1.Household
	for _, r := range village(t) {
		if hh = r.GetHousehold(); hh != nil {
			break
		}
	}
	rec := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: hh}}
	save(t, s, clock, rec)
	hh.HeadName = "王秀英"
	c := save(t, s, clock, rec)
	got, err := s.UnvisitedHouseholds(t.Context(), []string{hh.GetAreaCode()}, "none")
	if err != nil || len(got) != 1 || got[0].GetHeadName() != "王秀英" {
		t.Fatalf("after an edit the read model shows %v, %v; want head 王秀英", got, err)
	}
	var del syncengine.ChangeID
	rand.Read(del[:])
	if _, err := syncenginetest.WriteLocal(t.Context(), s, clock, time.Now().UnixMilli(),
		syncengine.Edit{ID: del, Record: c.RecordID, Delete: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.UnvisitedHouseholds(t.Context(), []string{hh.GetAreaCode()}, "none"); len(got) != 0 {
		t.Errorf("after a delete the read model still shows %d households", len(got))
	}
}

// Records lists the live records of one kind in id order, page by page.
func TestRecordsByKind(t *testing.T) {
	s := openTemp(t)
	recs := openTempFill(t, s)
	want := map[syncengine.Kind][]syncengine.RecordID{}
	for _, r := range recs {
		id, _, err := wire.Identity(r)
		if err != nil {
			t.Fatal(err)
		}
		want[wire.KindOf(r)] = append(want[wire.KindOf(r)], id)
	}
	// Delete the first household: it is no longer listed.
	hh := want[syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD)]
	slices.SortFunc(hh, func(a, b syncengine.RecordID) int { return bytes.Compare(a[:], b[:]) })
	var cid syncengine.ChangeID
	rand.Read(cid[:])
	if _, err := syncenginetest.WriteLocal(t.Context(), s, syncengine.NewClock(s.Replica(), 0), time.Now().UnixMilli(), syncengine.Edit{ID: cid, Record: hh[0], Delete: true}); err != nil {
		t.Fatal(err)
	}
	want[syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD)] = hh[1:]
	for kind, ids := range want {
		slices.SortFunc(ids, func(a, b syncengine.RecordID) int { return bytes.Compare(a[:], b[:]) })
		var got []syncengine.RecordID
		var after syncengine.RecordID
		for {
			page, err := s.Records(t.Context(), kind, after, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				if r.Kind() != kind || !r.Exists() {
					t.Fatalf("kind %d: listed %v of kind %d, exists %v", kind, r.ID(), r.Kind(), r.Exists())
				}
				got = append(got, r.ID())
			}
			if len(page) < 7 {
				break
			}
			after = page[len(page)-1].ID()
		}
		if !slices.Equal(got, ids) {
			t.Errorf("kind %d: listed %d records, want %d in id order", kind, len(got), len(ids))
		}
	}
}

// A record that shows no field (a relay's or a newer build's change may
// carry none) keeps a read-model row with an empty record, and does not
// fail the transaction that stores it.
func TestReadModelOfARecordWithoutFields(t *testing.T) {
	s := openTemp(t)
	clock := syncengine.NewClock(s.Replica(), 0)
	var changeID syncengine.ChangeID
	rand.Read(changeID[:])
	id := syncengine.RecordID{1, 2, 3}
	_, err := syncenginetest.WriteLocal(t.Context(), s, clock, time.Now().UnixMilli(), syncengine.Edit{
		ID: changeID, Record: id, Kind: syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD), Area: "532523100201",
		Fields: map[int32][]byte{},
	})
	if err != nil {
		t.Fatalf("saving a record of no field: %v", err)
	}
	if n := count(t, s, "SELECT count(*) FROM households WHERE id = ? AND length(record) = 0", id.String()); n != 1 {
		t.Errorf("%d read-model rows with an empty record, want 1", n)
	}
}
