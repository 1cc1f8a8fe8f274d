package countygen

import (
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// TestPropertiesAcrossSeeds generates small counties for several seeds, AsOf
// times (a leap day, a UTC midnight, late evening) and campaign lengths, and
// checks that every record validates, nothing happens after AsOf and every
// visit falls in its campaign. Failures name the seed to replay.
func TestPropertiesAcrossSeeds(t *testing.T) {
	asOfs := []time.Time{
		{},
		time.Date(2028, 2, 29, 23, 59, 0, 0, cst),
		time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2030, 12, 31, 9, 0, 0, 0, cst),
	}
	for seed := uint64(100); seed < 112; seed++ {
		cfg := Config{
			Seed:                 seed,
			Townships:            2,
			VillagesPerTownship:  5,
			HouseholdsPerVillage: 20,
			AsOf:                 asOfs[seed%4],
			CampaignDays:         int(1 + seed*37%365),
		}
		g := newGenerator(t, cfg)
		asOf := g.Config().AsOf
		campStart := dayOf(asOf).Add(-days(cfg.CampaignDays))
		eachRecord(t, g, func(r *fieldsyncv1.Record) {
			if errs := survey.Validate(r, asOf); errs != nil {
				t.Errorf("seed %d: %T invalid: %v", seed, r.Body, errs)
			}
			checkTimes(t, r.ProtoReflect(), asOf)
			if hv := r.GetHouseholdVisit(); hv != nil && hv.StartedAt.AsTime().Before(campStart) {
				t.Errorf("seed %d: visit at %v before the campaign's start %v", seed, hv.StartedAt.AsTime(), campStart)
			}
		})
	}
}
