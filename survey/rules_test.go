package survey_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

func date(y, m, d int32) *fieldsyncv1.Date { return &fieldsyncv1.Date{Year: y, Month: m, Day: d} }

// TestAddMonths checks "in 3 months" on month ends and leap years: the same
// day, or the last day of a shorter month.
func TestAddMonths(t *testing.T) {
	for _, tc := range []struct {
		from *fieldsyncv1.Date
		n    int
		want *fieldsyncv1.Date
	}{
		{date(2026, 11, 30), 3, date(2027, 2, 28)},
		{date(2027, 11, 30), 3, date(2028, 2, 29)}, // leap year
		{date(2026, 11, 29), 3, date(2027, 2, 28)},
		{date(2026, 11, 28), 3, date(2027, 2, 28)},
		{date(2026, 11, 27), 3, date(2027, 2, 27)},
		{date(2026, 1, 31), 3, date(2026, 4, 30)},
		{date(2026, 3, 31), 3, date(2026, 6, 30)},
		{date(2026, 5, 31), 3, date(2026, 8, 31)},
		{date(2026, 10, 15), 3, date(2027, 1, 15)},
		{date(2023, 11, 30), 3, date(2024, 2, 29)},
		{date(2099, 11, 30), 3, date(2100, 2, 28)}, // 2100 is not a leap year
		{date(2026, 3, 31), -1, date(2026, 2, 28)},
		{date(2026, 1, 15), -2, date(2025, 11, 15)},
	} {
		if got := survey.AddMonths(tc.from, tc.n); !proto.Equal(got, tc.want) {
			t.Errorf("AddMonths(%s, %d) = %s, want %s", survey.FormatDate(tc.from), tc.n, survey.FormatDate(got), survey.FormatDate(tc.want))
		}
	}
}

func TestAddDays(t *testing.T) {
	for _, tc := range []struct {
		from *fieldsyncv1.Date
		want *fieldsyncv1.Date
	}{
		{date(2026, 12, 20), date(2027, 1, 3)},
		{date(2028, 2, 20), date(2028, 3, 5)}, // 29 February counted
		{date(2027, 2, 20), date(2027, 3, 6)},
		{date(2026, 3, 25), date(2026, 4, 8)},
	} {
		if got := survey.AddDays(tc.from, 14); !proto.Equal(got, tc.want) {
			t.Errorf("AddDays(%s, 14) = %s, want %s", survey.FormatDate(tc.from), survey.FormatDate(got), survey.FormatDate(tc.want))
		}
	}
}

// TestScheduleInChinaTime checks that the follow-up's day is its day in China
// Standard Time: 23:30 UTC on 29 November is 30 November in China, so "in 3
// months" is 28 February and "within 2 weeks" 14 December.
func TestScheduleInChinaTime(t *testing.T) {
	for _, tc := range []struct {
		at                time.Time
		controlled, unctl *fieldsyncv1.Date
	}{
		{time.Date(2026, 11, 29, 15, 59, 0, 0, time.UTC), date(2027, 2, 28), date(2026, 12, 13)}, // 23:59 CST on the 29th
		{time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC), date(2027, 2, 28), date(2026, 12, 14)},  // 00:00 CST on the 30th
		{time.Date(2026, 11, 29, 23, 30, 0, 0, time.UTC), date(2027, 2, 28), date(2026, 12, 14)},
		{time.Date(2026, 11, 27, 15, 59, 0, 0, time.UTC), date(2027, 2, 27), date(2026, 12, 11)},
		{time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC), date(2027, 2, 28), date(2026, 12, 12)},
	} {
		f := exampleFollowUp()
		f.FollowedUpAt = timestamppb.New(tc.at)
		if got := survey.AssessFollowUp(f).NextDue; !proto.Equal(got, tc.controlled) {
			t.Errorf("controlled at %v: next due %s, want %s", tc.at, survey.FormatDate(got), survey.FormatDate(tc.controlled))
		}
		f.SystolicMmhg = proto.Int32(150)
		if got := survey.AssessFollowUp(f).NextDue; !proto.Equal(got, tc.unctl) {
			t.Errorf("uncontrolled at %v: next due %s, want %s", tc.at, survey.FormatDate(got), survey.FormatDate(tc.unctl))
		}
	}
}

// TestFollowUpRules is the table of the follow-up standard's thresholds: at,
// just below and just above each, what DeriveFollowUp makes of a follow-up
// the doctor classified CONTROLLED, due in 6 months, with no referral, and
// that Validate refuses that follow-up as typed, naming the rule and value.
func TestFollowUpRules(t *testing.T) {
	const (
		ctl  = fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED
		unc  = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
		two  = "2026-12-04" // 14 days after 2026-11-20
		tri  = "2027-02-20" // 3 months after
		none = ""
	)
	type vitals struct {
		disease  fieldsyncv1.ChronicDisease
		sbp, dbp int32
		glucose  float64
	}
	htn := func(s, d int32) vitals { return vitals{hypertension, s, d, 0} }
	dm := func(g float64) vitals { return vitals{diabetes, 120, 80, g} }
	for _, tc := range []struct {
		v      vitals
		class  fieldsyncv1.Classification
		urgent bool
		due    string
		msg    string // in Validate's errors for the typed record; none when it is valid
	}{
		{htn(139, 80), ctl, false, tri, none},
		{htn(140, 80), unc, false, two, "systolic 140 ≥ 140: control is unsatisfactory"},
		{htn(141, 80), unc, false, two, "systolic 141 ≥ 140"},
		{htn(130, 89), ctl, false, tri, none},
		{htn(130, 90), unc, false, two, "diastolic 90 ≥ 90"},
		{htn(130, 91), unc, false, two, "diastolic 91 ≥ 90"},
		{htn(179, 100), unc, false, two, "systolic 179 ≥ 140"},
		{htn(180, 100), unc, true, two, "systolic 180 ≥ 180 requires an urgent referral"},
		{htn(181, 100), unc, true, two, "systolic 181 ≥ 180 requires an urgent referral"},
		{htn(170, 109), unc, false, two, "systolic 170 ≥ 140"},
		{htn(170, 110), unc, true, two, "diastolic 110 ≥ 110 requires an urgent referral"},
		{htn(150, 110), unc, true, two, "diastolic 110 ≥ 110 requires an urgent referral"},
		{htn(150, 111), unc, true, two, "diastolic 111 ≥ 110 requires an urgent referral"},
		{htn(185, 115), unc, true, two, "systolic 185 ≥ 180 requires an urgent referral"},
		{dm(6.9), ctl, false, tri, none},
		{dm(7.0), unc, false, two, "fasting glucose 7 ≥ 7 mmol/L: control is unsatisfactory"},
		{dm(7.1), unc, false, two, "fasting glucose 7.1 ≥ 7 mmol/L"},
		{dm(16.6), unc, false, two, "fasting glucose 16.6 ≥ 7 mmol/L"},
		{dm(16.7), unc, true, two, "fasting glucose 16.7 ≥ 16.7 mmol/L requires an urgent referral"},
		{dm(16.8), unc, true, two, "fasting glucose 16.8 ≥ 16.7 mmol/L requires an urgent referral"},
		{dm(4.0), ctl, false, tri, none},
		{dm(3.9), unc, true, two, "fasting glucose 3.9 ≤ 3.9 mmol/L requires an urgent referral"},
		{dm(3.8), unc, true, two, "fasting glucose 3.8 ≤ 3.9 mmol/L requires an urgent referral"},
	} {
		name := fmt.Sprintf("%v %d/%d glucose %g", tc.v.disease, tc.v.sbp, tc.v.dbp, tc.v.glucose)
		f := exampleFollowUp()
		f.Disease = tc.v.disease
		f.SystolicMmhg, f.DiastolicMmhg = proto.Int32(tc.v.sbp), proto.Int32(tc.v.dbp)
		if tc.v.glucose != 0 {
			f.FastingGlucoseMmolL = proto.Float64(tc.v.glucose)
		}
		f.NextDueOn = date(2027, 5, 20) // six months: laxer than any rule
		d := survey.DeriveFollowUp(f)
		if d.GetClassification() != tc.class || d.GetReferral().GetUrgent() != tc.urgent || survey.FormatDate(d.GetNextDueOn()) != min(tc.due, "2027-05-20") {
			t.Errorf("%s: derived %v urgent=%v due %s; want %v urgent=%v due %s", name,
				d.GetClassification(), d.GetReferral().GetUrgent(), survey.FormatDate(d.GetNextDueOn()), tc.class, tc.urgent, tc.due)
		}
		if errs := survey.Validate(followUpRecord(d), now); errs != nil {
			t.Errorf("%s: the derived follow-up is invalid: %v", name, errs)
		}
		f.NextDueOn = date(2027, 2, 20) // three months: lax only when the rule says 2 weeks
		errs := survey.Validate(followUpRecord(f), now)
		switch {
		case tc.msg == none && errs != nil:
			t.Errorf("%s as typed: %v, want valid", name, errs)
		case tc.msg != none && !strings.Contains(fmt.Sprint(errs), tc.msg):
			t.Errorf("%s as typed: %v, want an error saying %q", name, errs, tc.msg)
		}
		for _, e := range errs {
			if e.Reason != fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_RULE {
				t.Errorf("%s: %v has reason %v, want RULE", name, e, e.Reason)
			}
		}
	}
}

func followUpRecord(f *fieldsyncv1.FollowUp) *fieldsyncv1.Record {
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: f}}
}

// TestDoctorMayBeStricter checks that DeriveFollowUp keeps what the doctor
// made stricter, and that for severe mental disorder and tuberculosis the
// doctor's schedule stands.
func TestDoctorMayBeStricter(t *testing.T) {
	f := exampleFollowUp() // 132/84: 3 months
	f.NextDueOn = date(2026, 12, 1)
	f.Referral = &fieldsyncv1.Referral{ToFacility: "县医院", Reason: "复查"}
	f.Classification = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
	d := survey.DeriveFollowUp(f)
	if !proto.Equal(d, f) {
		t.Errorf("a stricter doctor's follow-up was changed:\n got %v\nwant %v", d, f)
	}
	if errs := survey.Validate(followUpRecord(f), now); errs != nil {
		t.Errorf("stricter follow-up: %v", errs)
	}
	// UNCONTROLLED by the doctor at normal values: 2 weeks, not 3 months.
	f.NextDueOn = date(2027, 2, 20)
	if d := survey.DeriveFollowUp(f); survey.FormatDate(d.GetNextDueOn()) != "2026-12-04" {
		t.Errorf("doctor's UNCONTROLLED: next due %s, want 2026-12-04", survey.FormatDate(d.GetNextDueOn()))
	}
	for _, disease := range []fieldsyncv1.ChronicDisease{
		fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_SEVERE_MENTAL_DISORDER, fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_PULMONARY_TUBERCULOSIS,
	} {
		f := exampleFollowUp()
		f.Disease, f.NextDueOn = disease, date(2027, 5, 20)
		f.SystolicMmhg, f.DiastolicMmhg = proto.Int32(150), proto.Int32(95)
		d := survey.DeriveFollowUp(f)
		if !proto.Equal(d, f) {
			t.Errorf("%v: the doctor's schedule was changed: %v", disease, d)
		}
		f.SystolicMmhg = proto.Int32(185) // a blood-pressure emergency refers every patient
		if d := survey.DeriveFollowUp(f); !d.GetReferral().GetUrgent() || survey.FormatDate(d.GetNextDueOn()) != "2027-05-20" {
			t.Errorf("%v at 185 mmHg: referral %v, due %s; want urgent, the doctor's date", disease, d.GetReferral(), survey.FormatDate(d.GetNextDueOn()))
		}
	}
}

// TestProblemTransitions is the ledger's workflow: every allowed move, and
// every illegal one refused with the reason.
func TestProblemTransitions(t *testing.T) {
	const (
		open      = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN
		rectified = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED
		verified  = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED
		doctor    = "0197a000-0000-7000-8000-0000000000d1"
		staff     = "0197a000-0000-7000-8000-0000000000d2"
	)
	at := func(h int) *timestamppb.Timestamp { return ts(now.Add(time.Duration(h-10) * time.Hour)) }
	state := func(s fieldsyncv1.ProblemStatus, edit ...func(*fieldsyncv1.Problem)) *fieldsyncv1.Problem {
		p := exampleProblem()
		p.Status = s
		if s != open {
			p.RectifiedAt, p.RectifiedByWorkerId = at(1), doctor
		}
		if s == verified {
			p.VerifiedAt, p.VerifiedByWorkerId = at(2), staff
		}
		for _, e := range edit {
			e(p)
		}
		return p
	}
	reopened := func(h int) func(*fieldsyncv1.Problem) {
		return func(p *fieldsyncv1.Problem) {
			p.ReopenReason, p.ReopenedAt, p.ReopenedByWorkerId = "复查发现仍未整改", at(h), staff
		}
	}
	for _, tc := range []struct {
		name       string
		prev, next *fieldsyncv1.Problem
		path       string // of the error; "" when allowed
	}{
		{"raised open", nil, state(open), ""},
		{"raised rectified", nil, state(rectified), "status"},
		{"raised verified", nil, state(verified), "status"},
		{"rectify", state(open), state(rectified), ""},
		{"verify", state(rectified), state(verified), ""},
		{"skip rectified", state(open), state(verified), "status"},
		{"verified back to rectified", state(verified), state(rectified), "status"},
		{"reopen verified", state(verified), state(open, reopened(3)), ""},
		{"reopen rectified", state(rectified), state(open, reopened(3)), ""},
		{"reopen without reason", state(verified), state(open), "reopen_reason"},
		{"reopen again, same time", state(verified, reopened(3)), state(open, reopened(3)), "reopened_at"},
		{"reopen again, later", state(verified, reopened(3)), state(open, reopened(4)), ""},
		{"edit an open problem", state(open), state(open, func(p *fieldsyncv1.Problem) { p.Measure = "另定措施" }), ""},
		{"change who rectified", state(rectified), state(rectified, func(p *fieldsyncv1.Problem) { p.RectifiedByWorkerId = staff }), "rectified_by_worker_id"},
		{"change when verified", state(verified), state(verified, func(p *fieldsyncv1.Problem) { p.VerifiedAt = at(5) }), "verified_at"},
		// The rectifier verifying while rewriting who rectified it.
		{"verify and rewrite the rectifier", state(rectified), state(verified, func(p *fieldsyncv1.Problem) {
			p.RectifiedByWorkerId, p.VerifiedByWorkerId = staff, doctor
		}), "rectified_by_worker_id"},
		{"verify and rewrite the measure", state(rectified), state(verified, func(p *fieldsyncv1.Problem) { p.Measure = "另报" }), "measure"},
	} {
		errs := survey.ProblemTransition(tc.prev, tc.next)
		switch {
		case tc.path == "" && errs != nil:
			t.Errorf("%s: %v, want allowed", tc.name, errs)
		case tc.path != "" && (len(errs) == 0 || errs[0].Path != tc.path):
			t.Errorf("%s: %v, want an error at %s", tc.name, errs, tc.path)
		}
	}
	// What each state requires of the record alone.
	for _, tc := range []struct {
		name string
		p    *fieldsyncv1.Problem
		path string
	}{
		{"rectified without measure", state(rectified, func(p *fieldsyncv1.Problem) { p.Measure = "" }), "measure"},
		{"rectified without who", state(rectified, func(p *fieldsyncv1.Problem) { p.RectifiedByWorkerId = "" }), "rectified_by_worker_id"},
		{"rectified without when", state(rectified, func(p *fieldsyncv1.Problem) { p.RectifiedAt = nil }), "rectified_at"},
		{"verified by the rectifier", state(verified, func(p *fieldsyncv1.Problem) { p.VerifiedByWorkerId = doctor }), "verified_by_worker_id"},
		{"verified before rectified", state(verified, func(p *fieldsyncv1.Problem) { p.VerifiedAt = at(0) }), "verified_at"},
		{"reopened without reason", state(open, reopened(3), func(p *fieldsyncv1.Problem) { p.ReopenReason = "" }), "reopen_reason"},
		{"derived id of another item", state(open, func(p *fieldsyncv1.Problem) {
			p.Id = survey.ProblemID(p.SourceRecordId, "clinic.doctor", "")
		}), "id"},
	} {
		errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: tc.p}}, now)
		if len(errs) == 0 || errs[0].Path != tc.path {
			t.Errorf("%s: Validate = %v, want an error at %s", tc.name, errs, tc.path)
		}
	}
	p := state(open)
	p.Id = survey.ProblemID(p.SourceRecordId, p.Item, p.PersonId)
	if errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: p}}, now); errs != nil {
		t.Errorf("a problem with its derived id: %v", errs)
	}
}

func TestMayVerify(t *testing.T) {
	for _, tc := range []struct {
		w    *fieldsyncv1.Worker
		want bool
	}{
		{nil, false},
		{&fieldsyncv1.Worker{Role: fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR}, false},
		{&fieldsyncv1.Worker{Role: fieldsyncv1.WorkerRole_WORKER_ROLE_TOWNSHIP_STAFF}, true},
		{&fieldsyncv1.Worker{Role: fieldsyncv1.WorkerRole_WORKER_ROLE_COUNTY_INSPECTOR}, true},
		{&fieldsyncv1.Worker{Role: fieldsyncv1.WorkerRole_WORKER_ROLE_TOWNSHIP_STAFF, LeftAt: ts(now)}, false},
	} {
		if got := survey.MayVerify(tc.w); got != tc.want {
			t.Errorf("MayVerify(%v) = %v, want %v", tc.w, got, tc.want)
		}
	}
}

// TestDerivedIDs checks that the same finding gets the same id anywhere, and
// different findings different ids.
func TestDerivedIDs(t *testing.T) {
	a := survey.ProblemID(recordID, "clinic.floor_area", "")
	if b := survey.ProblemID(recordID, "clinic.floor_area", ""); a != b {
		t.Errorf("ProblemID differs between calls: %s, %s", a, b)
	}
	seen := map[string]string{a: "floor"}
	for name, id := range map[string]string{
		"item":    survey.ProblemID(recordID, "clinic.doctor", ""),
		"person":  survey.ProblemID(recordID, "clinic.floor_area", personID),
		"source":  survey.ProblemID(personID, "clinic.floor_area", ""),
		"flag":    survey.RiskFlagID(recordID, "", "clinic.floor_area"),
		"flag(2)": survey.RiskFlagID(recordID, personID, "RISK_REASON_SELF_PAY_SHARE"),
	} {
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share id %s", name, other, id)
		}
		seen[id] = name
	}
}

// TestAbsenceCertificate: an absent member away or unreachable whose finding
// lacks a service-111 measure needs the village committee certificate.
func TestAbsenceCertificate(t *testing.T) {
	cert := &fieldsyncv1.Attachment{Sha256: strings.Repeat("ab", 32), MediaType: "image/jpeg", SizeBytes: 1000}
	for _, tc := range []struct {
		name     string
		reason   fieldsyncv1.AbsenceReason
		contract bool
		cert     *fieldsyncv1.Attachment
		want     bool // a field error at absence_certificate
	}{
		{"away, no contract, no certificate", fieldsyncv1.AbsenceReason_ABSENCE_REASON_WORKING_AWAY, false, nil, true},
		{"unreachable, no contract, no certificate", fieldsyncv1.AbsenceReason_ABSENCE_REASON_UNREACHABLE, false, nil, true},
		{"away, no contract, certificate", fieldsyncv1.AbsenceReason_ABSENCE_REASON_WORKING_AWAY, false, cert, false},
		{"away, contract", fieldsyncv1.AbsenceReason_ABSENCE_REASON_WORKING_AWAY, true, nil, false},
		{"in hospital, no contract", fieldsyncv1.AbsenceReason_ABSENCE_REASON_IN_HOSPITAL, false, nil, false},
		{"at school, no contract", fieldsyncv1.AbsenceReason_ABSENCE_REASON_AT_SCHOOL, false, nil, false},
	} {
		v := exampleVisit()
		f := v.Findings[0]
		f.Presence, f.AbsenceReason, f.AbsenceCertificate = fieldsyncv1.Presence_PRESENCE_ABSENT, tc.reason, tc.cert
		f.ContractSigned, f.HealthRecordExists, f.OnePersonPlanPresent = proto.Bool(tc.contract), proto.Bool(true), nil
		f.Satisfaction, f.DissatisfactionReason = 0, ""
		errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}}, now)
		got := strings.Contains(fmt.Sprint(errs), "findings[0].absence_certificate")
		if got != tc.want {
			t.Errorf("%s: Validate = %v, want certificate error %v", tc.name, errs, tc.want)
		}
	}
}

func TestParseRules(t *testing.T) {
	r, err := survey.ParseRules([]byte(`{"self_pay_threshold_bp": 950, "rectify_days": 15}`))
	if err != nil {
		t.Fatal(err)
	}
	want := survey.DefaultRules()
	want.SelfPayThresholdBP, want.RectifyDays = 950, 15
	if r != want {
		t.Errorf("ParseRules = %+v, want %+v", r, want)
	}
	for _, bad := range []string{
		`{"self_pay_threshold_bp": 20000}`, `{"min_floor_area_m2": -1}`, `{"rectify_days": 400}`,
		`{"selfpay": 1000}`, `{"source": "me"}`, `not json`,
	} {
		if _, err := survey.ParseRules([]byte(bad)); err == nil {
			t.Errorf("ParseRules(%s) accepted", bad)
		}
	}
	if _, err := survey.RulesFromProto(want.Proto(strings.Repeat("县", 201))); err == nil {
		t.Error("rules from a handshake with a 201-character source accepted")
	}
	got, err := survey.RulesFromProto(want.Proto("532523 rules.json"))
	if err != nil || got != want {
		t.Errorf("rules through the handshake: %+v, %v; want %+v", got, err, want)
	}
}
