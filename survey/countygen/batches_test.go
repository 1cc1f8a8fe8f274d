package countygen

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// earlierMedium is the SHA-256 of the medium county's records (medium(), in
// Each's order, deterministically encoded) as generated before the health
// checks and the three batches were added: withoutBatches must give it back.
// Change it only with a change that means to alter what the generator makes,
// and say so, since figures measured on generated counties then move.
const earlierMedium = "f9b37451df9012c74648ed6e02cf34424b922c355fced53c81a55d599fc5a6f1"

// withoutBatches clears the fields batches.go fills.
func withoutBatches(r *fieldsyncv1.Record) {
	if p := r.GetPerson(); p != nil {
		p.LastHealthCheckOn = nil
		for _, c := range p.Conditions {
			c.SevereIllness = false
		}
	}
	if v := r.GetHouseholdVisit(); v != nil {
		for _, f := range v.Findings {
			f.MajorIllnessTreated, f.MajorIllnessUntreatedReason, f.MajorIllnessReviewed, f.SafetyNetApplied = nil, "", nil, nil
		}
	}
}

// TestBatchesLeaveEarlierValues checks that the health checks and the three
// batches, drawn from a stream of their own, changed no value generated
// before them.
func TestBatchesLeaveEarlierValues(t *testing.T) {
	h, changed := sha256.New(), 0
	opts := proto.MarshalOptions{Deterministic: true}
	eachRecord(t, medium(), func(r *fieldsyncv1.Record) {
		before := proto.Size(r)
		withoutBatches(r)
		if proto.Size(r) != before {
			changed++
		}
		b, err := opts.Marshal(r)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		h.Write(b)
	})
	if got := hex.EncodeToString(h.Sum(nil)); got != earlierMedium {
		t.Errorf("records without the batches' fields hash to %s, want %s as before they were added", got, earlierMedium)
	}
	if changed == 0 {
		t.Error("no record carries a field of the batches, so the hash proves nothing")
	}
}

// TestBatches checks the shares doc.go gives for health checks, severe
// illnesses and the three batches' findings on the default county, and that
// records and visits carry the registry's values.
func TestBatches(t *testing.T) {
	g := newGenerator(t, Config{})
	asOf := g.Config().AsOf
	last := dayOf(asOf).Add(-days(1))
	yearStart := time.Date(last.Year(), 1, 1, 0, 0, 0, 0, cst)
	var home, gone, ordinary, yearBefore, severeMajor, severeChronic, treated, reviewed, safetyNet ratio
	people := map[string]*Person{}
	for _, v := range g.County.Villages() {
		for _, h := range v.Households {
			for _, p := range h.Members {
				people[p.ID] = p
				age, d := p.Age(asOf), p.LastHealthCheckOn
				inAge := p.Alive() && age >= 7 && age <= 64
				thisYear := !d.IsZero() && !d.Before(yearStart) && !d.After(last)
				if !d.IsZero() && (!inAge || d.Before(yearStart.AddDate(-1, 0, 0)) || d.After(last) || d.Before(p.BirthDate)) {
					t.Errorf("person %s aged %d (%v): health check on %v, want none or one from %v to %v",
						p.ID, age, p.Residency, d, yearStart.AddDate(-1, 0, 0), last)
				}
				home.add(inAge && h.Registered() && !away(p.Residency), thisYear)
				gone.add(inAge && h.Registered() && away(p.Residency), thisYear)
				ordinary.add(inAge && !h.Registered(), thisYear)
				yearBefore.add(inAge && !thisYear, !d.IsZero())
				chronic, severe := false, false
				for _, c := range p.Conditions {
					severeMajor.add(c.MajorIllness, c.SevereIllness)
					chronic = chronic || !c.MajorIllness
					severe = severe || !c.MajorIllness && c.SevereIllness
				}
				severeChronic.add(chronic && age >= 40, severe)
				major := p.Alive() && p.MajorIllness()
				treated.add(major, p.MajorIllnessTreated)
				reviewed.add(major, p.MajorIllnessReviewed)
				safetyNet.add(p.Alive() && p.SevereIllness(), p.SafetyNetApplied)
				if got, want := p.UntreatedReason != "", major && !p.MajorIllnessTreated; got != want {
					t.Errorf("person %s: untreated reason %q, want one %v", p.ID, p.UntreatedReason, want)
				}
			}
		}
	}
	t.Logf("default county, %d people: checked this year: registered at home %d of %d, away %d of %d, ordinary %d of %d; "+
		"the year before %d of %d; severe: %d of %d major illnesses, %d of %d chronic patients 40 and over; "+
		"living major patients treated %d of %d, reviewed %d of %d; living severe patients safety net %d of %d",
		len(people), home.n, home.of, gone.n, gone.of, ordinary.n, ordinary.of, yearBefore.n, yearBefore.of,
		severeMajor.n, severeMajor.of, severeChronic.n, severeChronic.of, treated.n, treated.of, reviewed.n, reviewed.of,
		safetyNet.n, safetyNet.of)
	checkPercent(t, "checked this year, registered at home, 7–64", home, 87, 93)
	checkPercent(t, "checked this year, registered away, 7–64", gone, 34, 46)
	checkPercent(t, "checked this year, ordinary, 7–64", ordinary, 47, 53)
	checkPercent(t, "checked the year before, of the others 7–64", yearBefore, 3.5, 6.5)
	checkPercent(t, "severe major illnesses", severeMajor, 15, 45)
	checkPercent(t, "severe among chronic patients 40 and over", severeChronic, 0.05, 0.8)
	checkPercent(t, "major illness treated", treated, 80, 100)
	checkPercent(t, "major illness reviewed", reviewed, 75, 100)
	checkPercent(t, "safety net applied", safetyNet, 70, 100)
	if severeChronic.n == 0 || safetyNet.of == 0 || treated.n == treated.of {
		t.Error("the default county reaches no severe chronic patient, no severe patient or no untreated major patient")
	}

	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		if rec := r.GetPerson(); rec != nil {
			checkPersonBatches(t, people[rec.Id], rec)
		}
		for _, f := range r.GetHouseholdVisit().GetFindings() {
			checkFindingBatches(t, people[f.PersonId], f)
		}
	})
}

// checkPersonBatches checks that a person record carries the registry's health
// check and severe illnesses.
func checkPersonBatches(t *testing.T, p *Person, rec *fieldsyncv1.Person) {
	t.Helper()
	if got, want := rec.LastHealthCheckOn, protoDate(p.LastHealthCheckOn); !proto.Equal(got, want) {
		t.Errorf("person %s: last_health_check_on %v, registry %v", p.ID, got, want)
	}
	for i, c := range rec.Conditions {
		if c.SevereIllness != p.Conditions[i].SevereIllness {
			t.Errorf("person %s: conditions[%d].severe_illness %v, registry %v", p.ID, i, c.SevereIllness, p.Conditions[i].SevereIllness)
		}
	}
}

// checkFindingBatches checks that every finding about a living major or severe
// patient, present or absent, carries the registry's answers, and that no other
// finding does.
func checkFindingBatches(t *testing.T, p *Person, f *fieldsyncv1.MemberFinding) {
	t.Helper()
	major, severe := p.Alive() && p.MajorIllness(), p.Alive() && p.SevereIllness()
	if (f.MajorIllnessTreated != nil) != major || (f.MajorIllnessReviewed != nil) != major || (f.SafetyNetApplied != nil) != severe {
		t.Fatalf("person %s (major %v, severe %v): finding sets treated %v, reviewed %v, safety net %v",
			p.ID, major, severe, f.MajorIllnessTreated != nil, f.MajorIllnessReviewed != nil, f.SafetyNetApplied != nil)
	}
	if f.GetMajorIllnessTreated() != p.MajorIllnessTreated && major ||
		f.GetMajorIllnessUntreatedReason() != p.UntreatedReason && major ||
		f.GetMajorIllnessReviewed() != p.MajorIllnessReviewed && major ||
		f.GetSafetyNetApplied() != p.SafetyNetApplied && severe {
		t.Errorf("person %s: finding %v disagrees with the registry", p.ID, f)
	}
}
