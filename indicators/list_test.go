package indicators_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/indicators/indicatorstest"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
)

// TestLists: the list behind each indicator holds exactly the units behind
// its number in every village (for a rate, those not achieving it; for a
// count, those counted), names them, masks their ID numbers, and lists
// nothing when no list is asked for.
func TestLists(t *testing.T) {
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 3, HouseholdsPerVillage: 40, Seed: 13})
	if err != nil {
		t.Fatal(err)
	}
	set := indicatorstest.NewSet()
	clear := map[string]bool{}
	for _, v := range g.County.Villages() {
		for _, h := range v.Households {
			for _, m := range h.Members {
				clear[m.IDNumber] = true
			}
		}
	}
	if err := g.Each(func(r *fieldsyncv1.Record) error {
		set.Add(r, time.Time{})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	asOf := g.Config().AsOf.Add(-24 * time.Hour)
	set.AddDevice(indicators.Device{ID: "phone-1", Name: "phone of village 1", Areas: []string{g.County.Villages()[0].Code}, Enrolled: asOf.Add(-10 * 24 * time.Hour), LastSync: asOf.Add(-4 * 24 * time.Hour)})
	o := indicators.Options{Area: g.County.Code, AsOf: asOf, Rules: survey.DefaultRules(), Now: asOf.Add(time.Hour)}
	base, err := set.Compute(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(base.Items) != 0 {
		t.Errorf("%d items listed without a list asked for", len(base.Items))
	}
	for _, def := range indicators.Keys() {
		o.List = def.Key
		r, err := set.Compute(o)
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int64{}
		for _, it := range r.Items {
			per[it.Area]++
			if it.ID == "" || it.Kind == "" {
				t.Errorf("%s: an item without id or kind: %+v", def.Key, it)
			}
			if clear[it.MaskedID] || clear[it.Name] || clear[it.Detail] {
				t.Fatalf("%s: an item shows a clear ID number: %+v", def.Key, it)
			}
			if it.Kind == "person" && it.Name != "" && !strings.Contains(it.MaskedID, "*") {
				t.Errorf("%s: person %s listed without a masked ID number: %q", def.Key, it.ID, it.MaskedID)
			}
		}
		listed := int64(0)
		for _, row := range r.Rows {
			if row.Level != indicators.Village {
				continue
			}
			v := row.Values[def.Key]
			want := v.Num
			if def.Kind == indicators.Rate {
				want = v.Den - v.Num
			}
			if per[row.Area] != want {
				t.Errorf("%s in %s: %d listed, the figure says %d", def.Key, row.Area, per[row.Area], want)
			}
			listed += per[row.Area]
		}
		if listed != int64(len(r.Items)) {
			t.Errorf("%s: %d items, %d of them in the villages", def.Key, len(r.Items), listed)
		}
	}
	o.List = "followups_overdue"
	r, _ := set.Compute(o)
	if len(r.Items) == 0 || r.Items[0].Name == "" || !strings.Contains(r.Items[0].Detail, "due") {
		t.Errorf("the overdue list: %+v", r.Items)
	}
	o.List = "devices_not_synced_3d"
	if r, _ := set.Compute(o); len(r.Items) != 1 || r.Items[0].ID != "phone-1" || !strings.Contains(r.Items[0].Detail, "last sync") {
		t.Errorf("the devices list: %+v", r.Items)
	}
}

// TestDevicesInScope: a report counts and lists only the devices serving
// areas within it, whatever zeros their codes end in: a village's report does
// not show a neighbouring village's phone, a township's not another
// township's, and a township-wide phone counts at its township.
func TestDevicesInScope(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, survey.ChinaTime)
	stale := now.Add(-4 * 24 * time.Hour)
	set := indicatorstest.NewSet()
	for id, areas := range map[string][]string{
		"v100": {"532523100100"}, "v101": {"532523100101"}, "t100": {"532523100"}, "t101": {"532523101"},
	} {
		set.AddDevice(indicators.Device{ID: id, Name: "phone " + id, Areas: areas, Enrolled: stale, LastSync: stale})
	}
	for area, want := range map[string]string{
		"532523100101": "v101", "532523100100": "v100", "532523101": "t101", "532523100": "t100 v100 v101", "532523": "t100 t101 v100 v101",
	} {
		r, err := set.Compute(indicators.Options{Area: area, AsOf: now, Now: now, Rules: survey.DefaultRules(), List: "devices_not_synced_3d"})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, it := range r.Items {
			ids = append(ids, it.ID)
		}
		slices.Sort(ids)
		if got := strings.Join(ids, " "); got != want {
			t.Errorf("devices listed for %s: %q, want %q", area, got, want)
		}
		if got := r.Rows[0].Values["devices_not_synced_3d"].Num; got != int64(len(ids)) {
			t.Errorf("devices counted for %s: %d, listed %d", area, got, len(ids))
		}
	}
}
