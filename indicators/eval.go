package indicators

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// A Part is the figures of one village (or of the units placed in none) as of
// a day, for one set of options: what a store caches per village, keyed by
// PartKey, until a change touches the village.
type Part struct {
	a acc
	// households counts the households of each village (visit_coverage's
	// denominator), visited those visited in each campaign by the day.
	households map[string]int64
	visited    map[string]map[string]int64
	// latest is the latest visit with a campaign by the day.
	latest campaignVisit
	// unvisited are the households of the part with the campaigns they were
	// visited in, when visit_coverage is listed.
	unvisited []listedHousehold
	items     []Item
}

type campaignVisit struct {
	at       moment
	id       string
	campaign string
}

type listedHousehold struct {
	item      Item
	campaigns []string
}

func newPart() *Part {
	return &Part{a: acc{}, households: map[string]int64{}, visited: map[string]map[string]int64{}}
}

// PartCache keeps the Parts of villages between reports. Part returns the
// part of village (of the units placed in none for "") under key, calling
// compute when it holds none that is current.
type PartCache interface {
	Part(village, key string, compute func() (*Part, error)) (*Part, error)
}

// Compute computes the report o asks for from the facts of src and the
// devices of the server's registry. Parts come from cache when it is not nil
// and nothing is listed. The villages not cached are computed by one worker
// per source in more: sources of the same facts, each for one goroutine.
func Compute(src Source, o Options, devices []Device, cache PartCache, more ...Source) (Report, error) {
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
	dayStart, err := survey.DateTime(d)
	if err != nil {
		return Report{}, err
	}
	checkFrom := survey.Today(o.HealthCheckFrom)
	if o.HealthCheckFrom.IsZero() {
		checkFrom = &fieldsyncv1.Date{Year: d.GetYear(), Month: 1, Day: 1}
	}
	c := &computation{src: src, o: o, listing: o.List != "", prefix: prefix, d: d, dv: pack(d),
		windowFrom: pack(survey.AddMonths(d, -12)), checkFrom: pack(checkFrom)}
	if cache == nil || o.List != "" {
		cache = noCache{}
	}
	key := c.partKey()
	villages, err := src.Villages(prefix)
	if err != nil {
		return Report{}, err
	}
	villages = append([]string{""}, villages...)
	parts := make([]*Part, len(villages))
	var next atomic.Int64
	work := func(c *computation) error {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(villages) {
				return nil
			}
			p, err := cache.Part(villages[i], key, func() (*Part, error) { return c.part(villages[i]) })
			if err != nil {
				return err
			}
			parts[i] = p
		}
	}
	errs := make([]error, len(more)+1)
	var wg sync.WaitGroup
	for i, s := range more {
		w := &computation{src: s, o: c.o, listing: c.listing, prefix: c.prefix, d: c.d, dv: c.dv, windowFrom: c.windowFrom, checkFrom: c.checkFrom}
		wg.Go(func() { errs[i+1] = work(w) })
	}
	errs[0] = work(c)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Report{}, err
	}
	checkDay, _ := survey.DateTime(checkFrom)
	r := Report{AsOf: dayStart, HealthCheckFrom: checkDay, ComputedAt: o.Now}
	r.Campaign, r.Rows, r.Items = c.assemble(parts, devices, level, depth)
	return r, nil
}

// noCache computes every part.
type noCache struct{}

func (noCache) Part(_, _ string, compute func() (*Part, error)) (*Part, error) { return compute() }

// computation is one report's working state.
type computation struct {
	src        Source
	o          Options
	prefix     string
	d          *fieldsyncv1.Date // AsOf's day
	dv         int64             // packed
	windowFrom int64             // the 12 months end at d, start after this day
	checkFrom  int64
	p          *Part  // the part being computed
	lastArea   string // and the values of its area last counted
	lastVals   []Value
	listing    bool   // o.List is set
	village    string // the village of the part being computed
	// Buffers reused from person to person.
	personBuf   personFact
	visitBuf    []visit
	followUpBuf []followUp
	condBuf     []condFact
	keyBuf      []byte
	campaignBuf [][]byte
	unit        Item // the unit being counted, for lists
	statuses    map[string]householdFact
}

// householdFact is a household's own fact.
type householdFact struct {
	area   string
	status fieldsyncv1.HouseholdStatus
	head   string
	ok     bool
}

// partKey names what a part depends on besides the facts: the day, the
// health check period and the rules.
func (c *computation) partKey() string {
	return fmt.Sprintf("%d|%d|%+v", c.dv, c.checkFrom, c.o.Rules)
}

// byD reports whether a packed day is not after the report's day.
func (c *computation) byD(v day) bool { return v.ok && v.v <= c.dv }

// inWindow reports whether a packed day lies in the 12 months ending on the
// report's day.
func (c *computation) inWindow(v day) bool { return c.byD(v) && v.v > c.windowFrom }

// rate counts the current unit of area in key's denominator, and in its
// numerator when ok; a unit not achieving the listed key is listed.
func (c *computation) rate(area string, k Key, ok bool) {
	v := &c.vals(area)[keyIndex[k]]
	v.Den++
	if ok {
		v.Num++
	} else if c.listing && k == c.o.List {
		c.list(area)
	}
}

// count counts the current unit of area in key, and lists it for the listed
// key.
func (c *computation) count(area string, k Key) {
	c.vals(area)[keyIndex[k]].Num++
	if c.listing && k == c.o.List {
		c.list(area)
	}
}

// vals returns the values of area in the part being computed.
func (c *computation) vals(area string) []Value {
	if area != c.lastArea || c.lastVals == nil {
		c.lastArea, c.lastVals = area, c.p.a.at(area)
	}
	return c.lastVals
}

func (c *computation) list(area string) {
	it := c.unit
	it.Area = area
	c.p.items = append(c.p.items, it)
}

// part computes the part of village ("" for the units placed in none).
func (c *computation) part(village string) (*Part, error) {
	c.p, c.lastVals, c.village = newPart(), nil, village
	c.statuses = map[string]householdFact{}
	fn := c.placed
	if village == "" {
		fn = c.orphan
	}
	var err error
	if village == "" {
		err = c.src.Orphans(fn)
	} else {
		err = c.src.Village(village, fn)
	}
	if err != nil {
		return nil, err
	}
	return c.p, nil
}

// placed counts a unit placed in a village.
func (c *computation) placed(u Unit) error {
	if len(u.Key) == 0 || u.Own == nil {
		return nil
	}
	switch u.Key[0] {
	case unitHousehold:
		return c.household(u)
	case unitPerson:
		return c.person(u)
	case unitClinic:
		return c.clinic(u)
	case unitProblem:
		return c.problem(u)
	}
	return nil
}

// readHousehold reads a household's own fact.
func readHousehold(own []byte) (householdFact, error) {
	d := dec{b: own}
	h := householdFact{area: d.str(), status: fieldsyncv1.HouseholdStatus(d.uvarint()), head: d.str(), ok: true}
	return h, d.err
}

// householdOf returns the household with unit key k, from this village's
// or, failing that, wherever it is.
func (c *computation) householdOf(k []byte) (householdFact, error) {
	if h, ok := c.statuses[string(k)]; ok {
		return h, nil
	}
	own, err := c.src.Own(string(k))
	if err != nil || own == nil {
		return householdFact{}, err
	}
	h, err := readHousehold(own)
	if err == nil {
		c.statuses[string(k)] = h
	}
	return h, err
}

// household counts visit coverage and the flags of a household naming no
// person.
func (c *computation) household(u Unit) error {
	h, err := readHousehold(u.Own)
	if err != nil {
		return c.bad(u, err)
	}
	c.statuses[string(u.Key)] = h
	area := h.area
	c.p.households[area]++
	var visited map[string]int64
	campaigns := c.campaignBuf[:0] // visited in, by the day
	for _, f := range u.Facts {
		if f.Key[0] != factVisit {
			continue
		}
		d := dec{b: f.Value}
		campaign, at := d.raw(), d.moment()
		if d.err != nil {
			return c.bad(u, d.err)
		}
		if len(campaign) == 0 || !at.ok || at.day > c.dv {
			continue
		}
		if l := &c.p.latest; l.campaign == "" || at.after(l.at) || at == l.at && recordOf(f.Key) > l.id {
			*l = campaignVisit{at, recordOf(f.Key), string(campaign)}
		}
		if slices.ContainsFunc(campaigns, func(s []byte) bool { return bytes.Equal(s, campaign) }) {
			continue
		}
		campaigns = append(campaigns, campaign)
		if visited == nil {
			if visited = c.p.visited[area]; visited == nil {
				visited = map[string]int64{}
				c.p.visited[area] = visited
			}
		}
		visited[string(campaign)]++
	}
	c.campaignBuf = campaigns
	if c.o.List == "visit_coverage" {
		var in []string
		for _, s := range campaigns {
			in = append(in, string(s))
		}
		c.p.unvisited = append(c.p.unvisited, listedHousehold{Item{Area: area, Kind: "household", ID: unitID(u.Key), Name: h.head, Reason: "not_visited"}, in})
	}
	if !c.hasFlags(u) {
		return nil
	}
	return c.flags(u, area, Item{Kind: "household", ID: unitID(u.Key), Name: h.head})
}

// bad reports a fact that does not decode.
func (c *computation) bad(u Unit, err error) error {
	return fmt.Errorf("indicators: unit %q: %w", unitID(u.Key), err)
}

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
	// The visits of the 12 months, latest (by start, then id) last.
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
				var fd finding
				fd.served, fd.treated, fd.reviewed, fd.safetyNet = d.tri(), d.tri(), d.tri(), d.tri()
				fd.oop, fd.total = d.optInt(), d.optInt()
				for i := range fd.aware {
					fd.aware[i] = d.tri()
				}
				fd.satisfied = d.tri()
				v.findings = append(v.findings, fd)
			}
			visits = append(visits, v)
		case factFollowUp:
			fu := followUp{key: f.Key, disease: fieldsyncv1.ChronicDisease(d.uvarint())}
			d.flags(&fu.f2f)
			fu.at, fu.due = d.moment(), d.date()
			fus = append(fus, fu)
		}
		if d.err != nil {
			return c.bad(u, d.err)
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
			continue
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
	if !c.hasFlags(u) {
		return nil
	}
	return c.flags(u, area, Item{Kind: "person", ID: unitID(u.Key), Name: string(p.name), MaskedID: string(p.masked)})
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

// clinic counts clinic compliance from a clinic's latest audit of the 12
// months.
func (c *computation) clinic(u Unit) error {
	d := dec{b: u.Own}
	area, name := d.str(), d.str()
	if d.err != nil {
		return c.bad(u, d.err)
	}
	var latest []byte
	var latestAt moment
	var latestID string
	for _, f := range u.Facts {
		if f.Key[0] != factAudit {
			continue
		}
		d := dec{b: f.Value}
		at, pb := d.moment(), d.raw()
		if d.err != nil {
			return c.bad(u, d.err)
		}
		id := recordOf(f.Key)
		if !at.ok || !c.inWindow(day{at.day, true}) {
			continue
		}
		if latest == nil || at.after(latestAt) || at == latestAt && id > latestID {
			latest, latestAt, latestID = pb, at, id
		}
	}
	if latest == nil {
		return nil
	}
	a := &fieldsyncv1.ClinicAudit{}
	if err := proto.Unmarshal(latest, a); err != nil {
		return c.bad(u, err)
	}
	c.unit = Item{Kind: "clinic", ID: unitID(u.Key), Name: name, Detail: "audit " + a.GetId(), Reason: "clinic"}
	all := true
	for _, it := range c.o.Rules.ClinicItems(a) {
		if it.Answered {
			c.rate(area, Key("clinic_compliance."+it.Item), it.Passed)
		}
		all = all && it.Passed
	}
	c.rate(area, "clinic_compliance", all)
	return nil
}

// problem counts a problem of the ledger as of the report's day.
func (c *computation) problem(u Unit) error {
	d := dec{b: u.Own}
	area, item, person := d.str(), d.str(), d.str()
	status := fieldsyncv1.ProblemStatus(d.uvarint())
	var critical bool
	d.flags(&critical)
	deadline := d.date()
	var events [4]moment // raised, rectified, verified, reopened
	for i := range events {
		events[i] = d.moment()
	}
	if d.err != nil {
		return c.bad(u, d.err)
	}
	status, ok := c.problemStatus(status, events)
	if !ok {
		return nil
	}
	var dl *fieldsyncv1.Date
	if deadline.ok {
		dl = unpack(deadline.v)
	}
	c.unit = Item{Kind: "problem", ID: unitID(u.Key), Name: item, Detail: fmt.Sprintf("%s, deadline %s, person %s", status, survey.FormatDate(dl), person),
		Reason: "problem", Status: status.String(), Day: dl}
	switch status {
	case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN:
		c.count(area, "problems_open")
		if critical {
			c.count(area, "critical_problems_open")
		}
		if deadline.ok && deadline.v < c.dv {
			c.count(area, "problems_overdue")
		}
	case fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED:
		c.count(area, "problems_closed")
	}
	return nil
}

// problemStatus is a problem's status at the end of the report's day, from
// the times it keeps (raised, rectified, verified, reopened); false when it
// was raised after. Before its last reopening the earlier rectification is
// lost, so the status there is the one the kept times give.
func (c *computation) problemStatus(now fieldsyncv1.ProblemStatus, at [4]moment) (fieldsyncv1.ProblemStatus, bool) {
	if !at[0].ok || at[0].day > c.dv {
		return 0, false
	}
	type event struct {
		at     moment
		status fieldsyncv1.ProblemStatus
	}
	statuses := [4]fieldsyncv1.ProblemStatus{fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED,
		fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN}
	var events []event
	for i, m := range at {
		if m.ok {
			events = append(events, event{m, statuses[i]})
		}
	}
	// The latest event overall: the record's status stands from it on.
	latest := slices.MaxFunc(events, func(a, b event) int { return cmp.Or(a.at.compare(b.at), cmp.Compare(a.status, b.status)) })
	if latest.at.day <= c.dv {
		return now, true
	}
	var cur *event
	for i := range events {
		e := &events[i]
		if e.at.day <= c.dv && (cur == nil || e.at.compare(cur.at) > 0 || e.at.compare(cur.at) == 0 && e.status > cur.status) {
			cur = e
		}
	}
	return cur.status, true
}

// assemble sums the parts and the devices into rows down to depth, and
// returns the campaign visit_coverage counted and the listed items.
func (c *computation) assemble(parts []*Part, devices []Device, level, depth Level) (string, []Row, []Item) {
	a := acc{}
	var items []Item
	campaign := c.o.Campaign
	var latest campaignVisit
	for _, p := range parts {
		for area, vals := range p.a {
			sum := a.at(area)
			for i, v := range vals {
				sum[i].Num += v.Num
				sum[i].Den += v.Den
			}
		}
		for _, it := range p.items {
			if strings.HasPrefix(it.Area, c.prefix) {
				items = append(items, it)
			}
		}
		if l := p.latest; l.campaign != "" && (latest.campaign == "" || cmp.Or(l.at.compare(latest.at), cmp.Compare(l.id, latest.id)) > 0) {
			latest = l
		}
	}
	if campaign == "" {
		campaign = latest.campaign
	}
	if campaign != "" {
		for _, p := range parts {
			for area, n := range p.households {
				v := &a.at(area)[keyIndex["visit_coverage"]]
				v.Den += n
				v.Num += p.visited[area][campaign]
			}
			for _, h := range p.unvisited {
				if !slices.Contains(h.campaigns, campaign) {
					it := h.item
					it.Detail, it.Campaign = "not visited in "+campaign, campaign
					items = append(items, it)
				}
			}
		}
	}
	c.p, c.lastVals = &Part{a: a}, nil
	c.devices(devices)
	items = append(items, c.p.items...)
	slices.SortFunc(items, func(a, b Item) int {
		return cmp.Or(cmp.Compare(a.Area, b.Area), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Detail, b.Detail))
	})
	return campaign, c.rows(a, level, depth), items
}

// devices counts the devices not synced for StaleAfter, in the village they
// serve (or the township or county, for a device serving several villages),
// when the report is as of today.
func (c *computation) devices(devices []Device) {
	if survey.CompareDates(c.d, survey.Today(c.o.Now)) != 0 {
		return
	}
	for _, d := range devices {
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
func (c *computation) rows(a acc, level, depth Level) []Row {
	sums := acc{}
	for area, vals := range a {
		if !strings.HasPrefix(area, c.prefix) {
			continue
		}
		// A device counted at a township or county adds to it and above.
		for l := levelOf(area); l >= level; l-- {
			if l <= depth {
				sum := sums.at(areaOf(area, l))
				for i, v := range vals {
					sum[i].Num += v.Num
					sum[i].Den += v.Den
				}
			}
		}
	}
	sums.at(c.prefix + strings.Repeat("0", 12-len(c.prefix)))
	var out []Row
	for area, vals := range sums {
		m := make(map[Key]Value, len(vals))
		for i, d := range Keys() {
			m[d.Key] = vals[i]
		}
		out = append(out, Row{Area: area, Level: levelOf(area), Values: m})
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
