package countygen

import (
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// Generator holds a generated county's registry and streams its records.
//
// New builds the registry (areas, workers, clinics, households, people) in
// memory; the records, the surveys above all, are made afresh on every call of
// Each or EachInVillage, village by village, so that memory stays small for a
// county of 200,000 people. A Generator is never modified after New and is safe
// for concurrent use.
type Generator struct {
	// County is the generated registry, for tests that check records against
	// it. It belongs to the Generator: read it, do not modify it.
	County *County

	cfg   Config
	rules survey.Rules // survey's defaults with cfg's self-pay threshold
}

// New generates the registry of the county cfg describes. It returns an error
// wrapping ErrConfig when cfg is out of range, and no Generator.
func New(cfg Config) (*Generator, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, rules: survey.DefaultRules()}
	g.rules.SelfPayThresholdBP = int32(cfg.SelfPayThresholdBP)
	g.buildAreas()
	villages := g.County.Villages()
	people := cfg.People
	if people == 0 {
		people = len(villages) * cfg.HouseholdsPerVillage * 4
	}
	ids := &idNumbers{prefix: cfg.CountyCode, used: make(map[int64]bool, people+people/8)}
	for i, v := range villages {
		quota := 0
		if cfg.People > 0 {
			quota = cfg.People / len(villages)
			if i < cfg.People%len(villages) {
				quota++
			}
		}
		var previous *Village
		if i > 0 && villages[i-1].Township == v.Township {
			previous = villages[i-1]
		}
		g.buildVillage(v, previous, ids, quota)
		g.batches(v)
	}
	return g, nil
}

// Config returns the configuration with its defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Each calls fn with every record of the county, in this order: the county
// inspectors; then township by township its staff and, village by village,
// what EachInVillage gives. Every record is freshly allocated and fn may keep
// it. Each stops at the first error fn returns and returns that error; it
// returns a non-nil error of its own only if an ID number cannot be captured,
// which would be a bug.
//
// Two calls give the same records in the same order, as do two Generators made
// from equal Configs.
func (g *Generator) Each(fn func(*fieldsyncv1.Record) error) error {
	for _, w := range g.County.Inspectors {
		if err := fn(workerRecord(w)); err != nil {
			return err
		}
	}
	for _, t := range g.County.Townships {
		for _, w := range t.Staff {
			if err := fn(workerRecord(w)); err != nil {
				return err
			}
		}
		for _, v := range t.Villages {
			if err := g.EachInVillage(v, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// EachInVillage calls fn with every record of one village of this Generator's
// county, in this order: the clinic; the village doctors; each household
// followed by its members; then the village's surveys and what they raised:
// household visits, clinic audits, follow-ups, problems, risk flags (each kind
// in time order). Errors and ownership are as for Each.
func (g *Generator) EachInVillage(v *Village, fn func(*fieldsyncv1.Record) error) error {
	if err := fn(clinicRecord(v)); err != nil {
		return err
	}
	for _, w := range v.Doctors {
		if err := fn(workerRecord(w)); err != nil {
			return err
		}
	}
	for _, h := range v.Households {
		if err := fn(householdRecord(h)); err != nil {
			return err
		}
		for _, p := range h.Members {
			rec, err := personRecord(p, g.cfg.IDHashKey)
			if err != nil {
				return err
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
	return g.surveys(v, fn)
}
