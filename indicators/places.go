package indicators

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// householdFact is a household's own fact.
type householdFact struct {
	area   string
	status fieldsyncv1.HouseholdStatus
	head   string
	ok     bool
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
