package survey_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

const (
	reqd      = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_REQUIRED
	malformed = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_MALFORMED
	outRange  = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_OUT_OF_RANGE
	level     = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_WRONG_AREA_LEVEL
	future    = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_IN_FUTURE
	unknown   = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_UNKNOWN_ENUM
	conflict  = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_INCONSISTENT
)

func examples() map[string]*fieldsyncv1.Record {
	return map[string]*fieldsyncv1.Record{
		"household":       {Body: &fieldsyncv1.Record_Household{Household: exampleHousehold()}},
		"person":          {Body: &fieldsyncv1.Record_Person{Person: examplePerson()}},
		"clinic":          {Body: &fieldsyncv1.Record_Clinic{Clinic: exampleClinic()}},
		"worker":          {Body: &fieldsyncv1.Record_Worker{Worker: exampleWorker()}},
		"household_visit": {Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: exampleVisit()}},
		"clinic_audit":    {Body: &fieldsyncv1.Record_ClinicAudit{ClinicAudit: exampleAudit()}},
		"follow_up":       {Body: &fieldsyncv1.Record_FollowUp{FollowUp: exampleFollowUp()}},
		"problem":         {Body: &fieldsyncv1.Record_Problem{Problem: exampleProblem()}},
		"risk_flag":       {Body: &fieldsyncv1.Record_RiskFlag{RiskFlag: exampleRiskFlag()}},
	}
}

func TestValidateAcceptsRealisticRecords(t *testing.T) {
	for kind, rec := range examples() {
		if errs := survey.Validate(rec, now); errs != nil {
			t.Errorf("%s: Validate = %v, want no errors", kind, errs)
		}
	}
}

// hasError reports whether errs holds an error at path with reason.
func hasError(errs []survey.FieldError, path string, reason fieldsyncv1.FieldErrorReason) bool {
	for _, e := range errs {
		if e.Path == path && e.Reason == reason && e.Message != "" {
			return true
		}
	}
	return false
}

// broken is one broken variant of a realistic record and the error it must get.
type broken struct {
	name   string
	rec    func() *fieldsyncv1.Record
	path   string
	reason fieldsyncv1.FieldErrorReason
}

func household(f func(*fieldsyncv1.Household)) func() *fieldsyncv1.Record {
	return func() *fieldsyncv1.Record {
		h := exampleHousehold()
		f(h)
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: h}}
	}
}

func person(f func(*fieldsyncv1.Person)) func() *fieldsyncv1.Record {
	return func() *fieldsyncv1.Record {
		p := examplePerson()
		f(p)
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: p}}
	}
}

func visit(f func(*fieldsyncv1.HouseholdVisit)) func() *fieldsyncv1.Record {
	return func() *fieldsyncv1.Record {
		v := exampleVisit()
		f(v)
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}}
	}
}

func audit(f func(*fieldsyncv1.ClinicAudit)) func() *fieldsyncv1.Record {
	return func() *fieldsyncv1.Record {
		a := exampleAudit()
		f(a)
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_ClinicAudit{ClinicAudit: a}}
	}
}

func followUp(f func(*fieldsyncv1.FollowUp)) func() *fieldsyncv1.Record {
	return func() *fieldsyncv1.Record {
		u := exampleFollowUp()
		f(u)
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: u}}
	}
}

func other(f func(*fieldsyncv1.Record)) func() *fieldsyncv1.Record {
	return func() *fieldsyncv1.Record {
		r := &fieldsyncv1.Record{}
		f(r)
		return r
	}
}

func brokenRecords() []broken {
	return []broken{
		{"no body", other(func(r *fieldsyncv1.Record) {}), "body", reqd},
		{"no id", household(func(h *fieldsyncv1.Household) { h.Id = "" }), "id", reqd},
		{"id not a uuid", household(func(h *fieldsyncv1.Household) { h.Id = "household-1" }), "id", malformed},
		{"id upper case", household(func(h *fieldsyncv1.Household) { h.Id = strings.ToUpper(householdID) }), "id", malformed},
		{"id uuid v4", household(func(h *fieldsyncv1.Household) { h.Id = "6ba7b810-9dad-41d1-80b4-00c04fd430c8" }), "id", malformed},
		{"no area", household(func(h *fieldsyncv1.Household) { h.AreaCode = "" }), "area_code", reqd},
		{"area 11 digits", household(func(h *fieldsyncv1.Household) { h.AreaCode = "53252310120" }), "area_code", malformed},
		{"area 13 digits", household(func(h *fieldsyncv1.Household) { h.AreaCode = "5325231012011" }), "area_code", malformed},
		{"area township on household", household(func(h *fieldsyncv1.Household) { h.AreaCode = "532523101000" }), "area_code", level},
		{"area county on clinic", other(func(r *fieldsyncv1.Record) {
			c := exampleClinic()
			c.AreaCode = "532523000000"
			r.Body = &fieldsyncv1.Record_Clinic{Clinic: c}
		}), "area_code", level},
		{"no head name", household(func(h *fieldsyncv1.Household) { h.HeadName = "" }), "head_name", reqd},
		{"no status", household(func(h *fieldsyncv1.Household) { h.Status = 0 }), "status", reqd},
		{"unknown status", household(func(h *fieldsyncv1.Household) { h.Status = 42 }), "status", unknown},
		{"latitude beyond pole", household(func(h *fieldsyncv1.Household) { h.Location.Latitude = 91 }), "location.latitude", outRange},
		{"no household", person(func(p *fieldsyncv1.Person) { p.HouseholdId = "" }), "household_id", reqd},
		{"no id number", person(func(p *fieldsyncv1.Person) { p.IdNumber = nil }), "id_number", reqd},
		{"clear id number synced", person(func(p *fieldsyncv1.Person) { p.IdNumber.Masked = zhangID }), "id_number.masked", malformed},
		{"no id hash", person(func(p *fieldsyncv1.Person) { p.IdNumber.KeyedHash = nil }), "id_number.keyed_hash", malformed},
		{"no sex", person(func(p *fieldsyncv1.Person) { p.Sex = 0 }), "sex", reqd},
		{"born tomorrow", person(func(p *fieldsyncv1.Person) { p.BirthDate = survey.Today(now.AddDate(0, 0, 1)) }), "birth_date", future},
		{"born 30 february", person(func(p *fieldsyncv1.Person) { p.BirthDate = &fieldsyncv1.Date{Year: 1958, Month: 2, Day: 30} }), "birth_date", malformed},
		{"no residency", person(func(p *fieldsyncv1.Person) { p.Residency = 0 }), "residency", reqd},
		{"other disease unnamed", person(func(p *fieldsyncv1.Person) {
			p.Conditions[0].Disease = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_OTHER_LISTED
		}), "conditions[0].other_name", reqd},
		{"contract without doctor", person(func(p *fieldsyncv1.Person) { p.Contract.DoctorWorkerId = "" }), "contract.doctor_worker_id", reqd},
		{"certificate bad hash", person(func(p *fieldsyncv1.Person) {
			p.VillageCertificate = &fieldsyncv1.Attachment{Sha256: "abc"}
		}), "village_certificate.sha256", malformed},
		{"doctor without licence", other(func(r *fieldsyncv1.Record) {
			w := exampleWorker()
			w.LicenceNumber = ""
			r.Body = &fieldsyncv1.Record_Worker{Worker: w}
		}), "licence_number", reqd},
		{"visit without findings", visit(func(v *fieldsyncv1.HouseholdVisit) { v.Findings = nil }), "findings", reqd},
		{"visit in future", visit(func(v *fieldsyncv1.HouseholdVisit) { v.StartedAt = ts(now.Add(time.Hour)) }), "started_at", future},
		{"visit ends before start", visit(func(v *fieldsyncv1.HouseholdVisit) { v.EndedAt = ts(now.Add(-3 * time.Hour)) }), "ended_at", conflict},
		{"absent without reason", visit(func(v *fieldsyncv1.HouseholdVisit) { v.Findings[1].AbsenceReason = 0 }), "findings[1].absence_reason", reqd},
		{"present with absence reason", visit(func(v *fieldsyncv1.HouseholdVisit) {
			v.Findings[0].AbsenceReason = fieldsyncv1.AbsenceReason_ABSENCE_REASON_AT_SCHOOL
		}), "findings[0].absence_reason", conflict},
		{"no presence", visit(func(v *fieldsyncv1.HouseholdVisit) { v.Findings[0].Presence = 0 }), "findings[0].presence", reqd},
		{"same member twice", visit(func(v *fieldsyncv1.HouseholdVisit) { v.Findings[1].PersonId = personID }), "findings[1].person_id", conflict},
		{"dissatisfied without reason", visit(func(v *fieldsyncv1.HouseholdVisit) {
			v.Findings[0].Satisfaction = fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED
		}), "findings[0].dissatisfaction_reason", reqd},
		{"out of pocket above total", visit(func(v *fieldsyncv1.HouseholdVisit) { v.Findings[0].OutOfPocketFen = proto.Int64(600001) }), "findings[0].out_of_pocket_fen", conflict},
		{"negative spending", visit(func(v *fieldsyncv1.HouseholdVisit) { v.Findings[0].OutOfPocketFen = proto.Int64(-1) }), "findings[0].out_of_pocket_fen", outRange},
		{"audit without clinic", audit(func(a *fieldsyncv1.ClinicAudit) { a.ClinicId = "" }), "clinic_id", reqd},
		{"audit zero area", audit(func(a *fieldsyncv1.ClinicAudit) { a.FloorAreaM2 = proto.Float64(0) }), "floor_area_m2", outRange},
		{"audit NaN area", audit(func(a *fieldsyncv1.ClinicAudit) { a.FloorAreaM2 = proto.Float64(math.NaN()) }), "floor_area_m2", outRange},
		{"audit negative drugs", audit(func(a *fieldsyncv1.ClinicAudit) { a.EssentialDrugKinds = proto.Int32(-1) }), "essential_drug_kinds", outRange},
		{"covering doctor unnamed", audit(func(a *fieldsyncv1.ClinicAudit) {
			a.CoveringArrangement = fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_TOWNSHIP_SENT
		}), "covering_doctor_name", reqd},
		{"follow-up without disease", followUp(func(u *fieldsyncv1.FollowUp) { u.Disease = 0 }), "disease", reqd},
		{"follow-up without method", followUp(func(u *fieldsyncv1.FollowUp) { u.Method = 0 }), "method", reqd},
		{"follow-up unknown adherence", followUp(func(u *fieldsyncv1.FollowUp) { u.Adherence = 9 }), "adherence", unknown},
		{"follow-up without classification", followUp(func(u *fieldsyncv1.FollowUp) { u.Classification = 0 }), "classification", reqd},
		{"hypertension without pressure", followUp(func(u *fieldsyncv1.FollowUp) { u.SystolicMmhg, u.DiastolicMmhg = nil, nil }), "systolic_mmhg", reqd},
		{"systolic only", followUp(func(u *fieldsyncv1.FollowUp) { u.DiastolicMmhg = nil }), "diastolic_mmhg", conflict},
		{"next due before visit", followUp(func(u *fieldsyncv1.FollowUp) { u.NextDueOn = survey.Today(now.AddDate(0, 0, -1)) }), "next_due_on", conflict},
		{"no next due", followUp(func(u *fieldsyncv1.FollowUp) { u.NextDueOn = nil }), "next_due_on", reqd},
		{"referral nowhere", followUp(func(u *fieldsyncv1.FollowUp) { u.Referral = &fieldsyncv1.Referral{Urgent: true} }), "referral.to_facility", reqd},
		{"mental risk level 6", followUp(func(u *fieldsyncv1.FollowUp) { u.MentalRiskLevel = proto.Int32(6) }), "mental_risk_level", outRange},
		{"verified problem without verifier", other(func(r *fieldsyncv1.Record) {
			p := exampleProblem()
			p.Status = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED
			p.VerifiedAt = ts(now)
			r.Body = &fieldsyncv1.Record_Problem{Problem: p}
		}), "verified_by_worker_id", reqd},
		{"problem without item", other(func(r *fieldsyncv1.Record) {
			p := exampleProblem()
			p.Item = ""
			r.Body = &fieldsyncv1.Record_Problem{Problem: p}
		}), "item", reqd},
		{"risk flag without household", other(func(r *fieldsyncv1.Record) {
			f := exampleRiskFlag()
			f.HouseholdId = ""
			r.Body = &fieldsyncv1.Record_RiskFlag{RiskFlag: f}
		}), "household_id", reqd},
	}
}

func TestValidateRejectsBrokenRecords(t *testing.T) {
	for _, tc := range brokenRecords() {
		t.Run(tc.name, func(t *testing.T) {
			errs := survey.Validate(tc.rec(), now)
			if !hasError(errs, tc.path, tc.reason) {
				t.Errorf("Validate = %v, want %s at %s", errs, tc.reason, tc.path)
			}
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	v := exampleVisit()
	v.AreaCode = "532523101000"
	v.HouseholdId = ""
	v.Findings[1].AbsenceReason = 0
	errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}}, now)
	if len(errs) != 3 {
		t.Fatalf("Validate found %d errors, want 3: %v", len(errs), errs)
	}
}

// TestVitalsRanges checks every plausible-range bound at, just inside and just
// outside it.
func TestVitalsRanges(t *testing.T) {
	for _, tc := range []struct {
		sbp, dbp int32
		path     string // empty when valid
	}{
		{59, 40, "systolic_mmhg"}, {60, 40, ""}, {61, 40, ""},
		{299, 120, ""}, {300, 120, ""}, {301, 120, "systolic_mmhg"},
		{120, 29, "diastolic_mmhg"}, {120, 30, ""}, {120, 31, ""},
		{250, 199, ""}, {250, 200, ""}, {250, 201, "diastolic_mmhg"},
		{120, 119, ""}, {120, 120, "diastolic_mmhg"}, {120, 121, "diastolic_mmhg"},
	} {
		u := exampleFollowUp()
		u.SystolicMmhg, u.DiastolicMmhg = proto.Int32(tc.sbp), proto.Int32(tc.dbp)
		u = survey.DeriveFollowUp(u) // the schedule the values call for
		errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: u}}, now)
		switch {
		case tc.path == "" && errs != nil:
			t.Errorf("SBP %d DBP %d: Validate = %v, want valid", tc.sbp, tc.dbp, errs)
		case tc.path != "" && len(errs) == 0:
			t.Errorf("SBP %d DBP %d: valid, want an error at %s", tc.sbp, tc.dbp, tc.path)
		case tc.path != "" && errs[0].Path != tc.path:
			t.Errorf("SBP %d DBP %d: error at %s, want %s", tc.sbp, tc.dbp, errs[0].Path, tc.path)
		}
	}
	for _, tc := range []struct {
		glucose float64
		valid   bool
	}{{0.9, false}, {1.0, true}, {1.1, true}, {39.9, true}, {40.0, true}, {40.1, false}} {
		u := exampleFollowUp()
		u.Disease = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES
		u.FastingGlucoseMmolL = proto.Float64(tc.glucose)
		u = survey.DeriveFollowUp(u)
		errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: u}}, now)
		if got := errs == nil; got != tc.valid || (!tc.valid && !hasError(errs, "fasting_glucose_mmol_l", outRange)) {
			t.Errorf("glucose %.1f: Validate = %v, want valid=%v", tc.glucose, errs, tc.valid)
		}
	}
}

func TestFutureTolerance(t *testing.T) {
	tol := survey.DefaultFutureTolerance
	for _, tc := range []struct {
		ahead time.Duration
		valid bool
	}{{tol - time.Second, true}, {tol, true}, {tol + time.Second, false}} {
		u := exampleFollowUp()
		u.FollowedUpAt = ts(now.Add(tc.ahead))
		errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: u}}, now)
		if got := !hasError(errs, "followed_up_at", future); got != tc.valid {
			t.Errorf("followed_up_at %v ahead: Validate = %v, want valid=%v", tc.ahead, errs, tc.valid)
		}
	}
	r := survey.DefaultRules()
	r.FutureTolerance = time.Hour
	u := exampleFollowUp()
	u.FollowedUpAt = ts(now.Add(50 * time.Minute))
	if errs := r.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: u}}, now); errs != nil {
		t.Errorf("with a one-hour tolerance, 50 minutes ahead: Validate = %v, want valid", errs)
	}
}

func ExampleValidate() {
	u := exampleFollowUp() // classified CONTROLLED, next due in 3 months, no referral
	u.SystolicMmhg, u.DiastolicMmhg = proto.Int32(185), proto.Int32(115)
	for _, e := range survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: u}}, now) {
		fmt.Println(e.Path, e.Reason)
		fmt.Println("  " + e.Message)
	}
	// Output:
	// referral.urgent FIELD_ERROR_REASON_RULE
	//   systolic 185 ≥ 180 requires an urgent referral (紧急转诊)
	// classification FIELD_ERROR_REASON_RULE
	//   systolic 185 ≥ 180: control is unsatisfactory (控制不满意), not CONTROLLED
	// next_due_on FIELD_ERROR_REASON_RULE
	//   next_due_on 2027-02-20 is later than 2026-12-04: the next follow-up is due within 2 weeks of an urgent referral (systolic 185 ≥ 180)
}

func ExampleDeriveFollowUp() {
	u := exampleFollowUp()
	u.SystolicMmhg, u.DiastolicMmhg = proto.Int32(185), proto.Int32(115)
	d := survey.DeriveFollowUp(u)
	fmt.Println(d.GetClassification(), survey.FormatDate(d.GetNextDueOn()), d.GetReferral().GetUrgent())
	fmt.Println(d.GetReferral().GetReason())
	// Output:
	// CLASSIFICATION_UNCONTROLLED 2026-12-04 true
	// systolic 185 ≥ 180: urgent referral (紧急转诊)
}

// TestMajorIllnessUntreatedReason checks that the reason a major illness is not
// treated is required exactly when major_illness_treated is false, and its length.
func TestMajorIllnessUntreatedReason(t *testing.T) {
	const path = "findings[0].major_illness_untreated_reason"
	long := strings.Repeat("拒", 500)
	for _, tc := range []struct {
		name    string
		treated *bool
		reason  string
		want    fieldsyncv1.FieldErrorReason // 0 when valid
	}{
		{"not asked", nil, "", 0},
		{"treated", proto.Bool(true), "", 0},
		{"untreated with a reason", proto.Bool(false), "患者拒绝治疗", 0},
		{"untreated, reason of 500 characters", proto.Bool(false), long, 0},
		{"untreated without a reason", proto.Bool(false), "", reqd},
		{"untreated, reason of 501 characters", proto.Bool(false), long + "绝", outRange},
		{"treated with a reason", proto.Bool(true), "患者拒绝治疗", conflict},
		{"reason without the question", nil, "患者拒绝治疗", conflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := exampleVisit()
			v.Findings[0].MajorIllnessTreated, v.Findings[0].MajorIllnessUntreatedReason = tc.treated, tc.reason
			errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}}, now)
			switch {
			case tc.want == 0 && errs != nil:
				t.Errorf("Validate = %v, want valid", errs)
			case tc.want != 0 && !hasError(errs, path, tc.want):
				t.Errorf("Validate = %v, want %s at %s", errs, tc.want, path)
			}
		})
	}
}

// TestLastHealthCheckOn checks the date of the latest health check: a real
// date, not in the future and not before the birth date (1958-03-14).
func TestLastHealthCheckOn(t *testing.T) {
	const path = "last_health_check_on"
	for _, tc := range []struct {
		name string
		date *fieldsyncv1.Date
		want fieldsyncv1.FieldErrorReason // 0 when valid
	}{
		{"unset", nil, 0},
		{"today", survey.Today(now), 0},
		{"on the birth date", &fieldsyncv1.Date{Year: 1958, Month: 3, Day: 14}, 0},
		{"earlier this year", &fieldsyncv1.Date{Year: 2026, Month: 4, Day: 20}, 0},
		{"tomorrow", survey.Today(now.AddDate(0, 0, 1)), future},
		{"31 april", &fieldsyncv1.Date{Year: 2026, Month: 4, Day: 31}, malformed},
		{"no day", &fieldsyncv1.Date{Year: 2026, Month: 4}, malformed},
		{"the day before birth", &fieldsyncv1.Date{Year: 1958, Month: 3, Day: 13}, conflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := examplePerson()
			p.LastHealthCheckOn = tc.date
			errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: p}}, now)
			switch {
			case tc.want == 0 && errs != nil:
				t.Errorf("Validate = %v, want valid", errs)
			case tc.want != 0 && !hasError(errs, path, tc.want):
				t.Errorf("Validate = %v, want %s at %s", errs, tc.want, path)
			}
		})
	}
	// A birth date that is itself wrong gives no second error about the check.
	p := examplePerson()
	p.BirthDate = survey.Today(now.AddDate(0, 0, 1))
	p.LastHealthCheckOn = survey.Today(now)
	if errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: p}}, now); len(errs) != 1 || errs[0].Path != "birth_date" {
		t.Errorf("born tomorrow, checked today: Validate = %v, want only the birth date's error", errs)
	}
}
