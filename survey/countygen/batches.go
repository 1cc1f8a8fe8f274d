package countygen

import (
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// untreatedReasons are why a major-illness patient is not treated
// (大病未救治原因).
var untreatedReasons = []string{"患者拒绝治疗", "等待专家组会诊", "未到定点医院"}

// batches draws the village's free health checks (免费健康体检), severe
// illnesses (重病) and what visits find about the three batches (三个一批:
// 大病集中救治, 慢病签约服务管理, 重病兜底保障), from a stream of the village's
// own that nothing else draws from, so that adding them left every other value
// of the county as it was (see doc.go for the shares).
func (g *Generator) batches(v *Village) {
	x := newRNG(g.cfg.Seed, streamBatches|uint64(v.Index))
	// Checks this year fall in the calendar year of the day before AsOf's day,
	// from 1 January to that day; checks in the previous year, in the year
	// before.
	last := dayOf(g.cfg.AsOf).Add(-days(1))
	yearStart := time.Date(last.Year(), 1, 1, 0, 0, 0, 0, cst)
	for _, h := range v.Households {
		for _, p := range h.Members {
			p.LastHealthCheckOn = g.healthCheck(x, h, p, yearStart, last)
			g.severe(x, p)
			if !p.Alive() {
				continue
			}
			if p.MajorIllness() {
				p.MajorIllnessTreated = x.chance(0.93)
				if !p.MajorIllnessTreated {
					p.UntreatedReason = pick(x, untreatedReasons)
				}
				p.MajorIllnessReviewed = x.chance(0.90)
			}
			if p.SevereIllness() {
				p.SafetyNetApplied = x.chance(0.90)
			}
		}
	}
}

// healthCheck returns the day of p's latest free health check, or the zero
// time. Living people aged 7 to 64 were checked this year (from yearStart to
// last) 90 % of the time in registered households, 40 % when away (working
// away or unreachable), 50 % in ordinary households; 5 % of the others were
// checked the year before. Nobody else has a check on record.
func (g *Generator) healthCheck(x *rng, h *Household, p *Person, yearStart, last time.Time) time.Time {
	if age := p.Age(g.cfg.AsOf); age < 7 || age > 64 || !p.Alive() {
		return time.Time{}
	}
	pYear := 0.90
	switch {
	case !h.Registered():
		pYear = 0.50
	case away(p.Residency):
		pYear = 0.40
	}
	switch {
	case x.chance(pYear):
		return dayOf(x.timeBetween(yearStart, last.Add(days(1))))
	case x.chance(0.05):
		return dayOf(x.timeBetween(yearStart.AddDate(-1, 0, 0), yearStart))
	}
	return time.Time{}
}

// severe marks severe illnesses (重病): 30 % of major illnesses, and for 0.3 %
// of people aged 40 and over with a chronic disease that is not a major
// illness, one such disease.
func (g *Generator) severe(x *rng, p *Person) {
	var chronic []int
	for i := range p.Conditions {
		c := &p.Conditions[i]
		if c.MajorIllness {
			c.SevereIllness = x.chance(0.30)
		} else {
			chronic = append(chronic, i)
		}
	}
	if len(chronic) > 0 && p.Age(g.cfg.AsOf) >= 40 && x.chance(0.003) {
		p.Conditions[pick(x, chronic)].SevereIllness = true
	}
}

// batchFindings sets what a visit finds about a living member's major illness
// and severe illness: the registry's, in every visit.
func batchFindings(p *Person, f *fieldsyncv1.MemberFinding) {
	if p.MajorIllness() {
		f.MajorIllnessTreated = proto.Bool(p.MajorIllnessTreated)
		f.MajorIllnessUntreatedReason = p.UntreatedReason
		f.MajorIllnessReviewed = proto.Bool(p.MajorIllnessReviewed)
	}
	if p.SevereIllness() {
		f.SafetyNetApplied = proto.Bool(p.SafetyNetApplied)
	}
}
