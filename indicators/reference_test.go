package indicators_test

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/indicators/factstore"
	"github.com/fieldsync/fieldsync/indicators/indicatorstest"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// This file checks Compute against a second implementation of the
// indicators, written from their definitions (issue 13) and reading the
// records directly: no code of the package under test is used to get the
// expected integers.

// refCounty holds records by kind, with the lookups the definitions need.
type refCounty struct {
	households map[string]*fieldsyncv1.Household
	householdL []*fieldsyncv1.Household
	persons    map[string]*fieldsyncv1.Person
	personL    []*fieldsyncv1.Person
	clinics    []*fieldsyncv1.Clinic
	visits     []*fieldsyncv1.HouseholdVisit
	audits     []*fieldsyncv1.ClinicAudit
	followUps  map[string][]*fieldsyncv1.FollowUp // by person_id
	problems   []*fieldsyncv1.Problem
	flags      []*fieldsyncv1.RiskFlag
	// recorded is the day every person's conditions were written, nil when
	// not known: a patient never followed up and without a diagnosis day is
	// due from it.
	recorded *fieldsyncv1.Date
}

func newRefCounty(recs []*fieldsyncv1.Record) *refCounty {
	c := &refCounty{
		households: map[string]*fieldsyncv1.Household{},
		persons:    map[string]*fieldsyncv1.Person{},
		followUps:  map[string][]*fieldsyncv1.FollowUp{},
	}
	for _, r := range recs {
		switch b := r.GetBody().(type) {
		case *fieldsyncv1.Record_Household:
			c.households[b.Household.GetId()] = b.Household
			c.householdL = append(c.householdL, b.Household)
		case *fieldsyncv1.Record_Person:
			c.persons[b.Person.GetId()] = b.Person
			c.personL = append(c.personL, b.Person)
		case *fieldsyncv1.Record_Clinic:
			c.clinics = append(c.clinics, b.Clinic)
		case *fieldsyncv1.Record_HouseholdVisit:
			c.visits = append(c.visits, b.HouseholdVisit)
		case *fieldsyncv1.Record_ClinicAudit:
			c.audits = append(c.audits, b.ClinicAudit)
		case *fieldsyncv1.Record_FollowUp:
			f := b.FollowUp
			c.followUps[f.GetPersonId()] = append(c.followUps[f.GetPersonId()], f)
		case *fieldsyncv1.Record_Problem:
			c.problems = append(c.problems, b.Problem)
		case *fieldsyncv1.Record_RiskFlag:
			c.flags = append(c.flags, b.RiskFlag)
		}
	}
	return c
}

// refDay computes the expected village rows of one day D.
type refDay struct {
	d      *fieldsyncv1.Date
	eod    time.Time // endOfDay(D): the next midnight CST less 1 ns
	rules  survey.Rules
	county string // 6-digit prefix
	rows   map[string]map[indicators.Key]indicators.Value
}

func newRefDay(d *fieldsyncv1.Date, county string) *refDay {
	next, err := survey.DateTime(survey.AddDays(d, 1))
	if err != nil {
		panic(err)
	}
	return &refDay{d: d, eod: next.Add(-time.Nanosecond), rules: survey.DefaultRules(), county: county,
		rows: map[string]map[indicators.Key]indicators.Value{}}
}

func (r *refDay) row(area string) map[indicators.Key]indicators.Value {
	m := r.rows[area]
	if m == nil {
		m = zeroRow()
		r.rows[area] = m
	}
	return m
}

// zeroRow holds every key, at zero.
func zeroRow() map[indicators.Key]indicators.Value {
	m := map[indicators.Key]indicators.Value{}
	for _, d := range indicators.Keys() {
		m[d.Key] = indicators.Value{}
	}
	return m
}

// rate counts a unit of area in key's denominator when inDen, and in its
// numerator too when inNum.
func (r *refDay) rate(area string, key indicators.Key, inDen, inNum bool) {
	if !inDen {
		return
	}
	m := r.row(area)
	v := m[key]
	v.Den++
	if inNum {
		v.Num++
	}
	m[key] = v
}

// count adds one to the count key of area.
func (r *refDay) count(area string, key indicators.Key) {
	m := r.row(area)
	v := m[key]
	v.Num++
	m[key] = v
}

// byD reports day ≤ D.
func (r *refDay) byD(day *fieldsyncv1.Date) bool { return survey.CompareDates(day, r.d) <= 0 }

// inWindow12 reports AddMonths(D, −12) < day ≤ D.
func (r *refDay) inWindow12(day *fieldsyncv1.Date) bool {
	return survey.CompareDates(survey.AddMonths(r.d, -12), day) < 0 && r.byD(day)
}

func (r *refDay) compute(c *refCounty) (campaign string) {
	r.persons(c, r.answers(c))
	campaign = r.visitCoverage(c)
	r.clinics(c)
	r.problems(c)
	r.riskFlagged(c)
	// devices_not_synced_3d: no devices are added, so 0 (the row's zero).
	return campaign
}

// answers are one person's answers: for each item, the value of the latest
// visit in Window12(D) that answers it.
type answers struct {
	served, treated, reviewed *bool
	safetyNet                 *fieldsyncv1.MemberFinding // the whole finding
	aware                     [4]*bool                   // contracted doctor, hospital doctor, 看病120, 服务111
	satisfaction              fieldsyncv1.Satisfaction
}

func latestWins(a, b *timestamppb.Timestamp, ida, idb string) int {
	return cmp.Or(a.AsTime().Compare(b.AsTime()), strings.Compare(ida, idb))
}

func (r *refDay) answers(c *refCounty) map[string]*answers {
	var in []*fieldsyncv1.HouseholdVisit
	for _, v := range c.visits {
		if r.inWindow12(survey.Today(v.GetStartedAt().AsTime())) {
			in = append(in, v)
		}
	}
	slices.SortFunc(in, func(a, b *fieldsyncv1.HouseholdVisit) int {
		return latestWins(a.GetStartedAt(), b.GetStartedAt(), a.GetId(), b.GetId())
	})
	out := map[string]*answers{}
	for _, v := range in { // oldest first: a later answer overwrites
		for _, f := range v.GetFindings() {
			a := out[f.GetPersonId()]
			if a == nil {
				a = &answers{}
				out[f.GetPersonId()] = a
			}
			set := func(dst **bool, src *bool) {
				if src != nil {
					*dst = src
				}
			}
			set(&a.served, f.ContractServedOnTime)
			set(&a.treated, f.MajorIllnessTreated)
			set(&a.reviewed, f.MajorIllnessReviewed)
			if f.SafetyNetApplied != nil {
				a.safetyNet = f
			}
			set(&a.aware[0], f.KnowsContractedDoctor)
			set(&a.aware[1], f.KnowsSecondaryHospitalDoctor)
			set(&a.aware[2], f.CanExplainKanbing_120)
			set(&a.aware[3], f.CanExplainFuwu_111)
			if s := f.GetSatisfaction(); s == fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED ||
				s == fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED {
				a.satisfaction = s
			}
		}
	}
	return out
}

func isTrue(b *bool) bool { return b != nil && *b }

// conditionsAsOf returns p's conditions with a disease, diagnosed by D or
// undated.
func (r *refDay) conditionsAsOf(p *fieldsyncv1.Person) []*fieldsyncv1.Condition {
	var out []*fieldsyncv1.Condition
	for _, cd := range p.GetConditions() {
		if cd.GetDisease() != fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_UNSPECIFIED &&
			(cd.GetDiagnosedOn() == nil || r.byD(cd.GetDiagnosedOn())) {
			out = append(out, cd)
		}
	}
	return out
}

func (r *refDay) contractValid(p *fieldsyncv1.Person) bool {
	s := p.GetContract().GetSignedOn()
	if s == nil {
		return false
	}
	if _, err := survey.DateTime(s); err != nil {
		return false
	}
	return r.byD(s) && survey.CompareDates(r.d, survey.AddMonths(s, 12)) < 0
}

// ageOn is the age in whole years on d of a person born on b.
func ageOn(b, d *fieldsyncv1.Date) int {
	age := int(d.GetYear() - b.GetYear())
	if d.GetMonth() < b.GetMonth() || d.GetMonth() == b.GetMonth() && d.GetDay() < b.GetDay() {
		age--
	}
	return age
}

func (r *refDay) persons(c *refCounty, ans map[string]*answers) {
	for _, p := range c.personL {
		if p.GetResidency() == fieldsyncv1.Residency_RESIDENCY_DECEASED {
			continue
		}
		conds := r.conditionsAsOf(p)
		for _, d := range []fieldsyncv1.ChronicDisease{
			fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION,
			fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES,
		} {
			r.chronicCare(c, p, conds, d)
		}
		if h, ok := c.households[p.GetHouseholdId()]; ok &&
			h.GetStatus() == fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY {
			continue // not in the service population
		}
		a := ans[p.GetId()]
		if a == nil {
			a = &answers{}
		}
		r.servicePerson(p, conds, a)
	}
}

// servicePerson counts a living person of the service population.
func (r *refDay) servicePerson(p *fieldsyncv1.Person, conds []*fieldsyncv1.Condition, a *answers) {
	area := p.GetAreaCode()
	valid := r.contractValid(p)
	r.rate(area, "contract_rate", true, valid)
	r.rate(area, "service_rate", valid, isTrue(a.served))
	r.rate(area, "health_record_rate", true, p.GetHasHealthRecord())
	age := ageOn(p.GetBirthDate(), r.d)
	check := p.GetLastHealthCheckOn()
	jan1 := &fieldsyncv1.Date{Year: r.d.GetYear(), Month: 1, Day: 1}
	checked := check != nil && r.byD(check) && survey.CompareDates(check, jan1) >= 0
	r.rate(area, "health_check_rate", 7 <= age && age <= 64, checked)

	var major, nonMajor, severe bool
	for _, cd := range conds {
		major = major || cd.GetMajorIllness()
		nonMajor = nonMajor || !cd.GetMajorIllness()
		severe = severe || cd.GetSevereIllness()
	}
	r.rate(area, "plan_rate", len(conds) > 0, p.GetHasOnePersonPlan())
	r.rate(area, "major_illness_treated_rate", major, isTrue(a.treated))
	r.rate(area, "chronic_contract_mgmt_rate", nonMajor, valid && isTrue(a.served))
	r.rate(area, "severe_illness_safety_net_rate", severe, r.safetyNetHolds(a.safetyNet))

	subs := []indicators.Key{
		"policy_awareness_rate.contracted_doctor", "policy_awareness_rate.hospital_doctor",
		"policy_awareness_rate.kanbing_120", "policy_awareness_rate.fuwu_111",
	}
	answered, allTrue := false, true
	for i, k := range subs {
		if b := a.aware[i]; b != nil {
			r.rate(area, k, true, *b)
			answered, allTrue = true, allTrue && *b
		}
	}
	r.rate(area, "policy_awareness_rate", answered, allTrue)
	r.rate(area, "satisfaction_rate", a.satisfaction != fieldsyncv1.Satisfaction_SATISFACTION_UNSPECIFIED,
		a.satisfaction == fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED)
}

// safetyNetHolds: the latest finding answering safety_net_applied says true,
// and the self-pay share it records (if any) is not above the threshold.
func (r *refDay) safetyNetHolds(f *fieldsyncv1.MemberFinding) bool {
	if f == nil || !f.GetSafetyNetApplied() {
		return false
	}
	if f.OutOfPocketFen != nil && f.TotalMedicalCostFen != nil && *f.TotalMedicalCostFen > 0 &&
		*f.OutOfPocketFen*10000 > int64(r.rules.SelfPayThresholdBP)**f.TotalMedicalCostFen {
		return false
	}
	return true
}

// chronicCare counts a living person with disease d as of D in the standard
// management rate and the due and overdue follow-ups.
func (r *refDay) chronicCare(c *refCounty, p *fieldsyncv1.Person, conds []*fieldsyncv1.Condition, d fieldsyncv1.ChronicDisease) {
	var earliest *fieldsyncv1.Date
	has := false
	for _, cd := range conds {
		if cd.GetDisease() != d {
			continue
		}
		has = true
		if dx := cd.GetDiagnosedOn(); dx != nil && (earliest == nil || survey.CompareDates(dx, earliest) < 0) {
			earliest = dx
		}
	}
	if !has {
		return
	}
	area := p.GetAreaCode()
	from := survey.AddMonths(r.d, -12) // Window12(D): the days after it
	n := 0
	var latest *fieldsyncv1.FollowUp
	for _, f := range c.followUps[p.GetId()] {
		if f.GetDisease() != d {
			continue
		}
		t := f.GetFollowedUpAt().AsTime()
		if m := f.GetMethod(); (m == fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_CLINIC ||
			m == fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME) && survey.CompareDates(survey.Today(t), from) > 0 && !t.After(r.eod) {
			n++
		}
		if !t.After(r.eod) && (latest == nil ||
			latestWins(f.GetFollowedUpAt(), latest.GetFollowedUpAt(), f.GetId(), latest.GetId()) > 0) {
			latest = f
		}
	}
	key := indicators.Key("htn_standard_mgmt_rate")
	if d == fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES {
		key = "dm_standard_mgmt_rate"
	}
	r.rate(area, key, true, n >= 4)

	due := r.d
	switch {
	case latest != nil:
		if _, err := survey.DateTime(latest.GetNextDueOn()); err == nil {
			due = latest.GetNextDueOn()
		} else if nd := survey.AssessFollowUp(latest).NextDue; nd != nil {
			if _, err := survey.DateTime(nd); err == nil {
				due = nd
			}
		}
	case earliest != nil:
		due = earliest
	case c.recorded != nil:
		due = c.recorded
	}
	if c := survey.CompareDates(due, r.d); c <= 0 {
		r.count(area, "followups_due")
		if c < 0 {
			r.count(area, "followups_overdue")
		}
	}
}

// visitCoverage counts households visited in the campaign of the latest
// visit by D, and returns that campaign.
func (r *refDay) visitCoverage(c *refCounty) string {
	var last *fieldsyncv1.HouseholdVisit
	for _, v := range c.visits {
		if v.GetCampaign() == "" || !strings.HasPrefix(v.GetAreaCode(), r.county) ||
			!r.byD(survey.Today(v.GetStartedAt().AsTime())) {
			continue
		}
		if last == nil || latestWins(v.GetStartedAt(), last.GetStartedAt(), v.GetId(), last.GetId()) > 0 {
			last = v
		}
	}
	campaign := last.GetCampaign()
	visited := map[string]bool{}
	for _, v := range c.visits {
		if campaign != "" && v.GetCampaign() == campaign && r.byD(survey.Today(v.GetStartedAt().AsTime())) {
			visited[v.GetHouseholdId()] = true
		}
	}
	for _, h := range c.householdL {
		r.rate(h.GetAreaCode(), "visit_coverage", true, visited[h.GetId()])
	}
	return campaign
}

// clinicItems are the 18 checklist items: the sub-key suffix, whether the
// audit answers it, and whether it passes.
var clinicItems = []struct {
	key  string
	set  func(*fieldsyncv1.ClinicAudit) bool
	pass func(*fieldsyncv1.ClinicAudit, survey.Rules) bool
}{
	{"room.consultation", func(a *fieldsyncv1.ClinicAudit) bool { return a.ConsultationRoomSeparate != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetConsultationRoomSeparate() }},
	{"room.treatment", func(a *fieldsyncv1.ClinicAudit) bool { return a.TreatmentRoomSeparate != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetTreatmentRoomSeparate() }},
	{"room.public_health", func(a *fieldsyncv1.ClinicAudit) bool { return a.PublicHealthRoomSeparate != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetPublicHealthRoomSeparate() }},
	{"room.pharmacy", func(a *fieldsyncv1.ClinicAudit) bool { return a.PharmacySeparate != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetPharmacySeparate() }},
	{"floor_area", func(a *fieldsyncv1.ClinicAudit) bool { return a.FloorAreaM2 != nil },
		func(a *fieldsyncv1.ClinicAudit, r survey.Rules) bool { return a.GetFloorAreaM2() >= r.MinFloorAreaM2 }},
	{"doctor", func(a *fieldsyncv1.ClinicAudit) bool { return a.LicensedDoctorPresent != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool {
			return a.GetLicensedDoctorPresent() ||
				a.GetCoveringArrangement() != fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_UNSPECIFIED &&
					a.GetCoveringDoctorName() != ""
		}},
	{"equipment.stethoscope", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasStethoscope != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasStethoscope() }},
	{"equipment.thermometer", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasThermometer != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasThermometer() }},
	{"equipment.sphygmomanometer", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasSphygmomanometer != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasSphygmomanometer() }},
	{"equipment.examination_bed", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasExaminationBed != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasExaminationBed() }},
	{"drugs.essential_kinds", func(a *fieldsyncv1.ClinicAudit) bool { return a.EssentialDrugKinds != nil },
		func(a *fieldsyncv1.ClinicAudit, r survey.Rules) bool {
			return a.GetEssentialDrugKinds() >= r.MinEssentialDrugKinds
		}},
	{"drugs.expired", func(a *fieldsyncv1.ClinicAudit) bool { return a.ExpiredDrugsFound != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return !a.GetExpiredDrugsFound() }},
	{"drugs.supplements", func(a *fieldsyncv1.ClinicAudit) bool { return a.HealthSupplementsFound != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return !a.GetHealthSupplementsFound() }},
	{"drugs.off_list", func(a *fieldsyncv1.ClinicAudit) bool { return a.OffListDrugsFound != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return !a.GetOffListDrugsFound() }},
	{"running.water", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasWater != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasWater() }},
	{"running.electricity", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasElectricity != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasElectricity() }},
	{"running.heating", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasHeating != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasHeating() }},
	{"running.funds", func(a *fieldsyncv1.ClinicAudit) bool { return a.HasOperatingFunds != nil },
		func(a *fieldsyncv1.ClinicAudit, _ survey.Rules) bool { return a.GetHasOperatingFunds() }},
}

func (r *refDay) clinics(c *refCounty) {
	latest := map[string]*fieldsyncv1.ClinicAudit{}
	for _, a := range c.audits {
		if !r.inWindow12(survey.Today(a.GetAuditedAt().AsTime())) {
			continue
		}
		if l := latest[a.GetClinicId()]; l == nil || latestWins(a.GetAuditedAt(), l.GetAuditedAt(), a.GetId(), l.GetId()) > 0 {
			latest[a.GetClinicId()] = a
		}
	}
	for _, cl := range c.clinics {
		a := latest[cl.GetId()]
		if a == nil {
			continue
		}
		area, all := cl.GetAreaCode(), true
		for _, it := range clinicItems {
			set := it.set(a)
			pass := set && it.pass(a, r.rules)
			r.rate(area, indicators.Key("clinic_compliance."+it.key), set, pass)
			all = all && pass
		}
		r.rate(area, "clinic_compliance", true, all)
	}
}

// problemStatus is p's status at the end of D.
func (r *refDay) problemStatus(p *fieldsyncv1.Problem) fieldsyncv1.ProblemStatus {
	type event struct {
		at     time.Time
		status fieldsyncv1.ProblemStatus
	}
	var evs []event
	for _, e := range []struct {
		ts *timestamppb.Timestamp
		s  fieldsyncv1.ProblemStatus
	}{
		{p.GetRaisedAt(), fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN},
		{p.GetRectifiedAt(), fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED},
		{p.GetVerifiedAt(), fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED},
		{p.GetReopenedAt(), fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN},
	} {
		if e.ts != nil {
			evs = append(evs, event{e.ts.AsTime(), e.s})
		}
	}
	slices.SortFunc(evs, func(a, b event) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.status, b.status)) })
	if !evs[len(evs)-1].at.After(r.eod) {
		return p.GetStatus()
	}
	var s fieldsyncv1.ProblemStatus
	for _, e := range evs {
		if !e.at.After(r.eod) {
			s = e.status // the last one by (time, status) wins
		}
	}
	return s
}

func (r *refDay) problems(c *refCounty) {
	for _, p := range c.problems {
		if p.GetRaisedAt() == nil || p.GetRaisedAt().AsTime().After(r.eod) {
			continue
		}
		area := p.GetAreaCode()
		switch r.problemStatus(p) {
		case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN:
			r.count(area, "problems_open")
			if p.GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL {
				r.count(area, "critical_problems_open")
			}
			if dl := p.GetDeadline(); dl != nil && survey.CompareDates(dl, r.d) < 0 {
				r.count(area, "problems_overdue")
			}
		case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED:
			r.count(area, "problems_closed")
		}
	}
}

func (r *refDay) riskFlagged(c *refCounty) {
	units := map[string]string{} // unit → village
	for _, f := range c.flags {
		if s := f.GetStatus(); s != fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN &&
			s != fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_FORWARDED || f.GetFlaggedAt().AsTime().After(r.eod) {
			continue
		}
		unit, area := "household "+f.GetHouseholdId(), f.GetAreaCode()
		if h, ok := c.households[f.GetHouseholdId()]; ok {
			area = h.GetAreaCode()
		}
		if f.GetPersonId() != "" {
			unit = "person " + f.GetPersonId()
			if p, ok := c.persons[f.GetPersonId()]; ok {
				if p.GetResidency() == fieldsyncv1.Residency_RESIDENCY_DECEASED {
					continue // the deceased never count
				}
				area = p.GetAreaCode()
			}
		}
		units[unit] = area
	}
	for _, area := range units {
		r.count(area, "risk_flagged")
	}
}

// refLayout is the areas a report of a county lists, down to villages.
type refLayout struct {
	county   string   // 12 digits
	villages []string // 12 digits, in code order
}

func (l refLayout) townships() []string {
	var ts []string
	for _, v := range l.villages {
		if t := v[:9] + "000"; !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

func addValues(dst, src map[indicators.Key]indicators.Value) {
	for k, v := range src {
		s := dst[k]
		dst[k] = indicators.Value{Num: s.Num + v.Num, Den: s.Den + v.Den}
	}
}

// checkReport compares got with the reference rows of the villages, summed
// for townships and the county, and checks that got's own rows add up.
// Disagreements are reported per key, a few areas each.
func checkReport(t *testing.T, label string, l refLayout, want map[string]map[indicators.Key]indicators.Value, got indicators.Report) {
	t.Helper()
	for area := range want {
		if !slices.Contains(l.villages, area) {
			t.Errorf("%s: reference counted units in %q, which is not a village of the county", label, area)
		}
	}
	areas := append([]string{l.county}, l.townships()...)
	areas = append(areas, l.villages...)
	var gotAreas []string
	gotRows := map[string]map[indicators.Key]indicators.Value{}
	for _, row := range got.Rows {
		gotAreas = append(gotAreas, fmt.Sprintf("%s/%v", row.Area, row.Level))
		gotRows[row.Area] = row.Values
	}
	var wantAreas []string
	for _, a := range areas {
		lv := indicators.Village
		switch {
		case a == l.county:
			lv = indicators.County
		case strings.HasSuffix(a, "000"):
			lv = indicators.Township
		}
		wantAreas = append(wantAreas, fmt.Sprintf("%s/%v", a, lv))
	}
	if !slices.Equal(gotAreas, wantAreas) {
		t.Errorf("%s: rows\ngot  %v\nwant %v", label, gotAreas, wantAreas)
	}

	// Expected and got-summed rows of townships and the county.
	exp := map[string]map[indicators.Key]indicators.Value{}
	sum := map[string]map[indicators.Key]indicators.Value{}
	for _, a := range areas {
		exp[a], sum[a] = map[indicators.Key]indicators.Value{}, map[indicators.Key]indicators.Value{}
	}
	for _, v := range l.villages {
		w := want[v]
		if w == nil {
			w = zeroRow()
		}
		exp[v] = w
		t9 := v[:9] + "000"
		addValues(exp[t9], w)
		addValues(sum[t9], gotRows[v])
	}
	for _, t9 := range l.townships() {
		addValues(exp[l.county], exp[t9])
		addValues(sum[l.county], gotRows[t9])
	}

	for _, d := range indicators.Keys() {
		var diffs, sums []string
		for _, a := range areas {
			g, ok := gotRows[a][d.Key]
			if !ok && gotRows[a] != nil {
				diffs = append(diffs, fmt.Sprintf("%s: missing (want %v)", a, exp[a][d.Key]))
			} else if w := exp[a][d.Key]; g != w {
				diffs = append(diffs, fmt.Sprintf("%s: got %v want %v", a, g, w))
			}
			if a != l.county && !strings.HasSuffix(a, "000") {
				continue
			}
			if s := sum[a][d.Key]; gotRows[a] != nil && s != g {
				sums = append(sums, fmt.Sprintf("%s: %v, its rows below sum to %v", a, g, s))
			}
		}
		if n := len(diffs); n > 0 {
			if n > 6 {
				diffs = append(diffs[:6], fmt.Sprintf("... %d more", n-6))
			}
			t.Errorf("%s: %s differs in %d areas (Num/Den):\n\t%s", label, d.Key, n, strings.Join(diffs, "\n\t"))
		}
		if len(sums) > 0 {
			t.Errorf("%s: %s does not add up:\n\t%s", label, d.Key, strings.Join(sums, "\n\t"))
		}
	}
	for a, vals := range gotRows {
		for k := range vals {
			if _, ok := indicators.Lookup(k); !ok {
				t.Errorf("%s: row %s has key %q, which Keys does not list", label, a, k)
			}
		}
	}
}

// computer computes reports: the in-memory Set, or the server's read model.
type computer interface {
	Compute(indicators.Options) (indicators.Report, error)
}

// compute runs Compute for the county as of D.
func compute(t *testing.T, s computer, county string, d *fieldsyncv1.Date, now time.Time) indicators.Report {
	t.Helper()
	at, err := survey.DateTime(d)
	if err != nil {
		t.Fatal(err)
	}
	if now.IsZero() {
		now = at.Add(12 * time.Hour)
	}
	r, err := s.Compute(indicators.Options{Area: county, Depth: indicators.Village, AsOf: at,
		Rules: survey.DefaultRules(), Now: now})
	if err != nil {
		t.Fatalf("Compute as of %s: %v", survey.FormatDate(d), err)
	}
	return r
}

// newSet adds clones of recs, so that the reference reads records Compute
// never saw.
func newSet(recs []*fieldsyncv1.Record) *indicatorstest.Set {
	s := indicatorstest.NewSet()
	for _, r := range recs {
		s.Add(proto.Clone(r).(*fieldsyncv1.Record), time.Time{})
	}
	return s
}

// TestReferenceCounty compares every indicator of a generated county with
// the reference, at the day before AsOf and at a day mid-campaign.
func TestReferenceCounty(t *testing.T) {
	const seed = 9
	g, err := countygen.New(countygen.Config{Townships: 3, VillagesPerTownship: 4, HouseholdsPerVillage: 120, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*fieldsyncv1.Record
	if err := g.Each(func(r *fieldsyncv1.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) < 3000 {
		t.Fatalf("seed %d: %d records, want a few thousand", seed, len(recs))
	}
	cfg := g.Config()
	layout := refLayout{county: g.County.Code}
	for _, tw := range g.County.Townships {
		for _, v := range tw.Villages {
			layout.villages = append(layout.villages, v.Code)
		}
	}
	c := newRefCounty(recs)
	for _, path := range []struct {
		name     string
		s        computer
		recorded *fieldsyncv1.Date
	}{
		{"in memory", newSet(recs), nil},
		{"the server's read model", serverModel(t, recs, cfg.AsOf), survey.Today(cfg.AsOf)},
	} {
		c.recorded = path.recorded
		t.Run(path.name, func(t *testing.T) { referenceCounty(t, g, recs, layout, c, path.s) })
	}
}

// serverModel writes recs to a server's store, through the engine as a
// push would, at the moment at, and returns the indicators' read model of it
// (indicators/factstore), as the server computes its reports.
func serverModel(t *testing.T, recs []*fieldsyncv1.Record, at time.Time) computer {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "server.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clock := syncengine.NewClock(st.Replica(), 0)
	for lo := 0; lo < len(recs); lo += 500 {
		err := st.Update(ctx, func(tx syncengine.Tx) error {
			for _, r := range recs[lo:min(lo+500, len(recs))] {
				id, _, err := wire.Identity(r)
				if err != nil {
					return err
				}
				e, _, err := wire.EditOf(syncengine.Record{}, r)
				if err != nil {
					return err
				}
				e.ID, e.Record = syncengine.ChangeID(uuid.Must(uuid.NewV7())), id
				if _, err := syncengine.WriteLocalTx(ctx, tx, clock, at.UnixMilli(), e, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	m, err := factstore.Open(ctx, st, filepath.Join(dir, factstore.File))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return modelComputer{m}
}

type modelComputer struct{ m *factstore.Model }

func (c modelComputer) Compute(o indicators.Options) (indicators.Report, error) {
	return c.m.Compute(context.Background(), o, nil)
}

func referenceCounty(t *testing.T, g *countygen.Generator, recs []*fieldsyncv1.Record, layout refLayout, c *refCounty, s computer) {
	const seed = 9
	cfg := g.Config()

	// Mid-campaign: the day by which half of the households had their first
	// visit of the campaign.
	first := map[string]*fieldsyncv1.Date{}
	for _, v := range c.visits {
		d := survey.Today(v.GetStartedAt().AsTime())
		if f := first[v.GetHouseholdId()]; v.GetCampaign() == cfg.Campaign && (f == nil || survey.CompareDates(d, f) < 0) {
			first[v.GetHouseholdId()] = d
		}
	}
	var firsts []*fieldsyncv1.Date
	for _, d := range first {
		firsts = append(firsts, d)
	}
	slices.SortFunc(firsts, survey.CompareDates)
	mid := firsts[len(firsts)/2]

	for _, tc := range []struct {
		name string
		d    *fieldsyncv1.Date
	}{
		{"eve of AsOf", survey.AddDays(survey.Today(cfg.AsOf), -1)},
		{"mid-campaign", mid},
	} {
		label := fmt.Sprintf("seed %d, %s %s", seed, tc.name, survey.FormatDate(tc.d))
		ref := newRefDay(tc.d, cfg.CountyCode)
		campaign := ref.compute(c)
		got := compute(t, s, cfg.CountyCode, tc.d, time.Time{})
		if campaign != cfg.Campaign {
			t.Errorf("%s: reference campaign %q, want the generator's %q", label, campaign, cfg.Campaign)
		}
		if got.Campaign != campaign {
			t.Errorf("%s: Campaign %q, want %q", label, got.Campaign, campaign)
		}
		checkReport(t, label, layout, ref.rows, got)

		total := map[indicators.Key]indicators.Value{}
		for _, row := range ref.rows {
			addValues(total, row)
		}
		t.Logf("%s: %d records; reference county totals:", label, len(recs))
		for _, d := range indicators.Keys() {
			t.Logf("\t%-48s %v", d.Key, total[d.Key])
		}
		if tc.name == "mid-campaign" {
			if vc := total["visit_coverage"]; vc.Num*10 < vc.Den*3 || vc.Num*10 > vc.Den*7 {
				t.Errorf("%s: visit coverage %v is not about half: pick another day", label, vc)
			}
			continue
		}
		// The test exercises every key: each rate has a denominator and
		// each count but one is non-zero on the generated county. The
		// exception is devices_not_synced_3d: no device is added, so it is
		// 0 everywhere (checked with the rows above).
		for _, d := range indicators.Keys() {
			v := total[d.Key]
			switch {
			case d.Key == "devices_not_synced_3d":
				if v != (indicators.Value{}) {
					t.Errorf("%s: reference devices_not_synced_3d %v, want 0", label, v)
				}
			case d.Kind == indicators.Rate && v.Den == 0, d.Kind == indicators.Count && v.Num == 0:
				t.Errorf("%s: %s is %v on the whole county: the test does not exercise it", label, d.Key, v)
			}
		}
	}
}

// Fixture helpers: times and days in China Standard Time.

func at(y int, m time.Month, d, h, min int) *timestamppb.Timestamp {
	return timestamppb.New(time.Date(y, m, d, h, min, 0, 0, survey.ChinaTime))
}

func day(y int, m time.Month, d int) *fieldsyncv1.Date {
	return &fieldsyncv1.Date{Year: int32(y), Month: int32(m), Day: int32(d)}
}

func records(msgs ...proto.Message) []*fieldsyncv1.Record {
	var out []*fieldsyncv1.Record
	for _, m := range msgs {
		r := &fieldsyncv1.Record{}
		switch b := m.(type) {
		case *fieldsyncv1.Household:
			r.Body = &fieldsyncv1.Record_Household{Household: b}
		case *fieldsyncv1.Person:
			r.Body = &fieldsyncv1.Record_Person{Person: b}
		case *fieldsyncv1.Clinic:
			r.Body = &fieldsyncv1.Record_Clinic{Clinic: b}
		case *fieldsyncv1.HouseholdVisit:
			r.Body = &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: b}
		case *fieldsyncv1.ClinicAudit:
			r.Body = &fieldsyncv1.Record_ClinicAudit{ClinicAudit: b}
		case *fieldsyncv1.FollowUp:
			r.Body = &fieldsyncv1.Record_FollowUp{FollowUp: b}
		case *fieldsyncv1.Problem:
			r.Body = &fieldsyncv1.Record_Problem{Problem: b}
		case *fieldsyncv1.RiskFlag:
			r.Body = &fieldsyncv1.Record_RiskFlag{RiskFlag: b}
		default:
			panic(fmt.Sprintf("records: %T", m))
		}
		out = append(out, r)
	}
	return out
}

// passingAudit is an audit of clinic at t that passes every item.
func passingAudit(id, area, clinic string, t *timestamppb.Timestamp) *fieldsyncv1.ClinicAudit {
	yes, no := proto.Bool(true), proto.Bool(false)
	return &fieldsyncv1.ClinicAudit{Id: id, AreaCode: area, ClinicId: clinic, AuditedAt: t,
		ConsultationRoomSeparate: yes, TreatmentRoomSeparate: yes, PublicHealthRoomSeparate: yes, PharmacySeparate: yes,
		FloorAreaM2: proto.Float64(60), LicensedDoctorPresent: yes,
		HasStethoscope: yes, HasThermometer: yes, HasSphygmomanometer: yes, HasExaminationBed: yes,
		EssentialDrugKinds: proto.Int32(80), ExpiredDrugsFound: no, HealthSupplementsFound: no, OffListDrugsFound: no,
		HasWater: yes, HasElectricity: yes, HasHeating: yes, HasOperatingFunds: yes}
}

const (
	fxV1 = "532523100201"
	fxV2 = "532523100202" // no chronic patients
)

// boundaryFixture is a hand-made county of two villages; the comments give
// what each record is for, as of D = 2026-10-31.
func boundaryFixture() []*fieldsyncv1.Record {
	htn := fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION
	dm := fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES
	clinic, home, phone := fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_CLINIC, fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME,
		fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE
	cond := func(d fieldsyncv1.ChronicDisease, dx *fieldsyncv1.Date) []*fieldsyncv1.Condition {
		return []*fieldsyncv1.Condition{{Disease: d, DiagnosedOn: dx}}
	}
	person := func(id, area, hh string, born *fieldsyncv1.Date) *fieldsyncv1.Person {
		return &fieldsyncv1.Person{Id: id, AreaCode: area, HouseholdId: hh, BirthDate: born,
			Residency: fieldsyncv1.Residency_RESIDENCY_AT_HOME}
	}
	fu := func(id, p string, d fieldsyncv1.ChronicDisease, t *timestamppb.Timestamp, m fieldsyncv1.FollowUpMethod, next *fieldsyncv1.Date) *fieldsyncv1.FollowUp {
		return &fieldsyncv1.FollowUp{Id: id, AreaCode: fxV1, PersonId: p, Disease: d, FollowedUpAt: t, Method: m,
			Classification: fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED, NextDueOn: next}
	}
	old := day(1955, 6, 1)

	p1 := person("p1", fxV1, "h1", day(1961, 11, 1))                 // 64 on D (birthday tomorrow)
	p1.Contract = &fieldsyncv1.Contract{SignedOn: day(2025, 10, 31)} // exactly 12 months before D: expired
	p1.HasHealthRecord, p1.LastHealthCheckOn = proto.Bool(true), day(2026, 1, 1)
	p2 := person("p2", fxV1, "h1", day(2019, 11, 1))                // 6 on D: outside 7–64
	p2.Contract = &fieldsyncv1.Contract{SignedOn: day(2025, 11, 1)} // one day later: valid
	p2.HasHealthRecord, p2.LastHealthCheckOn = proto.Bool(false), day(2026, 3, 1)
	p3 := person("p3", fxV1, "h1", day(1940, 1, 1)) // deceased: counts nowhere
	p3.Residency, p3.Contract, p3.Conditions = fieldsyncv1.Residency_RESIDENCY_DECEASED,
		&fieldsyncv1.Contract{SignedOn: day(2026, 1, 1)}, cond(htn, day(2010, 1, 1))
	p3.HasHealthRecord, p3.HasOnePersonPlan = proto.Bool(true), proto.Bool(true)
	p4 := person("p4", fxV1, "h1", old) // 3 face-to-face in the window: one falls the day before it
	p4.Contract, p4.Conditions, p4.HasOnePersonPlan = &fieldsyncv1.Contract{SignedOn: day(2026, 3, 1)},
		cond(htn, day(2015, 1, 1)), proto.Bool(true)
	p5 := person("p5", fxV1, "h1", old) // 4 face-to-face: the first on the window's first day
	p5.Conditions, p5.HasOnePersonPlan = cond(htn, day(2015, 1, 1)), proto.Bool(false)
	p6 := person("p6", fxV1, "h1", old) // 3 face-to-face and a later PHONE one, which sets the due day
	p6.Conditions = cond(htn, day(2015, 1, 1))
	p7 := person("p7", fxV1, "h1", old) // due on D
	p7.Conditions = cond(dm, day(2018, 1, 1))
	p8 := person("p8", fxV1, "h1", old) // due the day before D
	p8.Conditions = cond(dm, day(2018, 1, 1))
	p9 := person("p9", fxV1, "h1", old) // diagnosed after D: no patient yet
	p9.Conditions, p9.HasOnePersonPlan = cond(htn, day(2026, 11, 15)), proto.Bool(false)
	p10 := person("p10", fxV1, "h1", old) // never followed up: due from its diagnosis; major and severe illness
	p10.Conditions = append(cond(dm, day(2026, 10, 1)), &fieldsyncv1.Condition{
		Disease: fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_OTHER_LISTED, OtherName: "白血病",
		MajorIllness: true, SevereIllness: true, DiagnosedOn: day(2026, 9, 1)})
	p11 := person("p11", fxV2, "h2", day(1985, 3, 3)) // checked in the previous year
	p11.Contract, p11.HasHealthRecord, p11.LastHealthCheckOn = &fieldsyncv1.Contract{SignedOn: day(2026, 2, 1)},
		proto.Bool(true), day(2025, 12, 31)
	p12 := person("p12", fxV2, "h3", day(1980, 1, 1))        // ordinary household: not in the service population
	p13 := person("p13", fxV2, "h-missing", day(2000, 1, 1)) // household not held: in the service population

	yes, no := proto.Bool(true), proto.Bool(false)
	a1 := passingAudit("a1", fxV1, "c1", at(2026, 10, 1, 10, 0)) // covered by a doctor the township sent
	a1.LicensedDoctorPresent, a1.CoveringArrangement, a1.CoveringDoctorName = no,
		fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_TOWNSHIP_SENT, "李医生"
	a0 := passingAudit("a0", fxV1, "c1", at(2026, 3, 1, 10, 0)) // superseded by a1
	a0.FloorAreaM2 = proto.Float64(50)
	a2 := passingAudit("a2", fxV2, "c2", at(2026, 9, 15, 10, 0)) // too small, heating unchecked, covering doctor unnamed
	a2.FloorAreaM2, a2.HasHeating, a2.LicensedDoctorPresent, a2.CoveringArrangement = proto.Float64(59.9), nil, no,
		fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_SHARED_WITH_NEIGHBOUR
	campaign := "2026-回头看"
	return records(
		&fieldsyncv1.Household{Id: "h1", AreaCode: fxV1, Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_REGISTERED_OUT_OF_POVERTY},
		&fieldsyncv1.Household{Id: "h2", AreaCode: fxV2, Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_MONITORED},
		&fieldsyncv1.Household{Id: "h3", AreaCode: fxV2, Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY},
		p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13,
		&fieldsyncv1.Clinic{Id: "c1", AreaCode: fxV1}, &fieldsyncv1.Clinic{Id: "c2", AreaCode: fxV2},
		&fieldsyncv1.Clinic{Id: "c3", AreaCode: fxV2}, // never audited
		// Outside Window12(D) (its day is AddMonths(D, −12)): answers nothing.
		&fieldsyncv1.HouseholdVisit{Id: "v0", AreaCode: fxV1, HouseholdId: "h1", Campaign: "2025-回头看", StartedAt: at(2025, 10, 31, 10, 0),
			Findings: []*fieldsyncv1.MemberFinding{{PersonId: "p1", KnowsContractedDoctor: yes,
				Satisfaction: fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED}}},
		&fieldsyncv1.HouseholdVisit{Id: "va", AreaCode: fxV1, HouseholdId: "h1", Campaign: campaign, StartedAt: at(2026, 10, 10, 10, 0),
			Findings: []*fieldsyncv1.MemberFinding{
				{PersonId: "p2", ContractServedOnTime: yes, KnowsContractedDoctor: yes, Satisfaction: fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED},
				{PersonId: "p4", ContractServedOnTime: no, Satisfaction: fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED},
			}},
		// Later: p4's served answer changes; p2's answers stand, unasked.
		&fieldsyncv1.HouseholdVisit{Id: "vb", AreaCode: fxV1, HouseholdId: "h1", Campaign: campaign, StartedAt: at(2026, 10, 20, 10, 0),
			Findings: []*fieldsyncv1.MemberFinding{
				{PersonId: "p2"},
				{PersonId: "p4", ContractServedOnTime: yes},
				{PersonId: "p10", MajorIllnessTreated: yes, MajorIllnessReviewed: yes, SafetyNetApplied: yes,
					OutOfPocketFen: proto.Int64(15000), TotalMedicalCostFen: proto.Int64(100000)}, // 15 % self-paid
			}},
		&fieldsyncv1.HouseholdVisit{Id: "vc", AreaCode: fxV2, HouseholdId: "h2", Campaign: campaign, StartedAt: at(2026, 10, 15, 10, 0),
			Findings: []*fieldsyncv1.MemberFinding{{PersonId: "p11", ContractServedOnTime: yes, KnowsContractedDoctor: no, CanExplainKanbing_120: yes}}},
		a0, a1, a2, passingAudit("a2-old", fxV2, "c2", at(2025, 10, 31, 10, 0)),
		fu("f4a", "p4", htn, at(2025, 10, 31, 15, 0), clinic, day(2026, 1, 31)), // the window's last excluded day
		fu("f4c", "p4", htn, at(2026, 2, 1, 10, 0), home, day(2026, 5, 1)),
		fu("f4d", "p4", htn, at(2026, 5, 1, 10, 0), clinic, day(2026, 8, 1)),
		fu("f4f", "p4", htn, at(2026, 10, 31, 22, 0), clinic, day(2027, 1, 31)),
		fu("f5b", "p5", htn, at(2025, 11, 1, 0, 0), clinic, day(2026, 2, 1)), // the window's first instant
		fu("f5c", "p5", htn, at(2026, 2, 1, 10, 0), home, day(2026, 5, 1)),
		fu("f5d", "p5", htn, at(2026, 5, 1, 10, 0), clinic, day(2026, 8, 1)),
		fu("f5f", "p5", htn, at(2026, 10, 31, 22, 0), clinic, day(2027, 1, 31)),
		fu("f6c", "p6", htn, at(2026, 2, 1, 10, 0), home, day(2026, 5, 1)),
		fu("f6d", "p6", htn, at(2026, 5, 1, 10, 0), clinic, day(2026, 8, 1)),
		fu("f6g", "p6", htn, at(2026, 8, 1, 10, 0), clinic, day(2026, 11, 1)),
		fu("f6p", "p6", htn, at(2026, 10, 20, 10, 0), phone, day(2026, 10, 30)),
		fu("f7", "p7", dm, at(2026, 7, 31, 10, 0), clinic, day(2026, 10, 31)),
		fu("f8", "p8", dm, at(2026, 7, 30, 10, 0), clinic, day(2026, 10, 30)),
		// Raised, rectified, verified, reopened (the record's status now OPEN).
		&fieldsyncv1.Problem{Id: "pr1", AreaCode: fxV1, Severity: fieldsyncv1.Severity_SEVERITY_CRITICAL, Deadline: day(2026, 10, 1),
			Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, RaisedAt: at(2026, 9, 1, 10, 0), RectifiedAt: at(2026, 9, 10, 10, 0),
			VerifiedAt: at(2026, 9, 20, 10, 0), ReopenedAt: at(2026, 10, 5, 10, 0)},
		// Rectified and reopened at the same instant: RECTIFIED wins the tie.
		&fieldsyncv1.Problem{Id: "pr2", AreaCode: fxV2, Severity: fieldsyncv1.Severity_SEVERITY_NORMAL, Deadline: day(2026, 9, 5),
			Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, RaisedAt: at(2026, 9, 1, 10, 0), RectifiedAt: at(2026, 9, 2, 10, 0),
			ReopenedAt: at(2026, 9, 2, 10, 0), VerifiedAt: at(2026, 9, 3, 10, 0)},
		// Two flags on p2: one unit.
		&fieldsyncv1.RiskFlag{Id: "r1", AreaCode: fxV1, HouseholdId: "h1", PersonId: "p2", FlaggedAt: at(2026, 10, 10, 12, 0),
			Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN},
		// On the deceased p3: never counted.
		&fieldsyncv1.RiskFlag{Id: "r0", AreaCode: fxV1, HouseholdId: "h1", PersonId: "p3", FlaggedAt: at(2026, 10, 9, 12, 0),
			Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN},
		&fieldsyncv1.RiskFlag{Id: "r2", AreaCode: fxV1, HouseholdId: "h1", PersonId: "p2", FlaggedAt: at(2026, 10, 11, 12, 0),
			Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_FORWARDED},
		// A closed flag on p11, and an open one whose area is wrong: p11 counts where it lives.
		&fieldsyncv1.RiskFlag{Id: "r3", AreaCode: fxV2, HouseholdId: "h2", PersonId: "p11", FlaggedAt: at(2026, 10, 15, 12, 0),
			Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_CLOSED},
		&fieldsyncv1.RiskFlag{Id: "r5", AreaCode: fxV1, HouseholdId: "h2", PersonId: "p11", FlaggedAt: at(2026, 10, 16, 12, 0),
			Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN},
		// A flag on household h2 as a whole.
		&fieldsyncv1.RiskFlag{Id: "r4", AreaCode: fxV2, HouseholdId: "h2", FlaggedAt: at(2026, 10, 15, 12, 0),
			Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN},
	)
}

// TestReferenceBoundaries checks the definitions' edges on a hand-made
// county: against hand-computed values, and every key against the reference.
func TestReferenceBoundaries(t *testing.T) {
	recs := boundaryFixture()
	s := newSet(recs)
	c := newRefCounty(recs)
	layout := refLayout{county: "532523000000", villages: []string{fxV1, fxV2}}
	now := time.Date(2026, 12, 31, 0, 0, 0, 0, survey.ChinaTime)
	type want struct {
		area string
		key  indicators.Key
		v    indicators.Value
	}
	rate := func(area string, key indicators.Key, num, den int64) want {
		return want{area, key, indicators.Value{Num: num, Den: den}}
	}
	n := func(area string, key indicators.Key, num int64) want { return rate(area, key, num, 0) }
	// At D = 2026-10-31.
	atD := []want{
		rate(fxV1, "contract_rate", 2, 9), // p2, p4; p1's expired on D; p3 deceased
		rate(fxV1, "service_rate", 2, 2),  // p4's later answer wins; p2's stands
		rate(fxV1, "health_record_rate", 1, 9),
		rate(fxV1, "health_check_rate", 1, 1), // p1, 64, checked 1 January; p2 is 6
		rate(fxV1, "plan_rate", 1, 6),         // p4, p5, p6, p7, p8, p10; not p9 (diagnosed after D)
		rate(fxV1, "htn_standard_mgmt_rate", 1, 3),
		rate(fxV1, "dm_standard_mgmt_rate", 0, 3),
		n(fxV1, "followups_due", 4),     // p6 (the phone follow-up's day), p7, p8, p10
		n(fxV1, "followups_overdue", 3), // p6, p8, p10
		rate(fxV1, "major_illness_treated_rate", 1, 1),
		rate(fxV1, "chronic_contract_mgmt_rate", 1, 6),
		rate(fxV1, "severe_illness_safety_net_rate", 0, 1), // 15 % self-paid
		rate(fxV1, "policy_awareness_rate", 1, 1),
		rate(fxV1, "satisfaction_rate", 1, 2),
		rate(fxV1, "visit_coverage", 1, 1),
		rate(fxV1, "clinic_compliance", 1, 1),
		rate(fxV1, "clinic_compliance.doctor", 1, 1),
		rate(fxV1, "clinic_compliance.floor_area", 1, 1),
		n(fxV1, "risk_flagged", 1),
		rate(fxV2, "contract_rate", 1, 2), // p11, p13; not p12
		rate(fxV2, "health_check_rate", 0, 2),
		rate(fxV2, "plan_rate", 0, 0),
		rate(fxV2, "htn_standard_mgmt_rate", 0, 0),
		rate(fxV2, "dm_standard_mgmt_rate", 0, 0),
		rate(fxV2, "chronic_contract_mgmt_rate", 0, 0),
		n(fxV2, "followups_due", 0),
		rate(fxV2, "visit_coverage", 1, 2),
		rate(fxV2, "policy_awareness_rate", 0, 1),
		rate(fxV2, "policy_awareness_rate.contracted_doctor", 0, 1),
		rate(fxV2, "policy_awareness_rate.kanbing_120", 1, 1),
		rate(fxV2, "policy_awareness_rate.hospital_doctor", 0, 0),
		rate(fxV2, "satisfaction_rate", 0, 0),
		rate(fxV2, "clinic_compliance", 0, 1),
		rate(fxV2, "clinic_compliance.floor_area", 0, 1),
		rate(fxV2, "clinic_compliance.doctor", 0, 1),
		rate(fxV2, "clinic_compliance.running.heating", 0, 0),
		rate(fxV2, "clinic_compliance.running.water", 1, 1),
		n(fxV2, "risk_flagged", 2), // h2 and p11
	}
	// The problems at days between their events: pr1 (critical, deadline
	// 1 October) in village 1, pr2 (deadline 5 September) in village 2.
	type ledger struct{ open, critical, overdue, closed, open2, closed2 int64 }
	days := []struct {
		d *fieldsyncv1.Date
		ledger
	}{
		{day(2026, 8, 31), ledger{}},                 // neither raised
		{day(2026, 9, 1), ledger{1, 1, 0, 0, 1, 0}},  // both raised
		{day(2026, 9, 2), ledger{1, 1, 0, 0, 0, 0}},  // pr2 rectified and reopened: rectified wins
		{day(2026, 9, 5), ledger{1, 1, 0, 0, 0, 1}},  // pr2 verified
		{day(2026, 9, 10), ledger{0, 0, 0, 0, 0, 1}}, // pr1 rectified
		{day(2026, 9, 20), ledger{0, 0, 0, 1, 0, 1}}, // pr1 verified
		{day(2026, 10, 4), ledger{0, 0, 0, 1, 0, 1}}, // the day before pr1's reopening
		{day(2026, 10, 5), ledger{1, 1, 1, 0, 0, 1}}, // pr1 reopened, past its deadline
		{day(2026, 10, 31), ledger{1, 1, 1, 0, 0, 1}},
	}
	for _, tc := range days {
		label := "fixture " + survey.FormatDate(tc.d)
		got := compute(t, s, "532523", tc.d, now)
		ref := newRefDay(tc.d, "532523")
		ref.compute(c)
		checkReport(t, label, layout, ref.rows, got)

		rows := map[string]map[indicators.Key]indicators.Value{}
		for _, r := range got.Rows {
			rows[r.Area] = r.Values
		}
		ws := []want{
			n(fxV1, "problems_open", tc.open), n(fxV1, "critical_problems_open", tc.critical),
			n(fxV1, "problems_overdue", tc.overdue), n(fxV1, "problems_closed", tc.closed),
			n(fxV2, "problems_open", tc.open2), n(fxV2, "problems_closed", tc.closed2), n(fxV2, "problems_overdue", 0),
		}
		if survey.CompareDates(tc.d, day(2026, 10, 31)) == 0 {
			ws = append(ws, atD...)
			if got.Campaign != "2026-回头看" {
				t.Errorf("%s: Campaign %q, want 2026-回头看", label, got.Campaign)
			}
		}
		for _, w := range ws {
			if g := rows[w.area][w.key]; g != w.v {
				t.Errorf("%s: %s in %s = %v, want %v", label, w.key, w.area, g, w.v)
			}
			if r := ref.rows[w.area][w.key]; r != w.v {
				t.Errorf("%s: the reference's %s in %s = %v, want %v (bug in the test)", label, w.key, w.area, r, w.v)
			}
		}
	}

	for _, tc := range []struct {
		num, den int64
		want     string
	}{{6118, 6666, "91.78"}, {1379, 1511, "91.26"}, {147, 159, "92.45"}, {1, 0, ""}} {
		if got := indicators.Percent(tc.num, tc.den); got != tc.want {
			t.Errorf("Percent(%d, %d) = %q, want %q", tc.num, tc.den, got, tc.want)
		}
	}
}
