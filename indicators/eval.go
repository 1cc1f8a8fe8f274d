package indicators

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// bad reports a fact that does not decode.
func (c *computation) bad(u Unit, err error) error {
	return fmt.Errorf("indicators: unit %q: %w", unitID(u.Key), err)
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
