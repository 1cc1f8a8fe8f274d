package countygen

import (
	"testing"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// ratio counts how many of some people have a property.
type ratio struct{ of, n int }

func (r *ratio) add(in, has bool) {
	if !in {
		return
	}
	r.of++
	if has {
		r.n++
	}
}

func (r ratio) percent() float64 { return 100 * float64(r.n) / float64(max(r.of, 1)) }

// checkPercent fails the test when r is outside [lo, hi] percent.
func checkPercent(t *testing.T, name string, r ratio, lo, hi float64) {
	t.Helper()
	if got := r.percent(); got < lo || got > hi {
		t.Errorf("%s = %.2f %% (%d of %d), want %.2f to %.2f %%", name, got, r.n, r.of, lo, hi)
	}
}

const (
	residencyAway   = fieldsyncv1.Residency_RESIDENCY_WORKING_AWAY
	residencySchool = fieldsyncv1.Residency_RESIDENCY_AT_SCHOOL
	residencyDead   = fieldsyncv1.Residency_RESIDENCY_DECEASED
)

func TestPrevalence(t *testing.T) {
	g := newGenerator(t, Config{People: 30000, Seed: 3})
	asOf := g.Config().AsOf
	var htn, dm, smd, tb, major, away, school, dead, disabled ratio
	var contract, record, plan, status ratio
	g.County.EachPerson(func(p *Person) {
		age := p.Age(asOf)
		htn.add(age >= 35, p.Has(hypertension))
		dm.add(age >= 35, p.Has(diabetes))
		smd.add(true, p.Has(mental))
		tb.add(true, p.Has(tuberculosis))
		major.add(true, p.MajorIllness())
		away.add(age >= 18 && age <= 55, p.Residency == residencyAway)
		school.add(age >= 7 && age <= 22, p.Residency == residencySchool)
		dead.add(true, p.Residency == residencyDead)
		disabled.add(true, p.Disabled)
	})
	households := 0
	for _, v := range g.County.Villages() {
		for _, h := range v.Households {
			households++
			status.add(h.Registered(), h.Status == fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_REGISTERED_OUT_OF_POVERTY)
			for _, p := range h.Members {
				contract.add(h.Registered(), p.Contract)
				record.add(h.Registered(), p.HealthRecord)
				plan.add(h.Registered() && p.Chronic(), p.OnePersonPlan)
			}
		}
	}
	checkPercent(t, "hypertension among people 35 and over", htn, 15, 25)
	checkPercent(t, "diabetes among people 35 and over", dm, 4, 8)
	if htn.n < 2*dm.n {
		t.Errorf("hypertension patients %d, want at least twice the diabetes patients %d", htn.n, dm.n)
	}
	checkPercent(t, "severe mental disorder", smd, 0.3, 0.8)
	checkPercent(t, "tuberculosis", tb, 0.03, 0.2)
	checkPercent(t, "major illness", major, 0.05, 0.5)
	checkPercent(t, "working away among 18–55", away, 20, 40)
	checkPercent(t, "at school among 7–22", school, 20, 50)
	checkPercent(t, "deceased", dead, 0.02, 1)
	checkPercent(t, "disabled", disabled, 2, 6)
	checkPercent(t, "脱贫户 among registered households", status, 75, 90)
	checkPercent(t, "contract among registered people", contract, 96.5, 99.5)
	checkPercent(t, "health record among registered people", record, 95, 99.5)
	checkPercent(t, "一人一策 among registered chronic patients", plan, 93, 98.5)
	if got := float64(g.County.People()) / float64(households); got < 3.2 || got > 4.5 {
		t.Errorf("people per household = %.2f, want 3.2 to 4.5", got)
	}
}

func TestVisits(t *testing.T) {
	g := medium()
	cfg := g.Config()
	campStart := dayOf(cfg.AsOf).Add(-days(cfg.CampaignDays))
	households, people := map[string]*Household{}, map[string]*Person{}
	for _, v := range g.County.Villages() {
		for _, h := range v.Households {
			households[h.ID] = h
			for _, p := range h.Members {
				people[p.ID] = p
			}
		}
	}
	visited := map[string]int{}
	var dissatisfied, spending ratio
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		hv := r.GetHouseholdVisit()
		if hv == nil {
			return
		}
		h := households[hv.HouseholdId]
		visited[h.ID]++
		if at := hv.StartedAt.AsTime(); at.Before(campStart) || !at.Before(cfg.AsOf) || hv.Campaign != cfg.Campaign {
			t.Errorf("visit %s at %v in %q, want in campaign %q from %v to %v", hv.Id, at, hv.Campaign, cfg.Campaign, campStart, cfg.AsOf)
		}
		if got, want := len(hv.Findings), len(h.Members); got != want {
			t.Fatalf("visit %s has %d findings, want one per member (%d)", hv.Id, got, want)
		}
		for i, f := range hv.Findings {
			p := h.Members[i]
			checkFinding(t, p, f)
			dissatisfied.add(f.Satisfaction != fieldsyncv1.Satisfaction_SATISFACTION_UNSPECIFIED,
				f.Satisfaction == fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED)
			spending.add(f.Satisfaction != fieldsyncv1.Satisfaction_SATISFACTION_UNSPECIFIED, f.TotalMedicalCostFen != nil)
		}
	})
	for id, h := range households {
		if visited[id] == 0 {
			t.Errorf("household %s (%s) was not visited in the campaign", id, h.Address)
		}
	}
	checkPercent(t, "dissatisfied among members asked", dissatisfied, 2, 7)
	checkPercent(t, "medical spending recorded among members asked", spending, 10, 35)
}

// checkFinding checks that a finding agrees with the person it is about.
func checkFinding(t *testing.T, p *Person, f *fieldsyncv1.MemberFinding) {
	t.Helper()
	if f.PersonId != p.ID {
		t.Fatalf("finding for %s, want %s", f.PersonId, p.ID)
	}
	reason, absent := AbsenceReason(p.Residency)
	if got, want := f.Presence == fieldsyncv1.Presence_PRESENCE_ABSENT, absent; got != want {
		t.Errorf("person %s of residency %v: absent %v, want %v", p.ID, p.Residency, got, want)
	}
	if absent && f.AbsenceReason != reason {
		t.Errorf("person %s of residency %v: absence reason %v, want %v", p.ID, p.Residency, f.AbsenceReason, reason)
	}
	if !p.Alive() {
		return
	}
	if got, want := f.OnePersonPlanPresent != nil, p.Chronic(); got != want {
		t.Errorf("person %s chronic %v: one_person_plan_present set %v", p.ID, want, got)
	}
	if p.Chronic() && f.GetOnePersonPlanPresent() != p.OnePersonPlan {
		t.Errorf("person %s: one_person_plan_present %v, registry %v", p.ID, f.GetOnePersonPlanPresent(), p.OnePersonPlan)
	}
	if f.GetContractSigned() != p.Contract {
		t.Errorf("person %s: contract_signed %v, registry %v", p.ID, f.GetContractSigned(), p.Contract)
	}
	if f.OutOfPocketFen != nil && (f.GetOutOfPocketFen() < 0 || f.GetOutOfPocketFen() > f.GetTotalMedicalCostFen()) {
		t.Errorf("person %s: out of pocket %d of total %d fen", p.ID, f.GetOutOfPocketFen(), f.GetTotalMedicalCostFen())
	}
	if f.Satisfaction == fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED && f.DissatisfactionReason == "" {
		t.Errorf("person %s dissatisfied without a reason", p.ID)
	}
}

func TestAudits(t *testing.T) {
	g := medium()
	audits := map[string]int{}
	var smallArea, fewDrugs, exact ratio
	numbers := map[string]Numbers{}
	for _, v := range g.County.Villages() {
		numbers[v.Clinic.ID] = v.Numbers()
	}
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		a := r.GetClinicAudit()
		if a == nil {
			return
		}
		audits[a.ClinicId]++
		smallArea.add(true, a.GetFloorAreaM2() < 60)
		fewDrugs.add(true, a.GetEssentialDrugKinds() < 80)
		n, s := numbers[a.ClinicId], a.StatedNumbers
		for _, p := range []struct {
			said *int32
			want int
		}{{s.RegisteredPoorPeople, n.RegisteredPoorPeople}, {s.SickPeople, n.SickPeople},
			{s.ChronicHandbooksIssued, n.ChronicHandbooksIssued}, {s.OnePersonPlansHeld, n.OnePersonPlansHeld},
			{s.MajorIllnessTreated, n.MajorIllnessTreated}} {
			exact.add(true, p.said != nil && int(*p.said) == p.want)
			if p.said != nil && (int(*p.said) < p.want-2 || int(*p.said) > p.want+2) {
				t.Errorf("clinic %s: stated %d, registry %d: want within 2", a.ClinicId, *p.said, p.want)
			}
		}
	})
	for id := range numbers {
		if audits[id] < 2 {
			t.Errorf("clinic %s audited %d times, want at least 2", id, audits[id])
		}
	}
	checkPercent(t, "audits finding under 60 m²", smallArea, 1, 40)
	checkPercent(t, "audits finding under 80 drug kinds", fewDrugs, 1, 40)
	checkPercent(t, "一口清 numbers stated exactly", exact, 80, 97)
}
