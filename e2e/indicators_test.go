package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/indicators/indicatorstest"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// checkIndicators compares, for every area of srv (itself, its townships
// and the villages of the schedule in it), the indicators srv reports (from
// its read model, with each village's figures kept between reports) with
// those computed afresh from every record its store holds.
func (w *tierWorld) checkIndicators(t *testing.T, srv *tierServer, when string) {
	t.Helper()
	if srv.srv == nil {
		return
	}
	set, err := indicatorstest.FromStore(t.Context(), srv.srv.Store())
	if err != nil {
		t.Fatalf("%s: %v", srv.name, err)
	}
	areas := []string{srv.area}
	for _, v := range w.villages {
		if strings.HasPrefix(v, srv.area) {
			areas = append(areas, v)
			if len(srv.area) == 6 && !strings.Contains(strings.Join(areas, ","), v[:9]+",") {
				areas = append(areas, v[:9])
			}
		}
	}
	for _, area := range areas {
		got, err := srv.srv.IndicatorsReport(t.Context(), &fieldsyncv1.IndicatorsRequest{AreaCode: area, Depth: "village"})
		if err != nil {
			t.Fatalf("%s: indicators of %s: %v", srv.name, area, err)
		}
		now := time.Now()
		want, err := set.Compute(indicators.Options{Area: area, AsOf: now, Now: now, Rules: survey.DefaultRules()})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetCampaign() != want.Campaign {
			t.Errorf("%s %s: %s reports campaign %q, recomputed %q", when, area, srv.name, got.GetCampaign(), want.Campaign)
		}
		if len(got.GetRows()) != len(want.Rows) {
			t.Errorf("%s %s: %s reports %d rows, recomputed %d", when, area, srv.name, len(got.GetRows()), len(want.Rows))
			continue
		}
		for i, row := range got.GetRows() {
			wr := want.Rows[i]
			if row.GetAreaCode() != wr.Area {
				t.Errorf("%s %s: %s's row %d is %s, recomputed %s", when, area, srv.name, i, row.GetAreaCode(), wr.Area)
				continue
			}
			for _, v := range row.GetValues() {
				if wv := wr.Values[indicators.Key(v.GetKey())]; wv.Num != v.GetNumerator() || wv.Den != v.GetDenominator() {
					t.Errorf("%s %s: %s's %s of %s is %d/%d, recomputed from its records %d/%d", when, area, srv.name, v.GetKey(), wr.Area,
						v.GetNumerator(), v.GetDenominator(), wv.Num, wv.Den)
				}
			}
		}
	}
	w.fig.indicatorChecks++
}
