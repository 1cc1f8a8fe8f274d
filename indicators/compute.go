package indicators

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// Set holds the merged records an indicator report is computed from: those of
// the area asked for, and the records they name wherever they lie (the visits
// of a household that moved in, the follow-ups of its people). Add every
// record the server holds of the area; deleted records are not added.
type Set struct {
	persons    []person
	households map[string]*fieldsyncv1.Household
	clinics    []*fieldsyncv1.Clinic
	visits     []*fieldsyncv1.HouseholdVisit
	audits     []*fieldsyncv1.ClinicAudit
	followUps  map[string][]*fieldsyncv1.FollowUp // by person id
	problems   []*fieldsyncv1.Problem
	flags      []*fieldsyncv1.RiskFlag
	devices    []Device
}

type person struct {
	p        *fieldsyncv1.Person
	recorded time.Time // when its conditions were last written
}

// Device is a device in the server's registry, for devices_not_synced_3d.
type Device struct {
	// ID is its replica id and Name its label, for lists.
	ID, Name string
	// Areas are the area prefixes it serves.
	Areas []string
	// Enrolled and LastSync (zero if it never completed a sync).
	Enrolled, LastSync time.Time
	Revoked, Relay     bool
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{households: map[string]*fieldsyncv1.Household{}, followUps: map[string][]*fieldsyncv1.FollowUp{}}
}

// Add adds a record's merged state. For a Person, conditionsRecorded is when
// its conditions were last written (the stamp of the winning write): the day
// a patient never followed up and without a diagnosis date is due from.
func (s *Set) Add(rec *fieldsyncv1.Record, conditionsRecorded time.Time) {
	switch b := rec.GetBody().(type) {
	case *fieldsyncv1.Record_Person:
		s.persons = append(s.persons, person{b.Person, conditionsRecorded})
	case *fieldsyncv1.Record_Household:
		s.households[b.Household.GetId()] = b.Household
	case *fieldsyncv1.Record_Clinic:
		s.clinics = append(s.clinics, b.Clinic)
	case *fieldsyncv1.Record_HouseholdVisit:
		s.visits = append(s.visits, b.HouseholdVisit)
	case *fieldsyncv1.Record_ClinicAudit:
		s.audits = append(s.audits, b.ClinicAudit)
	case *fieldsyncv1.Record_FollowUp:
		id := b.FollowUp.GetPersonId()
		s.followUps[id] = append(s.followUps[id], b.FollowUp)
	case *fieldsyncv1.Record_Problem:
		s.problems = append(s.problems, b.Problem)
	case *fieldsyncv1.Record_RiskFlag:
		s.flags = append(s.flags, b.RiskFlag)
	}
}

// AddDevice adds a device of the server's registry.
func (s *Set) AddDevice(d Device) { s.devices = append(s.devices, d) }

// Options say what report to compute.
type Options struct {
	// Area is the area asked for: a county (6 digits), township (9) or
	// village (12) code, or one padded with zeros to 12 digits.
	Area string
	// Depth is the lowest level of rows (Village when zero).
	Depth Level
	// AsOf is the day (its calendar day in China Standard Time); it may not
	// be after Now's.
	AsOf time.Time
	// Campaign is the campaign visit_coverage counts; "" means the campaign of
	// the latest visit of the area by AsOf.
	Campaign string
	// HealthCheckFrom starts health_check_rate's period; zero means 1 January
	// of AsOf's year.
	HealthCheckFrom time.Time
	// Rules are the thresholds in force (clinic floor area, essential
	// medicines, the self-pay share).
	Rules survey.Rules
	// Now is the time of the computation (devices_not_synced_3d).
	Now time.Time
	// List names an indicator whose units Report.Items lists: those not
	// achieving a rate, those a count counts; "" lists nothing.
	List Key
}

// StaleAfter is how long a device may go without a completed sync before
// devices_not_synced_3d counts it.
const StaleAfter = 72 * time.Hour

// ContractTerm is how long a family-doctor contract runs from its signing.
const ContractTerm = 12 // months

// ErrBadArea is returned for an area that is not a county, township or
// village code.
var ErrBadArea = errors.New("not a county, township or village code")

// acc sums the indicators of villages.
type acc map[string]map[Key]*Value

func (a acc) at(village string, k Key) *Value {
	m := a[village]
	if m == nil {
		m = map[Key]*Value{}
		a[village] = m
	}
	v := m[k]
	if v == nil {
		v = &Value{}
		m[k] = v
	}
	return v
}

// rate counts a unit of village in key's denominator, and in its numerator
// when ok.
func (a acc) rate(village string, k Key, ok bool) {
	v := a.at(village, k)
	v.Den++
	if ok {
		v.Num++
	}
}

// count counts a unit of village in key.
func (a acc) count(village string, k Key) { a.at(village, k).Num++ }

// Item is a unit behind an indicator's number (Options.List): a unit not
// achieving a rate (a person without a contract, a household not visited),
// or one a count counts (a patient overdue, an open problem, a device not
// synced).
type Item struct {
	// Area is the village (or, for a device, the area) the unit counts in.
	Area string
	// Kind is "person", "household", "clinic", "problem" or "device".
	Kind string
	// ID is the unit's record id (a device's replica id).
	ID string
	// Name is the person's name, the head of household, the clinic's name, a
	// problem's item or a device's name; MaskedID a person's masked ID
	// number (never the clear one).
	Name, MaskedID string
	// Detail says why it is listed (a due date, a deadline, a last sync), in
	// English; the fields below say the same for a page to word it.
	Detail string
	// Reason is "due" (a follow-up; Disease, Day), "not_visited"
	// (Campaign), "problem" (Status, Day the deadline), "flag" (Status),
	// "device" (LastSync), "clinic", or "" (a unit not achieving a rate;
	// Disease for standard management).
	Reason   string
	Disease  fieldsyncv1.ChronicDisease
	Day      *fieldsyncv1.Date
	Status   string // a problem's or flag's status, the enum's name
	Campaign string
	LastSync time.Time
}

// rate counts the current unit of area in key's denominator, and in its
// numerator when ok; a unit not achieving the listed key is listed.
func (c *computation) rate(area string, k Key, ok bool) {
	c.a.rate(area, k, ok)
	if k == c.o.List && !ok {
		c.list(area)
	}
}

// count counts the current unit of area in key, and lists it for the listed
// key.
func (c *computation) count(area string, k Key) {
	c.a.count(area, k)
	if k == c.o.List {
		c.list(area)
	}
}

func (c *computation) list(area string) {
	it := c.unit
	it.Area = area
	c.items = append(c.items, it)
}

// Compute computes the report o asks for.
func (s *Set) Compute(o Options) (Report, error) {
	prefix, level, err := survey.ParseArea(o.Area)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrBadArea, err)
	}
	depth := cmp.Or(o.Depth, Village)
	if depth < level {
		return Report{}, fmt.Errorf("rows by %v for a %v: ask for a level at or below the area's", depth, level)
	}
	d := survey.Today(o.AsOf)
	if survey.CompareDates(d, survey.Today(o.Now)) > 0 {
		return Report{}, fmt.Errorf("as of %s: a day after today", survey.FormatDate(d))
	}
	day, err := survey.DateTime(d)
	if err != nil {
		return Report{}, err
	}
	c := &computation{Set: s, o: o, prefix: prefix, d: d, day: day, end: day.AddDate(0, 0, 1).Add(-time.Nanosecond), a: acc{}}
	c.windowFrom = survey.AddMonths(d, -12)
	c.checkFrom = survey.Today(o.HealthCheckFrom)
	if o.HealthCheckFrom.IsZero() {
		c.checkFrom = &fieldsyncv1.Date{Year: d.GetYear(), Month: 1, Day: 1}
	}
	c.answers()
	c.persons()
	c.households()
	c.clinics()
	c.problems()
	c.flags()
	c.devices()
	checkFrom, _ := survey.DateTime(c.checkFrom)
	r := Report{AsOf: day, Campaign: c.campaign, HealthCheckFrom: checkFrom, ComputedAt: o.Now}
	r.Rows = c.rows(level, depth)
	slices.SortFunc(c.items, func(a, b Item) int {
		return cmp.Or(cmp.Compare(a.Area, b.Area), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Detail, b.Detail))
	})
	r.Items = c.items
	return r, nil
}

// computation is one report's working state.
type computation struct {
	*Set
	o          Options
	prefix     string
	d          *fieldsyncv1.Date // AsOf's day
	day, end   time.Time         // its midnight and last instant
	windowFrom *fieldsyncv1.Date // the 12 months end at d, start after this day
	checkFrom  *fieldsyncv1.Date
	campaign   string
	answered   map[string]*answers // by person id
	a          acc
	unit       Item   // the unit being counted, for lists
	items      []Item // the units behind Options.List
}

// in reports whether a unit of area counts in the report.
func (c *computation) in(area string) bool {
	return len(area) == 12 && strings.HasPrefix(area, c.prefix)
}

// dayOf is t's calendar day in China Standard Time, nil for no time.
func dayOf(t interface{ AsTime() time.Time }, set bool) *fieldsyncv1.Date {
	if !set {
		return nil
	}
	return survey.Today(t.AsTime())
}

// onOrBefore reports whether d is set and not after the report's day.
func (c *computation) onOrBefore(d *fieldsyncv1.Date) bool {
	return d != nil && survey.CompareDates(d, c.d) <= 0
}

// inWindow reports whether d lies in the 12 months ending on the report's day.
func (c *computation) inWindow(d *fieldsyncv1.Date) bool {
	return c.onOrBefore(d) && survey.CompareDates(d, c.windowFrom) > 0
}

// answers are a person's latest answers in the visits of the 12 months: each
// item from the latest visit that asked it.
type answers struct {
	served, treated, reviewed *bool
	safetyNet                 *fieldsyncv1.MemberFinding // the finding of the latest safety_net_applied
	aware                     [4]*bool                   // knows contracted doctor, hospital doctor, 看病120, 服务111
	satisfied                 *bool
}

// answers collects every person's latest answers from the visits of the 12
// months ending on the report's day, latest visit (by start, then id) last.
func (c *computation) answers() {
	var vs []*fieldsyncv1.HouseholdVisit
	for _, v := range c.visits {
		if c.inWindow(dayOf(v.GetStartedAt(), v.GetStartedAt() != nil)) {
			vs = append(vs, v)
		}
	}
	slices.SortFunc(vs, byStart)
	c.answered = map[string]*answers{}
	for _, v := range vs {
		for _, f := range v.GetFindings() {
			a := c.answered[f.GetPersonId()]
			if a == nil {
				a = &answers{}
				c.answered[f.GetPersonId()] = a
			}
			set(&a.served, f.ContractServedOnTime)
			set(&a.treated, f.MajorIllnessTreated)
			set(&a.reviewed, f.MajorIllnessReviewed)
			if f.SafetyNetApplied != nil {
				a.safetyNet = f
			}
			for i, q := range []*bool{f.KnowsContractedDoctor, f.KnowsSecondaryHospitalDoctor, f.CanExplainKanbing_120, f.CanExplainFuwu_111} {
				set(&a.aware[i], q)
			}
			switch f.GetSatisfaction() {
			case fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED:
				set(&a.satisfied, ptr(true))
			case fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED:
				set(&a.satisfied, ptr(false))
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// set keeps a later answer.
func set(dst **bool, v *bool) {
	if v != nil {
		*dst = v
	}
}

// is reports whether an answer is given and true.
func is(b *bool) bool { return b != nil && *b }

// byStart orders visits by start, then id.
func byStart(a, b *fieldsyncv1.HouseholdVisit) int {
	return cmp.Or(a.GetStartedAt().AsTime().Compare(b.GetStartedAt().AsTime()), cmp.Compare(a.GetId(), b.GetId()))
}

// servicePopulation reports whether p is owed the service 111: a member of a
// household of any status but ORDINARY (a household not held counts as
// registered, as the visit's rules judge it).
func (c *computation) servicePopulation(p *fieldsyncv1.Person) bool {
	h := c.Set.households[p.GetHouseholdId()]
	return h == nil || h.GetStatus() != fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY
}

// persons counts the person-based indicators.
func (c *computation) persons() {
	for _, pp := range c.Set.persons {
		p := pp.p
		area := p.GetAreaCode()
		if !c.in(area) || p.GetResidency() == fieldsyncv1.Residency_RESIDENCY_DECEASED {
			continue
		}
		var conds []*fieldsyncv1.Condition // as of the day
		for _, cd := range p.GetConditions() {
			if cd.GetDisease() != fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_UNSPECIFIED &&
				(cd.GetDiagnosedOn() == nil || c.onOrBefore(cd.GetDiagnosedOn())) {
				conds = append(conds, cd)
			}
		}
		ans := c.answered[p.GetId()]
		if ans == nil {
			ans = &answers{}
		}
		c.unit = Item{Kind: "person", ID: p.GetId(), Name: p.GetName(), MaskedID: p.GetIdNumber().GetMasked()}
		if c.servicePopulation(p) {
			c.servicePerson(area, p, conds, ans)
		}
		for _, disease := range []fieldsyncv1.ChronicDisease{fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION, fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES} {
			var diagnosed *fieldsyncv1.Date
			has := false
			for _, cd := range conds {
				if cd.GetDisease() == disease {
					has = true
					if dd := cd.GetDiagnosedOn(); dd != nil && (diagnosed == nil || survey.CompareDates(dd, diagnosed) < 0) {
						diagnosed = dd
					}
				}
			}
			if !has {
				continue
			}
			fus := c.followUps[p.GetId()]
			c.unit.Detail, c.unit.Disease, c.unit.Reason, c.unit.Day = diseaseWord(disease), disease, "", nil
			key := Key("htn_standard_mgmt_rate")
			if disease == fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES {
				key = "dm_standard_mgmt_rate"
			}
			c.rate(area, key, survey.StandardManagement(fus, disease, c.end))
			due := c.dueOn(fus, disease, diagnosed, pp.recorded)
			c.unit.Detail = fmt.Sprintf("%s due %s", diseaseWord(disease), survey.FormatDate(due))
			c.unit.Reason, c.unit.Day = "due", due
			if cmp := survey.CompareDates(due, c.d); cmp <= 0 {
				c.count(area, "followups_due")
				if cmp < 0 {
					c.count(area, "followups_overdue")
				}
			}
		}
	}
}

// servicePerson counts the indicators of a person owed the service 111.
func (c *computation) servicePerson(area string, p *fieldsyncv1.Person, conds []*fieldsyncv1.Condition, ans *answers) {
	contract := false
	if s := p.GetContract().GetSignedOn(); s != nil {
		contract = c.onOrBefore(s) && survey.CompareDates(c.d, survey.AddMonths(s, ContractTerm)) < 0
	}
	c.rate(area, "contract_rate", contract)
	if contract {
		c.rate(area, "service_rate", is(ans.served))
	}
	c.rate(area, "health_record_rate", p.GetHasHealthRecord())
	if age := ageOn(p.GetBirthDate(), c.d); age >= 7 && age <= 64 {
		h := p.GetLastHealthCheckOn()
		c.rate(area, "health_check_rate", h != nil && c.onOrBefore(h) && survey.CompareDates(h, c.checkFrom) >= 0)
	}
	major, chronicNonMajor, severe := false, false, false
	for _, cd := range conds {
		major = major || cd.GetMajorIllness()
		chronicNonMajor = chronicNonMajor || !cd.GetMajorIllness()
		severe = severe || cd.GetSevereIllness()
	}
	if len(conds) > 0 {
		c.rate(area, "plan_rate", p.GetHasOnePersonPlan())
	}
	if major {
		c.rate(area, "major_illness_treated_rate", is(ans.treated))
	}
	if chronicNonMajor {
		c.rate(area, "chronic_contract_mgmt_rate", contract && is(ans.served))
	}
	if severe {
		ok := false
		if f := ans.safetyNet; f != nil && f.GetSafetyNetApplied() {
			oop, total := f.OutOfPocketFen, f.TotalMedicalCostFen
			ok = oop == nil || total == nil || *total <= 0 || !c.o.Rules.SelfPayShareExceeds(*oop, *total)
		}
		c.rate(area, "severe_illness_safety_net_rate", ok)
	}
	answered, allTrue := false, true
	for i, k := range []Key{"policy_awareness_rate.contracted_doctor", "policy_awareness_rate.hospital_doctor", "policy_awareness_rate.kanbing_120", "policy_awareness_rate.fuwu_111"} {
		if q := ans.aware[i]; q != nil {
			c.rate(area, k, *q)
			answered, allTrue = true, allTrue && *q
		}
	}
	if answered {
		c.rate(area, "policy_awareness_rate", allTrue)
	}
	if ans.satisfied != nil {
		c.rate(area, "satisfaction_rate", *ans.satisfied)
	}
}

// ageOn is the age in whole years on day d of someone born on birth, or -1.
func ageOn(birth, d *fieldsyncv1.Date) int {
	if birth == nil {
		return -1
	}
	age := int(d.GetYear() - birth.GetYear())
	if d.GetMonth() < birth.GetMonth() || d.GetMonth() == birth.GetMonth() && d.GetDay() < birth.GetDay() {
		age--
	}
	return age
}

// dueOn is when a patient's next follow-up for disease is due as of the
// report's day, as the phone's due list says it: the latest follow-up by then
// gives it; a patient never followed up is due from the diagnosis, else from
// when the conditions were recorded.
func (c *computation) dueOn(fus []*fieldsyncv1.FollowUp, disease fieldsyncv1.ChronicDisease, diagnosed *fieldsyncv1.Date, recorded time.Time) *fieldsyncv1.Date {
	var last *fieldsyncv1.FollowUp
	for _, f := range fus {
		if f.GetDisease() != disease || f.GetFollowedUpAt() == nil || f.GetFollowedUpAt().AsTime().After(c.end) {
			continue
		}
		if last == nil || cmp.Or(f.GetFollowedUpAt().AsTime().Compare(last.GetFollowedUpAt().AsTime()), cmp.Compare(f.GetId(), last.GetId())) > 0 {
			last = f
		}
	}
	switch {
	case last != nil:
		return survey.NextDue(last, c.d)
	case diagnosed != nil:
		return diagnosed
	case !recorded.IsZero():
		return survey.Today(recorded)
	}
	return c.d
}

// households counts visit coverage of the campaign.
func (c *computation) households() {
	c.campaign = c.o.Campaign
	if c.campaign == "" {
		var latest *fieldsyncv1.HouseholdVisit
		for _, v := range c.visits {
			if v.GetCampaign() != "" && c.in(v.GetAreaCode()) && c.onOrBefore(dayOf(v.GetStartedAt(), v.GetStartedAt() != nil)) &&
				(latest == nil || byStart(v, latest) > 0) {
				latest = v
			}
		}
		c.campaign = latest.GetCampaign()
	}
	if c.campaign == "" {
		return
	}
	visited := map[string]bool{}
	for _, v := range c.visits {
		if v.GetCampaign() == c.campaign && c.onOrBefore(dayOf(v.GetStartedAt(), v.GetStartedAt() != nil)) {
			visited[v.GetHouseholdId()] = true
		}
	}
	for _, h := range c.Set.households {
		if c.in(h.GetAreaCode()) {
			c.unit = Item{Kind: "household", ID: h.GetId(), Name: h.GetHeadName(), Detail: "not visited in " + c.campaign,
				Reason: "not_visited", Campaign: c.campaign}
			c.rate(h.GetAreaCode(), "visit_coverage", visited[h.GetId()])
		}
	}
}

// clinics counts clinic compliance from each clinic's latest audit of the 12
// months.
func (c *computation) clinics() {
	latest := map[string]*fieldsyncv1.ClinicAudit{}
	for _, a := range c.audits {
		if !c.inWindow(dayOf(a.GetAuditedAt(), a.GetAuditedAt() != nil)) {
			continue
		}
		if l := latest[a.GetClinicId()]; l == nil || cmp.Or(a.GetAuditedAt().AsTime().Compare(l.GetAuditedAt().AsTime()), cmp.Compare(a.GetId(), l.GetId())) > 0 {
			latest[a.GetClinicId()] = a
		}
	}
	for _, cl := range c.Set.clinics {
		area := cl.GetAreaCode()
		a := latest[cl.GetId()]
		if !c.in(area) || a == nil {
			continue
		}
		c.unit = Item{Kind: "clinic", ID: cl.GetId(), Name: cl.GetName(), Detail: "audit " + a.GetId(), Reason: "clinic"}
		all := true
		for _, it := range c.o.Rules.ClinicItems(a) {
			if it.Answered {
				c.rate(area, Key("clinic_compliance."+it.Item), it.Passed)
			}
			all = all && it.Passed
		}
		c.rate(area, "clinic_compliance", all)
	}
}

// problems counts the ledger as of the report's day.
func (c *computation) problems() {
	for _, p := range c.Set.problems {
		area := p.GetAreaCode()
		if !c.in(area) {
			continue
		}
		status, ok := c.problemStatus(p)
		if !ok {
			continue
		}
		c.unit = Item{Kind: "problem", ID: p.GetId(), Name: p.GetItem(), Detail: fmt.Sprintf("%s, deadline %s, person %s", status, survey.FormatDate(p.GetDeadline()), p.GetPersonId()),
			Reason: "problem", Status: status.String(), Day: p.GetDeadline()}
		switch status {
		case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN:
			c.count(area, "problems_open")
			if p.GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL {
				c.count(area, "critical_problems_open")
			}
			if dl := p.GetDeadline(); dl != nil && survey.CompareDates(dl, c.d) < 0 {
				c.count(area, "problems_overdue")
			}
		case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED:
			c.count(area, "problems_closed")
		}
	}
}

// problemStatus is p's status at the end of the report's day, from the times
// it keeps (raised, rectified, verified, reopened); false when it was raised
// after. Before its last reopening the earlier rectification is lost, so the
// status there is the one the kept times give.
func (c *computation) problemStatus(p *fieldsyncv1.Problem) (fieldsyncv1.ProblemStatus, bool) {
	if p.GetRaisedAt() == nil || p.GetRaisedAt().AsTime().After(c.end) {
		return 0, false
	}
	type event struct {
		at     time.Time
		status fieldsyncv1.ProblemStatus
	}
	events := []event{{p.GetRaisedAt().AsTime(), fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN}}
	for _, e := range []struct {
		t interface {
			AsTime() time.Time
		}
		set    bool
		status fieldsyncv1.ProblemStatus
	}{
		{p.GetRectifiedAt(), p.GetRectifiedAt() != nil, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED},
		{p.GetVerifiedAt(), p.GetVerifiedAt() != nil, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED},
		{p.GetReopenedAt(), p.GetReopenedAt() != nil, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN},
	} {
		if e.set {
			events = append(events, event{e.t.AsTime(), e.status})
		}
	}
	// The latest event overall: the record's status stands from it on.
	latest := slices.MaxFunc(events, func(a, b event) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.status, b.status)) })
	if !latest.at.After(c.end) {
		return p.GetStatus(), true
	}
	var at event
	for _, e := range events {
		if !e.at.After(c.end) && (at.at.IsZero() || e.at.After(at.at) || e.at.Equal(at.at) && e.status > at.status) {
			at = e
		}
	}
	return at.status, true
}

// flags counts the people (or households, for a flag naming no person) with
// an open or forwarded return-to-poverty flag raised by the report's day, in
// the village the person or household is in now.
func (c *computation) flags() {
	people := map[string]*fieldsyncv1.Person{}
	for _, p := range c.Set.persons {
		people[p.p.GetId()] = p.p
	}
	seen := map[string]bool{}
	for _, f := range c.Set.flags {
		switch f.GetStatus() {
		case fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN, fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_FORWARDED:
		default:
			continue
		}
		if f.GetFlaggedAt() == nil || f.GetFlaggedAt().AsTime().After(c.end) {
			continue
		}
		p := people[f.GetPersonId()]
		if p.GetResidency() == fieldsyncv1.Residency_RESIDENCY_DECEASED {
			continue // the deceased never count
		}
		unit, area := "p:"+f.GetPersonId(), p.GetAreaCode()
		if f.GetPersonId() == "" {
			unit = "h:" + f.GetHouseholdId()
		}
		if area == "" {
			area = c.Set.households[f.GetHouseholdId()].GetAreaCode()
		}
		area = cmp.Or(area, f.GetAreaCode())
		if seen[unit] || !c.in(area) {
			continue
		}
		seen[unit] = true
		c.unit = Item{Kind: "person", ID: f.GetPersonId(), Name: p.GetName(), MaskedID: p.GetIdNumber().GetMasked(),
			Detail: fmt.Sprintf("flag %s, household %s", f.GetStatus(), f.GetHouseholdId()), Reason: "flag", Status: f.GetStatus().String()}
		if f.GetPersonId() == "" {
			c.unit = Item{Kind: "household", ID: f.GetHouseholdId(), Name: c.Set.households[f.GetHouseholdId()].GetHeadName(), Detail: "flag " + f.GetStatus().String(),
				Reason: "flag", Status: f.GetStatus().String()}
		}
		c.count(area, "risk_flagged")
	}
}

// devices counts the devices not synced for StaleAfter, in the village they
// serve (or the township or county, for a device serving several villages),
// when the report is as of today.
func (c *computation) devices() {
	if survey.CompareDates(c.d, survey.Today(c.o.Now)) != 0 {
		return
	}
	for _, d := range c.Set.devices {
		if d.Revoked || d.Relay {
			continue
		}
		last := d.LastSync
		if last.IsZero() {
			last = d.Enrolled
		}
		area := deviceArea(d.Areas)
		// A device counts in the area asked for when the area it serves
		// lies within it: a county-wide phone counts at the county, not in
		// a township's report.
		if area == "" || !strings.HasPrefix(area, c.prefix) {
			continue
		}
		if c.o.Now.Sub(last) > StaleAfter {
			c.unit = Item{Kind: "device", ID: d.ID, Name: d.Name, Detail: "last sync " + syncWord(d.LastSync), Reason: "device", LastSync: d.LastSync}
			c.count(area, "devices_not_synced_3d")
		}
	}
}

// deviceArea is the 12-digit code of the smallest area (village, township or
// county) holding every prefix, or "" for none.
func deviceArea(prefixes []string) string {
	if len(prefixes) == 0 {
		return ""
	}
	common := prefixes[0]
	for _, p := range prefixes[1:] {
		n := 0
		for n < len(common) && n < len(p) && common[n] == p[n] {
			n++
		}
		common = common[:n]
	}
	switch {
	case len(common) >= 12:
		return common[:12]
	case len(common) >= 9:
		return common[:9] + "000"
	case len(common) >= 6:
		return common[:6] + "000000"
	}
	return ""
}

// rows sums the villages' values up to the area asked for, down to depth.
func (c *computation) rows(level, depth Level) []Row {
	sums := map[string]map[Key]Value{}
	add := func(area string, vals map[Key]*Value) {
		m := sums[area]
		if m == nil {
			m = map[Key]Value{}
			sums[area] = m
		}
		for k, v := range vals {
			s := m[k]
			s.Num += v.Num
			s.Den += v.Den
			m[k] = s
		}
	}
	for area, vals := range c.a {
		// A device counted at a township or county adds to it and above.
		for l := levelOf(area); l >= level; l-- {
			if l <= depth {
				add(areaOf(area, l), vals)
			}
		}
	}
	top := c.prefix + strings.Repeat("0", 12-len(c.prefix))
	if sums[top] == nil {
		sums[top] = map[Key]Value{}
	}
	var out []Row
	for area, vals := range sums {
		if !strings.HasPrefix(area, c.prefix) {
			continue
		}
		for _, d := range Keys() {
			if _, ok := vals[d.Key]; !ok {
				vals[d.Key] = Value{}
			}
		}
		out = append(out, Row{Area: area, Level: levelOf(area), Values: vals})
	}
	slices.SortFunc(out, func(a, b Row) int { return cmp.Or(cmp.Compare(a.Level, b.Level), cmp.Compare(a.Area, b.Area)) })
	return out
}

// diseaseWord names a disease in a list's detail.
func diseaseWord(d fieldsyncv1.ChronicDisease) string {
	return strings.ToLower(strings.TrimPrefix(d.String(), "CHRONIC_DISEASE_"))
}

// syncWord is a last sync time in a list's detail, China time.
func syncWord(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.In(survey.ChinaTime).Format(time.RFC3339)
}
