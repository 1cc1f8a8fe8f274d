package countygen

import (
	"fmt"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// validationConfigs are counties that between them reach every branch of the
// generator: a village, many small villages (vacant posts and their covers),
// a medium county, and an AsOf that is not midnight in another year.
var validationConfigs = []Config{
	{People: 300, Seed: 11},
	{Townships: 4, VillagesPerTownship: 12, HouseholdsPerVillage: 12, Seed: 5},
	{People: 6000, Seed: 42},
	{People: 3000, Seed: 9, AsOf: time.Date(2025, 6, 15, 14, 30, 0, 0, cst), CampaignDays: 30},
}

// TestEveryRecordValidates checks every generated record against
// survey.Validate at the Config's AsOf.
func TestEveryRecordValidates(t *testing.T) {
	empty := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{}}}
	if survey.Validate(empty, DefaultAsOf()) == nil {
		t.Fatal("survey.Validate accepts an empty household, so passing it would prove nothing")
	}
	for _, cfg := range validationConfigs {
		t.Run(fmt.Sprintf("seed=%d", cfg.Seed), func(t *testing.T) {
			g := newGenerator(t, cfg)
			asOf, failed := g.Config().AsOf, 0
			eachRecord(t, g, func(r *fieldsyncv1.Record) {
				errs := survey.Validate(r, asOf)
				if len(errs) == 0 {
					return
				}
				if failed++; failed <= 20 {
					t.Errorf("%T %s: %v", r.Body, bodyOf(r).(interface{ GetId() string }).GetId(), errs)
				}
			})
			if failed > 20 {
				t.Errorf("... %d records failed validation in all", failed)
			}
		})
	}
}

func TestNothingAfterAsOf(t *testing.T) {
	for _, cfg := range validationConfigs {
		g := newGenerator(t, cfg)
		eachRecord(t, g, func(r *fieldsyncv1.Record) { checkTimes(t, r.ProtoReflect(), g.Config().AsOf) })
	}
}

func TestVacantPostsAreCovered(t *testing.T) {
	g := newGenerator(t, validationConfigs[1])
	vacant := 0
	for _, v := range g.County.Villages() {
		switch {
		case len(v.Doctors) == 0 && v.Cover == nil:
			t.Errorf("village %s has neither doctors nor cover", v.Code)
		case len(v.Doctors) == 0:
			vacant++
		case v.Cover != nil:
			t.Errorf("village %s has doctors and a cover", v.Code)
		}
	}
	if vacant == 0 {
		t.Errorf("no vacant post among %d villages; the test config no longer reaches that branch", len(g.County.Villages()))
	}
}
