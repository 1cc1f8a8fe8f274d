package countygen

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// dateOf returns midnight CST of a proto date.
func dateOf(d *fieldsyncv1.Date) time.Time {
	return time.Date(int(d.Year), time.Month(d.Month), int(d.Day), 0, 0, 0, 0, cst)
}

// wantControl returns the state of control the rule gives a hypertension or
// diabetes follow-up's measurements.
func wantControl(f *fieldsyncv1.FollowUp) control {
	if f.Disease == hypertension {
		switch sbp, dbp := f.GetSystolicMmhg(), f.GetDiastolicMmhg(); {
		case sbp >= 180 || dbp >= 110:
			return emergency
		case sbp >= 140 || dbp >= 90:
			return uncontrolled
		}
		return controlled
	}
	switch g := f.GetFastingGlucoseMmolL(); {
	case g >= 16.7 || g <= 3.9:
		return emergency
	case g >= 7.0:
		return uncontrolled
	}
	return controlled
}

func TestFollowUps(t *testing.T) {
	g := medium()
	asOf := g.Config().AsOf
	people := map[string]*Person{}
	g.County.EachPerson(func(p *Person) { people[p.ID] = p })
	faceToFace, lastDue := map[string]int{}, map[string]time.Time{}
	var unsatisfactory, emergencies ratio
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		f := r.GetFollowUp()
		if f == nil {
			return
		}
		p, at := people[f.PersonId], f.FollowedUpAt.AsTime()
		if !p.Has(f.Disease) || !p.Alive() {
			t.Errorf("follow-up %s of %v for person %s who does not have it or is deceased", f.Id, f.Disease, p.ID)
		}
		if at.Before(dayOf(asOf).Add(-days(365))) || !at.Before(asOf) {
			t.Errorf("follow-up %s at %v, want in the year before %v", f.Id, at, asOf)
		}
		if due := dateOf(f.NextDueOn); !due.After(dayOf(at)) {
			t.Errorf("follow-up %s at %v due again %v", f.Id, at, due)
		}
		switch f.Disease {
		case hypertension, diabetes:
			checkChronicFollowUp(t, f)
			state := wantControl(f)
			unsatisfactory.add(true, state != controlled)
			emergencies.add(true, state == emergency)
			if f.Disease == hypertension && f.Method != fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE {
				faceToFace[p.ID]++
			}
			if f.Disease == hypertension {
				lastDue[p.ID] = dateOf(f.NextDueOn)
			}
		case mental:
			if f.MentalRiskLevel == nil || f.GetMentalRiskLevel() > 5 {
				t.Errorf("mental follow-up %s: risk level %v", f.Id, f.MentalRiskLevel)
			}
		case tuberculosis:
			if f.TbPhase == fieldsyncv1.TbTreatmentPhase_TB_TREATMENT_PHASE_UNSPECIFIED {
				t.Errorf("tuberculosis follow-up %s without a phase", f.Id)
			}
		}
	})
	checkPercent(t, "unsatisfactory hypertension and diabetes follow-ups", unsatisfactory, 15, 40)
	checkPercent(t, "emergencies", emergencies, 0.5, 4)
	var standard, overdue ratio
	g.County.EachPerson(func(p *Person) {
		home := p.Has(hypertension) && p.Residency == fieldsyncv1.Residency_RESIDENCY_AT_HOME
		standard.add(home, faceToFace[p.ID] >= 4)
		overdue.add(home, lastDue[p.ID].Before(asOf))
	})
	checkPercent(t, "hypertension patients at home under standard management", standard, 75, 97)
	checkPercent(t, "hypertension patients at home overdue", overdue, 0.5, 20)
}

// checkChronicFollowUp checks a hypertension or diabetes follow-up against the
// rule: classification, urgent referral and next due date as
// survey.AssessFollowUp gives them, and the vitals against the thresholds.
func checkChronicFollowUp(t *testing.T, f *fieldsyncv1.FollowUp) {
	t.Helper()
	a := survey.AssessFollowUp(f)
	if f.Classification != a.Classification {
		t.Errorf("follow-up %s classified %v, survey.AssessFollowUp says %v", f.Id, f.Classification, a.Classification)
	}
	if got := f.GetReferral().GetUrgent(); got != a.UrgentReferral {
		t.Errorf("follow-up %s: urgent referral %v, survey.AssessFollowUp says %v", f.Id, got, a.UrgentReferral)
	}
	if got, want := dateOf(f.NextDueOn), dateOf(a.NextDue); !got.Equal(want) {
		t.Errorf("follow-up %s: next due %v, survey.AssessFollowUp says %v", f.Id, got, want)
	}
	state, day := wantControl(f), dayOf(f.FollowedUpAt.AsTime())
	if got, want := f.Classification == uncontrolledClass, state != controlled; got != want {
		t.Errorf("follow-up %s in state %d classified %v", f.Id, state, f.Classification)
	}
	if want := dateOf(survey.AddMonths(survey.Today(day), 3)); f.Classification == controlledClass && !dateOf(f.NextDueOn).Equal(want) {
		t.Errorf("satisfactory follow-up %s on %v due %v, want 3 months later (%v)", f.Id, day, dateOf(f.NextDueOn), want)
	}
	if f.Classification == uncontrolledClass && !dateOf(f.NextDueOn).Equal(day.Add(days(14))) {
		t.Errorf("unsatisfactory follow-up %s on %v due %v, want 2 weeks later", f.Id, day, dateOf(f.NextDueOn))
	}
	if sbp, dbp := f.SystolicMmhg, f.DiastolicMmhg; sbp != nil && *dbp >= *sbp {
		t.Errorf("follow-up %s: DBP %d not below SBP %d", f.Id, *dbp, *sbp)
	}
}

// ledger collects a county's survey records and what they raised, keyed by
// the id of the raising record.
type ledger struct {
	people   map[string]*fieldsyncv1.Person
	visits   []*fieldsyncv1.HouseholdVisit // first visit of each household
	audits   []*fieldsyncv1.ClinicAudit
	problems map[string][]string // items by source record
	flags    map[string][]string // person ids by source record
	critical int
}

func collectLedger(t *testing.T, g *Generator) *ledger {
	t.Helper()
	l := &ledger{people: map[string]*fieldsyncv1.Person{}, problems: map[string][]string{}, flags: map[string][]string{}}
	visited := map[string]bool{}
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		switch b := r.Body.(type) {
		case *fieldsyncv1.Record_Person:
			l.people[b.Person.Id] = b.Person
		case *fieldsyncv1.Record_HouseholdVisit:
			if !visited[b.HouseholdVisit.HouseholdId] {
				visited[b.HouseholdVisit.HouseholdId] = true
				l.visits = append(l.visits, b.HouseholdVisit)
			}
		case *fieldsyncv1.Record_ClinicAudit:
			l.audits = append(l.audits, b.ClinicAudit)
		case *fieldsyncv1.Record_Problem:
			checkLifecycle(t, b.Problem)
			l.problems[b.Problem.SourceRecordId] = append(l.problems[b.Problem.SourceRecordId], b.Problem.Item)
			if b.Problem.Severity == fieldsyncv1.Severity_SEVERITY_CRITICAL {
				l.critical++
			}
		case *fieldsyncv1.Record_RiskFlag:
			l.flags[b.RiskFlag.SourceRecordId] = append(l.flags[b.RiskFlag.SourceRecordId], b.RiskFlag.PersonId)
		}
	})
	return l
}

// equalSets reports whether a and b hold the same strings, in any order.
func equalSets(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func problemItems(ps []*fieldsyncv1.Problem) []string {
	var items []string
	for _, p := range ps {
		items = append(items, p.Item)
	}
	return items
}

// TestProblemsAndFlags checks that the ledger is what survey's rules raise:
// for every audit, for the first visit of every household, and the
// risk flags of the first visit of every household.
func TestProblemsAndFlags(t *testing.T) {
	g := medium()
	rules := survey.DefaultRules()
	rules.SelfPayThresholdBP = int32(g.Config().SelfPayThresholdBP)
	l := collectLedger(t, g)
	households := map[string]*fieldsyncv1.Household{}
	for _, v := range g.County.Villages() {
		for _, h := range v.Households {
			households[h.ID] = &fieldsyncv1.Household{Id: h.ID, Status: h.Status}
		}
		numbers := v.Numbers().StatedNumbers()
		for _, a := range l.audits {
			if a.ClinicId != v.Clinic.ID {
				continue
			}
			if got, want := l.problems[a.Id], problemItems(rules.ClinicAuditProblems(a, numbers)); !equalSets(got, want) {
				t.Errorf("audit %s raised %v, survey's rules raise %v", a.Id, got, want)
			}
		}
	}
	problems, flags := 0, 0
	for _, hv := range l.visits {
		want := problemItems(rules.HouseholdVisitProblems(hv, households[hv.HouseholdId], l.people))
		if got := l.problems[hv.Id]; !equalSets(got, want) {
			t.Errorf("visit %s raised %v, survey's rules raise %v", hv.Id, got, want)
		}
		var flagged []string
		for _, f := range rules.RiskFlags(hv) {
			flagged = append(flagged, f.PersonId)
		}
		if got := l.flags[hv.Id]; !equalSets(got, flagged) {
			t.Errorf("visit %s flagged %v, survey's rules flag %v", hv.Id, got, flagged)
		}
		problems, flags = problems+len(want), flags+len(flagged)
	}
	if problems == 0 || l.critical == 0 || flags == 0 {
		t.Errorf("got %d visit problems (%d critical in all) and %d risk flags, want some of each", problems, l.critical, flags)
	}
}

// checkLifecycle checks that a problem's times follow its status.
func checkLifecycle(t *testing.T, p *fieldsyncv1.Problem) {
	t.Helper()
	raised, rectified, verified := p.RaisedAt.AsTime(), p.RectifiedAt, p.VerifiedAt
	switch p.Status {
	case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN:
		if rectified != nil || verified != nil {
			t.Errorf("open problem %s has rectified or verified times", p.Id)
		}
	case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED:
		if rectified == nil || verified != nil || rectified.AsTime().Before(raised) {
			t.Errorf("rectified problem %s: raised %v, rectified %v, verified %v", p.Id, raised, rectified, verified)
		}
	case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED:
		if rectified == nil || verified == nil || rectified.AsTime().Before(raised) ||
			verified.AsTime().Before(rectified.AsTime()) || p.VerifiedByWorkerId == "" {
			t.Errorf("verified problem %s: raised %v, rectified %v, verified %v by %q", p.Id, raised, rectified, verified, p.VerifiedByWorkerId)
		}
	default:
		t.Errorf("problem %s has status %v", p.Id, p.Status)
	}
}

// pastDates names the date fields that record something that has happened.
var pastDates = map[protoreflect.Name]bool{"birth_date": true, "signed_on": true, "diagnosed_on": true, "last_health_check_on": true}

// checkTimes fails the test for any timestamp or past date in m after asOf.
func checkTimes(t *testing.T, m protoreflect.Message, asOf time.Time) {
	t.Helper()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				checkTimes(t, v.List().Get(i).Message(), asOf)
			}
		case fd.Message().FullName() == "google.protobuf.Timestamp":
			if at := v.Message().Interface().(*timestamppb.Timestamp).AsTime(); at.After(asOf) {
				t.Errorf("%s = %v, after %v", fd.FullName(), at, asOf)
			}
		case pastDates[fd.Name()]:
			if d := dateOf(v.Message().Interface().(*fieldsyncv1.Date)); d.After(asOf) {
				t.Errorf("%s = %v, after %v", fd.FullName(), d, asOf)
			}
		default:
			checkTimes(t, v.Message(), asOf)
		}
		return true
	})
}
