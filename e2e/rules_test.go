package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save/savetest"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// The bureau's rules where records are made, through the real path: phones
// save with the SDK, sync with a real township server over TCP on
// 127.0.0.1, which relays to a real county; a phone enrolled directly at the
// county pushes too. What each tier stores, what is refused and what the
// phone's due list says are checked.

const (
	rulesVillage  = "532523100201"
	rulesTownship = "532523100"
	rulesCounty   = "532523"
)

// rulesWorld is a county with its survey rules, a township relaying to it,
// two phones of one village at the township and one at the county, and the
// village's registry.
type rulesWorld struct {
	county, town           *tierServer
	phoneA, phoneB, direct *device

	household                        string // a registered out-of-poverty household
	htn, dm, newPatient              string // persons: hypertension, diabetes, hypertension never followed up
	doctor, staff, inspector, clinic string // workers and the village clinic
	now                              time.Time
}

func newRulesWorld(t *testing.T) *rulesWorld {
	t.Helper()
	w := &rulesWorld{now: time.Now()}
	// The county sets a self-pay threshold of 9.5 %, below the default 10 %.
	w.county = startTierWithRules(t, "county", rulesCounty, &fieldsyncv1.Rules{SelfPayThresholdBp: 950, Source: "532523 rules.json"})
	w.town = startTier(t, "township", rulesTownship)
	(&tierWorld{rng: rand.New(rand.NewPCG(1, 2)), county: w.county}).enrolTownship(t, w.town)

	id := func() string { return uuid.Must(uuid.NewV7()).String() }
	w.household, w.htn, w.dm, w.newPatient = id(), id(), id(), id()
	w.doctor, w.staff, w.inspector, w.clinic = id(), id(), id(), id()
	townSave := func(recs ...*fieldsyncv1.Record) {
		for _, r := range recs {
			if _, err := w.town.srv.Save(t.Context(), r); err != nil {
				t.Fatalf("township: Save: %v", err)
			}
		}
	}
	townSave(
		workerRecord(w.doctor, rulesVillage, "李春兰", fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR),
		workerRecord(w.staff, rulesTownship+"000", "王建国", fieldsyncv1.WorkerRole_WORKER_ROLE_TOWNSHIP_STAFF),
		&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{
			Id: w.household, AreaCode: rulesVillage, HeadName: "杨丙", HeadPersonId: w.htn,
			Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_REGISTERED_OUT_OF_POVERTY,
		}}},
		person(t, w.htn, w.household, "杨丙", "19560304", fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION),
		person(t, w.dm, w.household, "杨丁", "19620711", fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES),
		person(t, w.newPatient, w.household, "杨戊", "19700101", fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION),
	)
	if _, err := w.county.srv.Save(t.Context(), workerRecord(w.inspector, rulesCounty+"000000", "赵检查", fieldsyncv1.WorkerRole_WORKER_ROLE_COUNTY_INSPECTOR)); err != nil {
		t.Fatal(err)
	}
	w.relay(t) // the registry reaches the county; the county's rules reach the township

	w.phoneA = openDevice(t, "phoneA", []string{rulesVillage}, quickRetry(3)...)
	w.phoneA.enrollWith(t, w.town.srv, w.town.addr)
	w.phoneB = openDevice(t, "phoneB", []string{rulesVillage}, quickRetry(3)...)
	w.phoneB.enrollWith(t, w.town.srv, w.town.addr)
	w.direct = openDevice(t, "direct", []string{rulesVillage}, quickRetry(3)...)
	w.direct.enrollWith(t, w.county.srv, w.county.addr)
	for _, d := range []*device{w.phoneA, w.phoneB, w.direct} {
		d.syncUntilOK(t, 3)
	}
	return w
}

func (w *rulesWorld) relay(t *testing.T) {
	t.Helper()
	if err := w.town.relay(t); err != nil {
		t.Fatalf("relay: %v", err)
	}
}

// syncAll syncs the phones, relays, and syncs them again: whatever any of
// them made is then at every tier.
func (w *rulesWorld) syncAll(t *testing.T) {
	t.Helper()
	for range 2 {
		for _, d := range []*device{w.phoneA, w.phoneB, w.direct} {
			d.syncUntilOK(t, 3)
		}
		w.relay(t)
	}
}

func workerRecord(id, area, name string, role fieldsyncv1.WorkerRole) *fieldsyncv1.Record {
	w := &fieldsyncv1.Worker{Id: id, AreaCode: area, Name: name, Role: role}
	if role == fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR {
		w.LicenceNumber = "云乡医2019-0042"
	}
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Worker{Worker: w}}
}

// person is a member of household with one chronic condition, diagnosed
// three years ago, and a valid ID number captured with the county's key.
func person(t *testing.T, id, household, name, birth string, disease fieldsyncv1.ChronicDisease) *fieldsyncv1.Record {
	t.Helper()
	base := rulesCounty + birth + "123"
	check, err := survey.IDCheckDigit(base)
	if err != nil {
		t.Fatal(err)
	}
	idn, err := survey.CaptureIDNumber(testIDHashKey, base+string(check))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := time.Parse("20060102", birth)
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: &fieldsyncv1.Person{
		Id: id, AreaCode: rulesVillage, HouseholdId: household, Name: name, IdNumber: idn,
		Sex: fieldsyncv1.Sex_SEX_MALE, BirthDate: survey.Today(b.Add(12 * time.Hour)),
		Residency: fieldsyncv1.Residency_RESIDENCY_AT_HOME, HasHealthRecord: proto.Bool(true),
		HasOnePersonPlan: proto.Bool(true), HasChronicHandbook: proto.Bool(true),
		Conditions: []*fieldsyncv1.Condition{{Disease: disease, DiagnosedOn: survey.Today(time.Now().AddDate(-3, 0, 0))}},
	}}}
}

// followUp is a follow-up as a careless app would type it: CONTROLLED, next
// due in six months, no referral.
func (w *rulesWorld) followUp(personID string, disease fieldsyncv1.ChronicDisease, at time.Time, sbp, dbp int32, glucose float64) *fieldsyncv1.FollowUp {
	f := &fieldsyncv1.FollowUp{
		Id: uuid.Must(uuid.NewV7()).String(), AreaCode: rulesVillage, PersonId: personID, DoctorWorkerId: w.doctor,
		Disease: disease, FollowedUpAt: timestamppb.New(at), Method: fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME,
		SystolicMmhg: proto.Int32(sbp), DiastolicMmhg: proto.Int32(dbp),
		Adherence:      fieldsyncv1.Adherence_ADHERENCE_REGULAR,
		Classification: fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED,
		NextDueOn:      survey.AddMonths(survey.Today(at), 6),
	}
	if glucose != 0 {
		f.FastingGlucoseMmolL = proto.Float64(glucose)
	}
	return f
}

// atTiers returns the record id as the phone, the township and the county
// hold it, failing when one lacks it.
func (w *rulesWorld) atTiers(t *testing.T, phone *device, id string) map[string]*fieldsyncv1.Record {
	t.Helper()
	out := make(map[string]*fieldsyncv1.Record)
	got, err := phone.Get(t.Context(), id)
	if err != nil {
		t.Errorf("%s: Get(%s): %v", phone.name, id, err)
	} else {
		out[phone.name] = got
	}
	rid, err := wire.RecordID(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*tierServer{w.town, w.county} {
		if rec, ok := tierRecord(t, srv, rid); ok {
			out[srv.name] = rec
		} else {
			t.Errorf("%s lacks record %s (or holds it in conflict)", srv.name, id)
		}
	}
	return out
}

// rawWrite stores rec on d's replica as an old or buggy app would: straight
// into the engine, with no rule applied. The client is reopened afterwards.
func rawWrite(t *testing.T, d *device, recs ...*fieldsyncv1.Record) {
	t.Helper()
	if err := d.Client.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := sqlitestore.Open(t.Context(), d.path)
	if err != nil {
		t.Fatal(err)
	}
	clock := syncengine.NewClock(st.Replica(), 0)
	for _, rec := range recs {
		if changed, err := savetest.Raw(t.Context(), st, clock, time.Now().UnixMilli(), rec); err != nil || !changed {
			t.Fatalf("raw write: %v (changed: %v)", err, changed)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := fieldsync.Open(t.Context(), d.path, quickRetry(3)...)
	if err != nil {
		t.Fatal(err)
	}
	d.Client = c
}

// rejection returns d's rejection of record id, failing if there is none.
func rejection(t *testing.T, d *device, id string) fieldsync.Rejection {
	t.Helper()
	st, err := d.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Rejected {
		if r.RecordID == id {
			return r
		}
	}
	t.Fatalf("%s: no rejection of %s; status %+v", d.name, id, st)
	return fieldsync.Rejection{}
}

func fieldErrorsText(r fieldsync.Rejection) string {
	var b strings.Builder
	for _, f := range r.Fields {
		fmt.Fprintf(&b, "%s [%v] %s; ", f.Path, f.Reason, f.Message)
	}
	return b.String()
}

// TestFollowUpRulesAcrossTiers saves, for every threshold of the follow-up
// standard at, just below and just above it, a follow-up typed CONTROLLED,
// due in six months, with no referral: the phone derives the schedule, and
// the township and the county hold exactly what the phone derived. The same
// follow-ups written by an old app that derives nothing are refused by the
// township (and, from a phone enrolled there, by the county), naming the rule
// and the value, and stay listed on the phone; changes behind them pass.
func TestFollowUpRulesAcrossTiers(t *testing.T) {
	w := newRulesWorld(t)
	const (
		htn = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION
		dm  = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES
		ctl = fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED
		unc = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
	)
	cases := []struct {
		disease  fieldsyncv1.ChronicDisease
		sbp, dbp int32
		glucose  float64
		class    fieldsyncv1.Classification
		urgent   bool
		rule     string // the old app's refusal names it; "" when what it typed is right
	}{
		{htn, 139, 80, 0, ctl, false, ""},
		{htn, 140, 80, 0, unc, false, "systolic 140 ≥ 140"},
		{htn, 141, 80, 0, unc, false, "systolic 141 ≥ 140"},
		{htn, 130, 89, 0, ctl, false, ""},
		{htn, 130, 90, 0, unc, false, "diastolic 90 ≥ 90"},
		{htn, 130, 91, 0, unc, false, "diastolic 91 ≥ 90"},
		{htn, 179, 100, 0, unc, false, "systolic 179 ≥ 140"},
		{htn, 180, 100, 0, unc, true, "systolic 180 ≥ 180 requires an urgent referral"},
		{htn, 181, 100, 0, unc, true, "systolic 181 ≥ 180 requires an urgent referral"},
		{htn, 170, 109, 0, unc, false, "systolic 170 ≥ 140"},
		{htn, 170, 110, 0, unc, true, "diastolic 110 ≥ 110 requires an urgent referral"},
		{htn, 185, 115, 0, unc, true, "systolic 185 ≥ 180 requires an urgent referral"},
		{dm, 120, 80, 6.9, ctl, false, ""},
		{dm, 120, 80, 7.0, unc, false, "fasting glucose 7 ≥ 7 mmol/L"},
		{dm, 120, 80, 7.1, unc, false, "fasting glucose 7.1 ≥ 7 mmol/L"},
		{dm, 120, 80, 16.6, unc, false, "fasting glucose 16.6 ≥ 7 mmol/L"},
		{dm, 120, 80, 16.7, unc, true, "fasting glucose 16.7 ≥ 16.7 mmol/L requires an urgent referral"},
		{dm, 120, 80, 16.8, unc, true, "fasting glucose 16.8 ≥ 16.7 mmol/L requires an urgent referral"},
		{dm, 120, 80, 4.0, ctl, false, ""},
		{dm, 120, 80, 3.9, unc, true, "fasting glucose 3.9 ≤ 3.9 mmol/L requires an urgent referral"},
		{dm, 120, 80, 3.8, unc, true, "fasting glucose 3.8 ≤ 3.9 mmol/L requires an urgent referral"},
	}
	// The SDK's saves, each a minute after the last, so the latest of each
	// disease is the last case (both urgent).
	start := w.now.Add(-time.Duration(len(cases)+1) * time.Minute)
	saved := make([]*fieldsyncv1.FollowUp, len(cases))
	for i, tc := range cases {
		p := w.htn
		if tc.disease == dm {
			p = w.dm
		}
		f := w.followUp(p, tc.disease, start.Add(time.Duration(i)*time.Minute), tc.sbp, tc.dbp, tc.glucose)
		if err := w.phoneA.SaveFollowUp(t.Context(), f); err != nil {
			t.Fatalf("case %d: SaveFollowUp: %v", i, err)
		}
		saved[i] = f
	}
	w.syncAll(t)
	for i, tc := range cases {
		day := survey.Today(saved[i].GetFollowedUpAt().AsTime())
		wantDue := survey.AddMonths(day, 3)
		if tc.class != ctl || tc.urgent {
			wantDue = survey.AddDays(day, 14)
		}
		for tier, rec := range w.atTiers(t, w.phoneA, saved[i].GetId()) {
			f := rec.GetFollowUp()
			if f.GetClassification() != tc.class || f.GetReferral().GetUrgent() != tc.urgent || !proto.Equal(f.GetNextDueOn(), wantDue) {
				t.Errorf("case %d (%v %d/%d %g) at %s: %v urgent=%v due %s; want %v urgent=%v due %s", i, tc.disease, tc.sbp, tc.dbp, tc.glucose, tier,
					f.GetClassification(), f.GetReferral().GetUrgent(), survey.FormatDate(f.GetNextDueOn()), tc.class, tc.urgent, survey.FormatDate(wantDue))
			}
		}
	}

	// The due list: both patients followed up last were referred urgently
	// (due in 2 weeks); the third hypertensive patient was never followed up
	// and is due since his diagnosis.
	due, err := w.phoneA.DuePatients(t.Context(), w.now.AddDate(0, 0, 15))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range due {
		got = append(got, d.Name+":"+d.Reason.String())
	}
	if len(due) != 3 || due[2].PersonID != w.newPatient || due[0].Reason != sqlitestore.DueUrgentReferral || due[1].Reason != sqlitestore.DueUrgentReferral ||
		due[2].Reason != sqlitestore.DueNeverFollowedUp {
		t.Errorf("due list in 15 days = %v; want the two urgent referrals first, then 杨戊 never followed up", got)
	}

	// An old app that derives nothing: the same follow-ups as typed, then a
	// household edit behind them.
	for _, at := range []struct {
		name string
		d    *device
	}{{"township", w.phoneB}, {"county", w.direct}} {
		name, d := at.name, at.d
		w.syncAll(t) // d holds the latest household
		var bad []*fieldsyncv1.Record
		for i, tc := range cases {
			if tc.rule == "" {
				continue
			}
			f := w.followUp(w.htn, tc.disease, start.Add(time.Duration(i)*time.Minute), tc.sbp, tc.dbp, tc.glucose)
			bad = append(bad, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: f}})
		}
		edit, err := d.Get(t.Context(), w.household)
		if err != nil {
			t.Fatal(err)
		}
		notes := "edited by " + d.name + " behind refused follow-ups"
		edit.GetHousehold().Notes = notes
		rawWrite(t, d, append(bad, edit)...)
		d.syncUntilOK(t, 3)
		n := 0
		for i, tc := range cases {
			if tc.rule == "" {
				continue
			}
			r := rejection(t, d, bad[n].GetFollowUp().GetId())
			n++
			if r.Outcome != "invalid" || !strings.Contains(fieldErrorsText(r), tc.rule) ||
				!strings.Contains(fieldErrorsText(r), "FIELD_ERROR_REASON_RULE") {
				t.Errorf("case %d refused by the %s as %s: %s; want invalid naming %q", i, name, r.Outcome, fieldErrorsText(r), tc.rule)
			}
		}
		w.relay(t)
		for tier, rec := range w.atTiers(t, d, w.household) {
			if got := rec.GetHousehold().GetNotes(); got != notes {
				t.Errorf("%s: the edit behind the follow-ups the %s refused: notes %q, want %q", tier, name, got, notes)
			}
		}
		for _, b := range bad {
			rid := recordID(t, b)
			for _, srv := range []*tierServer{w.town, w.county} {
				if _, ok := tierRecord(t, srv, rid); ok {
					t.Errorf("%s stored the refused follow-up %v", srv.name, rid)
				}
			}
		}
	}
}

// TestProblemsAndFlagsAcrossTiers: a clinic audit raises its problems on the
// phone, in the same transaction, and they reach the township and the county;
// the same finding raised by two phones offline and by the township is one
// problem everywhere; the county's self-pay threshold (9.5 %) raises a flag
// the default would not; the ledger's workflow is enforced at every tier,
// and a refused move never blocks the changes behind it.
func TestProblemsAndFlagsAcrossTiers(t *testing.T) {
	w := newRulesWorld(t)
	ctx := t.Context()

	// The rules the county set reached the phone through the township.
	rules, err := w.phoneA.Rules(ctx)
	if src, _ := w.phoneA.RulesSource(ctx); err != nil || rules.SelfPayThresholdBP != 950 || !strings.Contains(src, "532523") {
		t.Fatalf("phone's rules = %+v from %q, %v; want the county's 950 bp", rules, src, err)
	}

	// A clinic audit: 40 essential medicines, 30 m², no licensed doctor and
	// no cover, expired drugs; everything else in order; no 一口清 numbers.
	yes := proto.Bool(true)
	audit := &fieldsyncv1.ClinicAudit{
		Id: uuid.Must(uuid.NewV7()).String(), AreaCode: rulesVillage, ClinicId: w.clinic, AuditorWorkerId: w.doctor,
		AuditedAt:                timestamppb.New(w.now.Add(-time.Hour)),
		ConsultationRoomSeparate: yes, TreatmentRoomSeparate: yes, PublicHealthRoomSeparate: yes, PharmacySeparate: yes,
		FloorAreaM2: proto.Float64(30), LicensedDoctorPresent: proto.Bool(false),
		HasStethoscope: yes, HasThermometer: yes, HasSphygmomanometer: yes, HasExaminationBed: yes,
		EssentialDrugKinds: proto.Int32(40), ExpiredDrugsFound: yes, HealthSupplementsFound: proto.Bool(false), OffListDrugsFound: proto.Bool(false),
		HasWater: yes, HasElectricity: yes, HasHeating: yes, HasOperatingFunds: yes,
	}
	res, err := w.phoneA.SaveRecord(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_ClinicAudit{ClinicAudit: audit}})
	if err != nil {
		t.Fatal(err)
	}
	items := []string{"clinic.floor_area", "clinic.drugs.essential_kinds", "clinic.doctor", "clinic.drugs.expired"}
	// The registry holds the village's people, so each 一口清 number the
	// doctor could not state is a problem too.
	for _, n := range []string{"registered_poor_people", "sick_people", "chronic_handbooks_issued", "one_person_plans_held", "major_illness_treated"} {
		items = append(items, "clinic.yikouqing."+n)
	}
	if res.Problems != len(items) {
		t.Errorf("the audit raised %d problems, want %d (%v)", res.Problems, len(items), items)
	}
	w.syncAll(t)
	for _, item := range items {
		id := survey.ProblemID(audit.GetId(), item, "")
		for tier, rec := range w.atTiers(t, w.phoneB, id) {
			if p := rec.GetProblem(); p.GetItem() != item || p.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN || p.GetSourceRecordId() != audit.GetId() {
				t.Errorf("%s: problem %s = %v", tier, item, p)
			}
		}
	}
	floor := survey.ProblemID(audit.GetId(), "clinic.floor_area", "")

	// The same finding on two phones offline and at the township.
	visit := &fieldsyncv1.HouseholdVisit{
		Id: uuid.Must(uuid.NewV7()).String(), AreaCode: rulesVillage, HouseholdId: w.household, VisitorWorkerId: w.doctor,
		Campaign: "2026-回头看", StartedAt: timestamppb.New(w.now.Add(-2 * time.Hour)),
		Findings: []*fieldsyncv1.MemberFinding{{
			PersonId: w.htn, Presence: fieldsyncv1.Presence_PRESENCE_PRESENT, ContractSigned: yes, ContractServedOnTime: yes,
			HealthRecordExists: yes, OnePersonPlanPresent: yes, Satisfaction: fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED,
		}},
	}
	if err := w.phoneA.SaveHouseholdVisit(ctx, visit); err != nil {
		t.Fatal(err)
	}
	w.syncAll(t)
	unhappy := proto.Clone(visit).(*fieldsyncv1.HouseholdVisit)
	unhappy.Findings[0].Satisfaction, unhappy.Findings[0].DissatisfactionReason = fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED, "随访不及时"
	for _, d := range []*device{w.phoneA, w.phoneB} {
		res, err := d.SaveRecord(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: unhappy}})
		if err != nil || res.Problems != 1 {
			t.Fatalf("%s: the dissatisfied finding raised %d problems, %v; want 1", d.name, res.Problems, err)
		}
	}
	if _, err := w.town.srv.Save(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: unhappy}}); err != nil {
		t.Fatal(err)
	}
	w.syncAll(t)
	dissatisfied := survey.ProblemID(visit.GetId(), "member.dissatisfied", w.htn)
	for tier, rec := range w.atTiers(t, w.phoneA, dissatisfied) {
		if p := rec.GetProblem(); !strings.Contains(p.GetDescription(), "杨丙") || p.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN {
			t.Errorf("%s: %v", tier, p)
		}
	}
	for _, d := range []*device{w.phoneA, w.phoneB} {
		if cs, err := d.Conflicts(ctx, dissatisfied); err != nil || len(cs) != 0 {
			t.Errorf("%s: the problem raised three times has conflicts %v, %v", d.name, cs, err)
		}
		n := 0
		ps, err := d.Problems(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.GetSourceRecordId() == visit.GetId() && p.GetItem() == "member.dissatisfied" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s holds %d problems for the dissatisfied member, want 1", d.name, n)
		}
	}

	// A flag at 9.6 % self-pay: over the county's 9.5 %, under the default 10 %.
	spent := proto.Clone(visit).(*fieldsyncv1.HouseholdVisit)
	spent.Id = uuid.Must(uuid.NewV7()).String()
	spent.Findings[0].OutOfPocketFen, spent.Findings[0].TotalMedicalCostFen = proto.Int64(96000), proto.Int64(1000000)
	if res, err := w.phoneB.SaveRecord(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: spent}}); err != nil || res.Flags != 1 {
		t.Fatalf("9.6 %% self-pay raised %d flags, %v; want 1", res.Flags, err)
	}
	w.syncAll(t)
	flag := survey.RiskFlagID(spent.GetId(), w.htn, fieldsyncv1.RiskReason_RISK_REASON_SELF_PAY_SHARE.String())
	for tier, rec := range w.atTiers(t, w.phoneA, flag) {
		if f := rec.GetRiskFlag(); f.GetThresholdBp() != 950 || f.GetPersonId() != w.htn {
			t.Errorf("%s: flag %v, want one at the county's 950 bp", tier, f)
		}
	}

	// The ledger. Rectified on a phone, verified at the county: the phone
	// sees it verified.
	p := w.problem(t, w.phoneA, dissatisfied)
	p.Status, p.Measure, p.RectifiedAt, p.RectifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, "回访并改进随访安排", timestamppb.New(time.Now()), w.doctor
	if err := w.phoneA.SaveProblem(ctx, p); err != nil {
		t.Fatal(err)
	}
	w.syncAll(t)
	v := w.problem(t, w.phoneA, dissatisfied)
	v.Status, v.VerifiedAt, v.VerifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, timestamppb.New(time.Now()), w.inspector
	if _, err := w.county.srv.Save(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: v}}); err != nil {
		t.Fatalf("county verifies: %v", err)
	}
	w.syncAll(t)
	for tier, rec := range w.atTiers(t, w.phoneA, dissatisfied) {
		if p := rec.GetProblem(); p.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED || p.GetVerifiedByWorkerId() != w.inspector {
			t.Errorf("%s: problem verified at the county is %v", tier, p.GetStatus())
		}
	}

	// Illegal moves, refused by the SDK with the rule.
	q := w.problem(t, w.phoneA, floor)
	sdkRefuses := func(name string, p *fieldsyncv1.Problem, reason fieldsyncv1.FieldErrorReason) {
		t.Helper()
		var verr *fieldsync.ValidationError
		err := w.phoneA.SaveProblem(ctx, p)
		if !errors.As(err, &verr) || verr.Fields[0].Reason != reason {
			t.Errorf("SDK %s: %v, want a %v field error", name, err, reason)
		}
	}
	skip := proto.Clone(q).(*fieldsyncv1.Problem)
	skip.Status, skip.Measure, skip.RectifiedAt, skip.RectifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, "扩建", timestamppb.New(time.Now()), w.doctor
	skip.VerifiedAt, skip.VerifiedByWorkerId = timestamppb.New(time.Now()), w.staff
	sdkRefuses("open → verified", skip, fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_TRANSITION)
	reopen := proto.Clone(q).(*fieldsyncv1.Problem)
	reopen.Status = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED
	reopen.Measure, reopen.RectifiedAt, reopen.RectifiedByWorkerId = "扩建", timestamppb.New(time.Now()), w.doctor
	if err := w.phoneA.SaveProblem(ctx, reopen); err != nil {
		t.Fatal(err)
	}
	byDoctor := proto.Clone(reopen).(*fieldsyncv1.Problem)
	byDoctor.Status, byDoctor.VerifiedAt, byDoctor.VerifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, timestamppb.New(time.Now()), uuid.Must(uuid.NewV7()).String()
	sdkRefuses("verified by a worker the phone does not know", byDoctor, fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_NOT_ALLOWED)
	byDoctor.VerifiedByWorkerId = w.doctor
	sdkRefuses("verified by who rectified it", byDoctor, fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_NOT_ALLOWED)
	back := proto.Clone(reopen).(*fieldsyncv1.Problem)
	back.Status = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN
	sdkRefuses("reopened without a reason", back, fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_REQUIRED)

	// An old app on phone B pushes the same illegal moves, with a household
	// edit behind them: the township refuses each, the edit passes.
	qb := w.problem(t, w.phoneB, floor) // still open on B
	edit, err := w.phoneB.Get(ctx, w.household)
	if err != nil {
		t.Fatal(err)
	}
	edit.GetHousehold().Notes = "phoneB: after illegal moves"
	skipB := proto.Clone(skip).(*fieldsyncv1.Problem)
	skipB.Description = qb.GetDescription()
	rawWrite(t, w.phoneB, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: skipB}}, edit)
	w.phoneB.syncUntilOK(t, 3)
	if r := rejection(t, w.phoneB, floor); !strings.Contains(fieldErrorsText(r), "TRANSITION") {
		t.Errorf("township refused the skipped rectification as %s", fieldErrorsText(r))
	}
	w.relay(t)
	for tier, rec := range w.atTiers(t, w.phoneA, w.household) {
		if tier != w.phoneA.name && rec.GetHousehold().GetNotes() != "phoneB: after illegal moves" {
			t.Errorf("%s: the edit behind the refused move: notes %q", tier, rec.GetHousehold().GetNotes())
		}
	}

	// The phone enrolled at the county pushes a verification by a village
	// doctor: the county refuses it.
	w.syncAll(t)
	qd := w.problem(t, w.direct, floor) // rectified by phone A
	if qd.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED {
		t.Fatalf("direct phone holds the floor problem as %v, want RECTIFIED", qd.GetStatus())
	}
	vd := proto.Clone(qd).(*fieldsyncv1.Problem)
	vd.Status, vd.VerifiedAt, vd.VerifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, timestamppb.New(time.Now()), w.newPatient // not a worker
	rawWrite(t, w.direct, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: vd}})
	w.direct.syncUntilOK(t, 3)
	if r := rejection(t, w.direct, floor); !strings.Contains(fieldErrorsText(r), "NOT_ALLOWED") {
		t.Errorf("county refused the verification as %s", fieldErrorsText(r))
	}
	// The township verifies it (a server may), and the county agrees.
	vt := proto.Clone(qd).(*fieldsyncv1.Problem)
	vt.Status, vt.VerifiedAt, vt.VerifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, timestamppb.New(time.Now()), w.staff
	if _, err := w.town.srv.Save(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: vt}}); err != nil {
		t.Fatalf("township verifies: %v", err)
	}
	vt.VerifiedByWorkerId = w.doctor
	var invalid *server.InvalidRecordError
	if _, err := w.county.srv.Save(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: vt}}); !errors.As(err, &invalid) {
		t.Errorf("county verifying by who rectified it: %v, want an InvalidRecordError", err)
	}
	w.syncAll(t)
	for tier, rec := range w.atTiers(t, w.phoneB, floor) {
		if rec.GetProblem().GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED {
			t.Errorf("%s: floor problem is %v after the township verified it", tier, rec.GetProblem().GetStatus())
		}
	}
	checkIndicatorsAgree(t, w.town, w.county, rulesTownship)
}

// checkIndicatorsAgree: once the tiers have synced, the township and the
// county, holding the same merged records of the township, give the same
// indicators for it and each of its villages (the devices count aside: each
// counts the phones it knows of).
func checkIndicatorsAgree(t *testing.T, town, county *tierServer, township string) {
	t.Helper()
	report := func(s *tierServer) map[string]map[string][2]int64 {
		resp, err := s.srv.IndicatorsReport(t.Context(), &fieldsyncv1.IndicatorsRequest{AreaCode: township})
		if err != nil {
			t.Fatalf("%s: indicators: %v", s.name, err)
		}
		out := map[string]map[string][2]int64{}
		for _, r := range resp.GetRows() {
			out[r.GetAreaCode()] = map[string][2]int64{}
			for _, v := range r.GetValues() {
				if v.GetKey() != "devices_not_synced_3d" {
					out[r.GetAreaCode()][v.GetKey()] = [2]int64{v.GetNumerator(), v.GetDenominator()}
				}
			}
		}
		return out
	}
	got, want := report(town), report(county)
	if len(got) < 2 || len(got) != len(want) {
		t.Fatalf("the township reports %d areas, the county %d for the township", len(got), len(want))
	}
	counted := 0
	for area, vals := range want {
		for key, v := range vals {
			if got[area][key] != v {
				t.Errorf("%s %s: township %v, county %v", area, key, got[area][key], v)
			}
			counted += int(v[0] + v[1])
		}
	}
	if counted == 0 {
		t.Error("both tiers count nothing: the comparison proves nothing")
	}
}

// problem returns d's problem id.
func (w *rulesWorld) problem(t *testing.T, d *device, id string) *fieldsyncv1.Problem {
	t.Helper()
	p, err := d.Problem(t.Context(), id)
	if err != nil {
		t.Fatalf("%s: Problem(%s): %v", d.name, id, err)
	}
	return p
}

// TestClinicAndFlagThresholdsAcrossTiers: the clinic audit's floor area
// (60 m²) and essential medicines (80 kinds), and the county's self-pay
// threshold (9.5 %), each at, just below and just above the value: the phone
// raises the problem or flag exactly below the standard (above it, for the
// self-pay share), and the township and the county hold exactly what the
// phone raised.
func TestClinicAndFlagThresholdsAcrossTiers(t *testing.T) {
	w := newRulesWorld(t)
	ctx := t.Context()
	yes, no := proto.Bool(true), proto.Bool(false)
	type raised struct {
		id   string
		want bool
		name string
	}
	var checks []raised
	for _, tc := range []struct {
		floor float64
		kinds int32
		want  string // the item raised, "" for none
	}{
		{59.9, 90, "clinic.floor_area"}, {60, 90, ""}, {60.1, 90, ""},
		{70, 79, "clinic.drugs.essential_kinds"}, {70, 80, ""}, {70, 81, ""},
	} {
		a := &fieldsyncv1.ClinicAudit{
			Id: uuid.Must(uuid.NewV7()).String(), AreaCode: rulesVillage, ClinicId: w.clinic, AuditorWorkerId: w.doctor,
			AuditedAt:                timestamppb.New(w.now.Add(-time.Hour)),
			ConsultationRoomSeparate: yes, TreatmentRoomSeparate: yes, PublicHealthRoomSeparate: yes, PharmacySeparate: yes,
			FloorAreaM2: proto.Float64(tc.floor), LicensedDoctorPresent: yes,
			HasStethoscope: yes, HasThermometer: yes, HasSphygmomanometer: yes, HasExaminationBed: yes,
			EssentialDrugKinds: proto.Int32(tc.kinds), ExpiredDrugsFound: no, HealthSupplementsFound: no, OffListDrugsFound: no,
			HasWater: yes, HasElectricity: yes, HasHeating: yes, HasOperatingFunds: yes,
			// The registry's numbers, stated right: no 一口清 problem.
			StatedNumbers: &fieldsyncv1.StatedNumbers{RegisteredPoorPeople: proto.Int32(3), SickPeople: proto.Int32(3),
				ChronicHandbooksIssued: proto.Int32(3), OnePersonPlansHeld: proto.Int32(3), MajorIllnessTreated: proto.Int32(0)},
		}
		res, err := w.phoneA.SaveRecord(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_ClinicAudit{ClinicAudit: a}})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[tc.want != ""]; res.Problems != want {
			t.Errorf("audit of %g m², %d kinds raised %d problems, want %d", tc.floor, tc.kinds, res.Problems, want)
		}
		for _, item := range []string{"clinic.floor_area", "clinic.drugs.essential_kinds"} {
			checks = append(checks, raised{survey.ProblemID(a.GetId(), item, ""), item == tc.want, fmt.Sprintf("%s at %g m², %d kinds", item, tc.floor, tc.kinds)})
		}
	}
	// 9.49 %, exactly 9.5 % (not above it) and 9.51 % of 10,000 yuan.
	for _, tc := range []struct {
		fen  int64
		want bool
	}{{94900, false}, {95000, false}, {95100, true}} {
		v := &fieldsyncv1.HouseholdVisit{
			Id: uuid.Must(uuid.NewV7()).String(), AreaCode: rulesVillage, HouseholdId: w.household, VisitorWorkerId: w.doctor,
			StartedAt: timestamppb.New(w.now.Add(-time.Hour)),
			Findings: []*fieldsyncv1.MemberFinding{{
				PersonId: w.dm, Presence: fieldsyncv1.Presence_PRESENCE_PRESENT, ContractSigned: yes, ContractServedOnTime: yes,
				HealthRecordExists: yes, OnePersonPlanPresent: yes, OutOfPocketFen: proto.Int64(tc.fen), TotalMedicalCostFen: proto.Int64(1000000),
			}},
		}
		if _, err := w.phoneA.SaveRecord(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}}); err != nil {
			t.Fatal(err)
		}
		checks = append(checks, raised{survey.RiskFlagID(v.GetId(), w.dm, fieldsyncv1.RiskReason_RISK_REASON_SELF_PAY_SHARE.String()), tc.want,
			fmt.Sprintf("risk flag at %d fen of 1,000,000", tc.fen)})
	}
	w.syncAll(t)
	for _, c := range checks {
		rid, err := wire.RecordID(c.id)
		if err != nil {
			t.Fatal(err)
		}
		_, onPhone := w.phoneA.Get(ctx, c.id)
		got := map[string]bool{w.phoneA.name: onPhone == nil}
		for _, srv := range []*tierServer{w.town, w.county} {
			_, got[srv.name] = tierRecord(t, srv, rid)
		}
		for tier, has := range got {
			if has != c.want {
				t.Errorf("%s: %s raised %v, want %v", tier, c.name, has, c.want)
			}
		}
	}
}
