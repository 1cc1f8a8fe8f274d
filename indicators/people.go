package indicators

import (
	"cmp"
	"fmt"
	"slices"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// personFact is a person's own fact.
type personFact struct {
	area, household, name, masked []byte // household: its id, as it is
	deceased, healthRecord, plan  bool
	conds                         []condFact
	contract, contractEnd         day
	birth, lastCheck, recorded    day
}

type condFact struct {
	disease       fieldsyncv1.ChronicDisease
	diagnosed     day
	major, severe bool
}

// readPerson reads a person's own fact into p, reusing its conditions.
func readPerson(own []byte, p *personFact) error {
	d := dec{b: own}
	p.area, p.household, p.name, p.masked = d.raw(), d.raw(), d.raw(), d.raw()
	d.flags(&p.deceased, &p.healthRecord, &p.plan)
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
	}
	p.conds = p.conds[:0]
	for range n {
		cd := condFact{disease: fieldsyncv1.ChronicDisease(d.uvarint()), diagnosed: d.date()}
		d.flags(&cd.major, &cd.severe)
		p.conds = append(p.conds, cd)
	}
	p.contract, p.contractEnd = d.date(), day{}
	if p.contract.ok {
		p.contractEnd = d.date()
	}
	p.birth, p.lastCheck, p.recorded = d.date(), d.date(), d.date()
	return d.err
}

// answers are a person's latest answers in the visits of the 12 months: each
// item from the latest visit that asked it.
type answers struct {
	served, treated, reviewed tri
	safetyNet                 *finding // the finding of the latest safety_net_applied
	aware                     [4]tri   // knows contracted doctor, hospital doctor, 看病120, 服务111
	satisfied                 tri
}

type finding struct {
	served, treated, reviewed, safetyNet tri
	oop, total                           optInt
	aware                                [4]tri
	satisfied                            tri
}

// visit is a visit's findings for a person.
type visit struct {
	at       moment
	key      []byte // the fact's key
	findings []finding
}

type followUp struct {
	key     []byte // the fact's key
	disease fieldsyncv1.ChronicDisease
	f2f     bool
	at      moment
	due     day
}

// laterKey orders two facts made at the same moment by their records' ids.
func laterKey(a, b []byte) int { return cmp.Compare(recordOf(a), recordOf(b)) }

// person counts the person-based indicators of a person placed in a village.
func (c *computation) person(u Unit) error {
	p := &c.personBuf
	if err := readPerson(u.Own, p); err != nil {
		return c.bad(u, err)
	}
	if p.deceased {
		return nil
	}
	area := c.village
	if string(p.area) != area {
		return c.bad(u, fmt.Errorf("placed in %s, of area %q", area, p.area))
	}
	visits, fus, err := c.readFacts(u)
	if err != nil {
		return err
	}
	ans := answersOf(visits)
	conds := c.condBuf[:0] // as of the day
	for _, cd := range p.conds {
		if !cd.diagnosed.ok || cd.diagnosed.v <= c.dv {
			conds = append(conds, cd)
		}
	}
	c.condBuf = conds
	if c.listing {
		c.unit = Item{Kind: "person", ID: unitID(u.Key), Name: string(p.name), MaskedID: string(p.masked)}
	}
	c.keyBuf = append(append(c.keyBuf[:0], unitHousehold), p.household...)
	hh, err := c.householdOf(c.keyBuf)
	if err != nil {
		return err
	}
	if !hh.ok || hh.status != fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY {
		c.servicePerson(area, p, conds, &ans)
	}
	for _, disease := range []fieldsyncv1.ChronicDisease{fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION, fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES} {
		c.patient(area, p, conds, fus, disease)
	}
	if !c.hasFlags(u) {
		return nil
	}
	return c.flags(u, area, Item{Kind: "person", ID: unitID(u.Key), Name: string(p.name), MaskedID: string(p.masked)})
}

// readFacts decodes a person's visit findings of the 12 months, latest (by
// start, then id) last, and follow-ups, into the computation's buffers.
func (c *computation) readFacts(u Unit) ([]visit, []followUp, error) {
	visits, fus := c.visitBuf[:0], c.followUpBuf[:0]
	for _, f := range u.Facts {
		d := dec{b: f.Value}
		switch f.Key[0] {
		case factFinding:
			at := d.moment()
			n := d.uvarint()
			if n > uint64(len(d.b)) {
				d.fail()
			}
			if d.err != nil || !at.ok || !c.inWindow(day{at.day, true}) {
				break
			}
			v := visit{at: at, key: f.Key}
			if len(visits) < cap(visits) {
				v.findings = visits[:len(visits)+1][len(visits)].findings[:0]
			}
			for range n {
				v.findings = append(v.findings, d.finding())
			}
			visits = append(visits, v)
		case factFollowUp:
			fu := followUp{key: f.Key, disease: fieldsyncv1.ChronicDisease(d.uvarint())}
			d.flags(&fu.f2f)
			fu.at, fu.due = d.moment(), d.date()
			fus = append(fus, fu)
		}
		if d.err != nil {
			return nil, nil, c.bad(u, d.err)
		}
	}
	c.visitBuf, c.followUpBuf = visits, fus
	if len(visits) > 1 {
		slices.SortFunc(visits, func(a, b visit) int {
			if n := a.at.compare(b.at); n != 0 {
				return n
			}
			return laterKey(a.key, b.key)
		})
	}
	return visits, fus, nil
}

// finding decodes one member finding of a visit fact.
func (d *dec) finding() finding {
	var fd finding
	fd.served, fd.treated, fd.reviewed, fd.safetyNet = d.tri(), d.tri(), d.tri(), d.tri()
	fd.oop, fd.total = d.optInt(), d.optInt()
	for i := range fd.aware {
		fd.aware[i] = d.tri()
	}
	fd.satisfied = d.tri()
	return fd
}

// answersOf takes each item from the latest visit that answered it.
func answersOf(visits []visit) answers {
	var ans answers
	for _, v := range visits {
		for i := range v.findings {
			f := &v.findings[i]
			ans.served.keep(f.served)
			ans.treated.keep(f.treated)
			ans.reviewed.keep(f.reviewed)
			if f.safetyNet != unset {
				ans.safetyNet = f
			}
			for i, q := range f.aware {
				ans.aware[i].keep(q)
			}
			ans.satisfied.keep(f.satisfied)
		}
	}
	return ans
}

// patient counts a patient's standard management and due follow-up of
// disease, when a condition of it counts as of the day.
func (c *computation) patient(area string, p *personFact, conds []condFact, fus []followUp, disease fieldsyncv1.ChronicDisease) {
	var diagnosed day
	has := false
	for _, cd := range conds {
		if cd.disease == disease {
			has = true
			if cd.diagnosed.ok && (!diagnosed.ok || cd.diagnosed.v < diagnosed.v) {
				diagnosed = cd.diagnosed
			}
		}
	}
	if !has {
		return
	}
	if c.listing {
		c.unit.Detail, c.unit.Disease, c.unit.Reason, c.unit.Day = diseaseWord(disease), disease, "", nil
	}
	key := Key("htn_standard_mgmt_rate")
	if disease == fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES {
		key = "dm_standard_mgmt_rate"
	}
	// Standard management: StandardManagementVisits face-to-face
	// follow-ups in the 12 months (survey.StandardManagement).
	n := 0
	var last *followUp
	for i := range fus {
		f := &fus[i]
		if f.disease != disease || !f.at.ok || f.at.day > c.dv {
			continue
		}
		if f.f2f && f.at.day > c.windowFrom {
			n++
		}
		if last == nil || f.at.after(last.at) || f.at == last.at && laterKey(f.key, last.key) > 0 {
			last = f
		}
	}
	c.rate(area, key, n >= survey.StandardManagementVisits)
	// Due: as the phone's due list says it, from the latest follow-up
	// by the day; a patient never followed up is due from the
	// diagnosis, else from when the conditions were recorded.
	due := c.dv
	switch {
	case last != nil && last.due.ok:
		due = last.due.v
	case last != nil:
	case diagnosed.ok:
		due = diagnosed.v
	case p.recorded.ok:
		due = p.recorded.v
	}
	if c.listing {
		dueDay := unpack(due)
		c.unit.Detail = fmt.Sprintf("%s due %s", diseaseWord(disease), survey.FormatDate(dueDay))
		c.unit.Reason, c.unit.Day = "due", dueDay
	}
	if due <= c.dv {
		c.count(area, "followups_due")
		if due < c.dv {
			c.count(area, "followups_overdue")
		}
	}
}

// hasFlags reports whether u holds a flag fact.
func (c *computation) hasFlags(u Unit) bool {
	for _, f := range u.Facts {
		if f.Key[0] == factFlag {
			return true
		}
	}
	return false
}

// servicePerson counts the indicators of a person owed the service 111.
func (c *computation) servicePerson(area string, p *personFact, conds []condFact, ans *answers) {
	contract := p.contract.ok && p.contract.v <= c.dv && p.contractEnd.ok && c.dv < p.contractEnd.v
	c.rate(area, "contract_rate", contract)
	if contract {
		c.rate(area, "service_rate", ans.served.is())
	}
	c.rate(area, "health_record_rate", p.healthRecord)
	if p.birth.ok {
		age := c.dv/10000 - p.birth.v/10000
		if c.dv%10000 < p.birth.v%10000 {
			age--
		}
		if age >= 7 && age <= 64 {
			h := p.lastCheck
			c.rate(area, "health_check_rate", h.ok && h.v <= c.dv && h.v >= c.checkFrom)
		}
	}
	major, chronicNonMajor, severe := false, false, false
	for _, cd := range conds {
		major = major || cd.major
		chronicNonMajor = chronicNonMajor || !cd.major
		severe = severe || cd.severe
	}
	if len(conds) > 0 {
		c.rate(area, "plan_rate", p.plan)
	}
	if major {
		c.rate(area, "major_illness_treated_rate", ans.treated.is())
	}
	if chronicNonMajor {
		c.rate(area, "chronic_contract_mgmt_rate", contract && ans.served.is())
	}
	if severe {
		ok := false
		if f := ans.safetyNet; f != nil && f.safetyNet.is() {
			oop, total := f.oop, f.total
			ok = !oop.ok || !total.ok || total.v <= 0 || !c.o.Rules.SelfPayShareExceeds(oop.v, total.v)
		}
		c.rate(area, "severe_illness_safety_net_rate", ok)
	}
	answered, allTrue := false, true
	for i, k := range []Key{"policy_awareness_rate.contracted_doctor", "policy_awareness_rate.hospital_doctor", "policy_awareness_rate.kanbing_120", "policy_awareness_rate.fuwu_111"} {
		if q := ans.aware[i]; q != unset {
			c.rate(area, k, q.is())
			answered, allTrue = true, allTrue && q.is()
		}
	}
	if answered {
		c.rate(area, "policy_awareness_rate", allTrue)
	}
	if ans.satisfied != unset {
		c.rate(area, "satisfaction_rate", ans.satisfied.is())
	}
}

// flags counts a person (or a household, for flags naming no person) with an
// open or forwarded return-to-poverty flag raised by the report's day, once,
// in area; item describes the unit. An area "" is the area of the flag's
// household, or else the flag's own.
func (c *computation) flags(u Unit, area string, item Item) error {
	for _, f := range u.Facts {
		if f.Key[0] != factFlag {
			continue
		}
		d := dec{b: f.Value}
		status, at, hh, own := fieldsyncv1.RiskFlagStatus(d.uvarint()), d.moment(), d.str(), d.str()
		if d.err != nil {
			return c.bad(u, d.err)
		}
		switch status {
		case fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN, fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_FORWARDED:
		default:
			continue
		}
		if !at.ok || at.day > c.dv {
			continue
		}
		if area == "" {
			h, err := c.householdOf([]byte(HouseholdUnit(hh)))
			if err != nil {
				return err
			}
			area = cmp.Or(h.area, own)
		}
		if Placement(area) == "" {
			return nil // counted nowhere; a report's area takes its own
		}
		c.unit = item
		c.unit.Status, c.unit.Reason = status.String(), "flag"
		c.unit.Detail = "flag " + status.String()
		if item.Kind == "person" {
			c.unit.Detail = fmt.Sprintf("flag %s, household %s", status, hh)
		}
		c.count(area, "risk_flagged")
		return nil
	}
	return nil
}

// orphan counts the flags of a unit placed in no village: a person or
// household whose record is not held counts where the flag's household is,
// or else where the flag says.
func (c *computation) orphan(u Unit) error {
	if len(u.Key) == 0 {
		return nil
	}
	id := unitID(u.Key)
	switch u.Key[0] {
	case unitPerson:
		item := Item{Kind: "person", ID: id}
		area := ""
		if u.Own != nil {
			var p personFact
			if err := readPerson(u.Own, &p); err != nil {
				return c.bad(u, err)
			}
			if p.deceased {
				return nil
			}
			area, item.Name, item.MaskedID = string(p.area), string(p.name), string(p.masked)
		}
		return c.flags(u, area, item)
	case unitHousehold:
		item := Item{Kind: "household", ID: id}
		area := ""
		if u.Own != nil {
			h, err := readHousehold(u.Own)
			if err != nil {
				return c.bad(u, err)
			}
			area, item.Name = h.area, h.head
		}
		return c.flags(u, area, item)
	}
	return nil
}
