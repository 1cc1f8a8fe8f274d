package survey_test

import (
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

func items(problems []*fieldsyncv1.Problem) []string {
	var out []string
	for _, p := range problems {
		out = append(out, p.GetItem())
	}
	return out
}

func TestCleanAuditRaisesNothing(t *testing.T) {
	a := exampleAudit()
	if got := survey.DefaultRules().ClinicAuditProblems(a, a.GetStatedNumbers()); len(got) != 0 {
		t.Errorf("ClinicAuditProblems = %v, want none", items(got))
	}
}

func TestAuditThresholds(t *testing.T) {
	r := survey.DefaultRules()
	for _, tc := range []struct {
		kinds int32
		area  float64
		want  []string
	}{
		{79, 60, []string{"clinic.drugs.essential_kinds"}},
		{80, 60, nil},
		{81, 60.1, nil},
		{80, 59.9, []string{"clinic.floor_area"}},
		{79, 59.9, []string{"clinic.floor_area", "clinic.drugs.essential_kinds"}},
	} {
		a := exampleAudit()
		a.EssentialDrugKinds, a.FloorAreaM2 = proto.Int32(tc.kinds), proto.Float64(tc.area)
		if got := items(r.ClinicAuditProblems(a, nil)); !slices.Equal(got, tc.want) {
			t.Errorf("%d kinds, %g m²: problems %v, want %v", tc.kinds, tc.area, got, tc.want)
		}
	}
	r.MinEssentialDrugKinds, r.MinFloorAreaM2 = 100, 80
	a := exampleAudit() // 86 kinds, 72.5 m²
	if got, want := items(r.ClinicAuditProblems(a, nil)), []string{"clinic.floor_area", "clinic.drugs.essential_kinds"}; !slices.Equal(got, want) {
		t.Errorf("with a stricter province: problems %v, want %v", got, want)
	}
}

func TestAuditChecklistItems(t *testing.T) {
	a := exampleAudit()
	a.PharmacySeparate = proto.Bool(false)
	a.HasExaminationBed = proto.Bool(false)
	a.ExpiredDrugsFound = proto.Bool(true)
	a.HasHeating = nil
	a.LicensedDoctorPresent = proto.Bool(false)
	got := items(survey.DefaultRules().ClinicAuditProblems(a, nil))
	want := []string{"clinic.room.pharmacy", "clinic.equipment.examination_bed", "clinic.drugs.expired", "clinic.doctor", "clinic.incomplete"}
	if !slices.Equal(got, want) {
		t.Errorf("problems %v, want %v", got, want)
	}
	a.CoveringArrangement = fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_SHARED_WITH_NEIGHBOUR
	a.CoveringDoctorName = "杨国富"
	if got := items(survey.DefaultRules().ClinicAuditProblems(a, nil)); slices.Contains(got, "clinic.doctor") {
		t.Errorf("a named covering doctor still raised clinic.doctor: %v", got)
	}
}

func TestYikouqingDifferences(t *testing.T) {
	a := exampleAudit()
	registry := proto.Clone(a.GetStatedNumbers()).(*fieldsyncv1.StatedNumbers)
	registry.SickPeople = proto.Int32(60)         // doctor said 58
	registry.MajorIllnessTreated = proto.Int32(3) // same
	a.StatedNumbers.OnePersonPlansHeld = nil      // doctor could not say
	problems := survey.DefaultRules().ClinicAuditProblems(a, registry)
	got, want := items(problems), []string{"clinic.yikouqing.sick_people", "clinic.yikouqing.one_person_plans_held"}
	if !slices.Equal(got, want) {
		t.Fatalf("problems %v, want %v", got, want)
	}
	p := problems[0]
	if p.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN || p.GetSourceRecordId() != a.GetId() ||
		p.GetAreaCode() != village || p.GetDeadline() == nil || p.GetDescription() == "" {
		t.Errorf("problem %v lacks its status, source, area, deadline or description", p)
	}
	rec := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: p}}
	p.Id = recordID
	if errs := survey.Validate(rec, now); errs != nil {
		t.Errorf("a raised problem, given an id, does not validate: %v", errs)
	}
}

func TestHouseholdVisitProblems(t *testing.T) {
	people := map[string]*fieldsyncv1.Person{personID: examplePerson()}
	r := survey.DefaultRules()
	if got := r.HouseholdVisitProblems(exampleVisit(), exampleHousehold(), people); len(got) != 0 {
		t.Fatalf("clean visit raised %v", items(got))
	}
	v := exampleVisit()
	v.Findings[0].OnePersonPlanPresent = nil // a chronic patient: not checked is not present
	v.Findings[0].ContractServedOnTime = proto.Bool(false)
	v.Findings[0].Satisfaction = fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED
	v.Findings[0].DissatisfactionReason = "医生很少来"
	v.Findings[1].ContractSigned = proto.Bool(false)
	v.Findings[1].HealthRecordExists = proto.Bool(false)
	problems := r.HouseholdVisitProblems(v, exampleHousehold(), people)
	got := items(problems)
	want := []string{"member.dissatisfied", "service111.one_person_plan", "contract.not_served", "service111.contract", "service111.health_record"}
	if !slices.Equal(got, want) {
		t.Fatalf("problems %v, want %v", got, want)
	}
	if problems[1].GetSeverity() != fieldsyncv1.Severity_SEVERITY_CRITICAL || problems[0].GetSeverity() != fieldsyncv1.Severity_SEVERITY_NORMAL {
		t.Errorf("severities %v, %v; want 一人一策 critical, the rest normal", problems[0].GetSeverity(), problems[1].GetSeverity())
	}
	if problems[0].GetPersonId() != personID {
		t.Errorf("problem about %q, want %q", problems[0].GetPersonId(), personID)
	}
	// A village committee certificate explains the service-111 gaps.
	people[person2ID] = &fieldsyncv1.Person{Id: person2ID, VillageCertificate: &fieldsyncv1.Attachment{Sha256: "0f"}}
	if got := items(r.HouseholdVisitProblems(v, exampleHousehold(), people)); slices.Contains(got, "service111.contract") {
		t.Errorf("a certified gap still raised a problem: %v", got)
	}
	// The service 111 is owed to registered households only; dissatisfaction counts everywhere.
	ordinary := exampleHousehold()
	ordinary.Status = fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY
	if got, want := items(r.HouseholdVisitProblems(v, ordinary, people)), []string{"member.dissatisfied"}; !slices.Equal(got, want) {
		t.Errorf("ordinary household: problems %v, want %v", got, want)
	}
}

func TestRiskFlagThreshold(t *testing.T) {
	r := survey.DefaultRules()
	for _, tc := range []struct {
		oop, total int64
		want       bool
	}{
		{59999, 600000, false}, // 9.9998 %
		{60000, 600000, false}, // exactly 10 %: not above
		{60001, 600000, true},  // 10.0002 %
		{1, 0, false},          // no cost, nothing to judge
		{math.MaxInt64, math.MaxInt64, true},
	} {
		v := exampleVisit()
		v.Findings[0].OutOfPocketFen, v.Findings[0].TotalMedicalCostFen = proto.Int64(tc.oop), proto.Int64(tc.total)
		flags := r.RiskFlags(v)
		if got := len(flags) == 1; got != tc.want {
			t.Errorf("%d of %d fen: flagged=%v, want %v", tc.oop, tc.total, got, tc.want)
		}
	}
	r.SelfPayThresholdBP = 500 // a province at 5 %
	v := exampleVisit()        // 450 of 6000 yuan: 7.5 %
	flags := r.RiskFlags(v)
	if len(flags) != 1 || flags[0].GetPersonId() != personID || flags[0].GetThresholdBp() != 500 {
		t.Fatalf("at 5 %%: flags %v, want one for %s", flags, personID)
	}
	flags[0].Id = recordID
	if errs := survey.Validate(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_RiskFlag{RiskFlag: flags[0]}}, now); errs != nil {
		t.Errorf("a raised flag, given an id, does not validate: %v", errs)
	}
}
