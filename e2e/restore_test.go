package e2e

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
)

// A township restored from an older copy of its store, after fieldsyncd
// recover, gets back from its county what it had relayed since the copy: the
// county leaves a township's own relayed changes out of its pulls (no
// echoes), so recover makes the township take a snapshot from the county
// again.
func TestRestoredTownshipGetsBackWhatItRelayed(t *testing.T) {
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 1, HouseholdsPerVillage: 2, Seed: 3,
		AsOf: time.Date(2026, 6, 1, 0, 0, 0, 0, survey.ChinaTime)})
	if err != nil {
		t.Fatal(err)
	}
	v := g.County.Villages()[0]
	var households []*fieldsyncv1.Record
	if err := g.EachInVillage(v, func(r *fieldsyncv1.Record) error {
		if r.GetHousehold() != nil {
			households = append(households, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := &tierWorld{rng: rand.New(rand.NewPCG(3, 3))}
	w.county = startTier(t, "county", v.Code[:6])
	town := startTier(t, "township", v.Code[:9])
	w.enrolTownship(t, town)
	phone := &tierPhone{town: town, village: v.Code, online: true}
	phone.device = openDevice(t, "phone", []string{v.Code}, quickRetry(2)...)
	phone.enrollWith(t, town.srv, town.addr)

	// The copy is taken after a relay round (the township has a pull cursor
	// at the county) and before the phone's household reaches the township.
	if err := town.relay(t); err != nil {
		t.Fatal(err)
	}
	town.stop(t)
	backup, err := os.ReadFile(filepath.Join(town.dir, server.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	town.start(t)
	if err := phone.Save(t.Context(), households[0]); err != nil {
		t.Fatal(err)
	}
	if err := phone.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := town.relay(t); err != nil {
		t.Fatal(err)
	}
	id := recordID(t, households[0])
	if _, ok := tierRecord(t, w.county, id); !ok {
		t.Fatal("the county does not hold the relayed household")
	}

	town.stop(t)
	if err := os.WriteFile(filepath.Join(town.dir, server.StoreFile), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Recover(town.dir); err != nil {
		t.Fatal(err)
	}
	town.start(t)
	if _, ok := tierRecord(t, town, id); ok {
		t.Fatal("the restored township still holds the household: the copy was taken too late")
	}
	if err := town.relay(t); err != nil {
		t.Fatal(err)
	}
	if _, ok := tierRecord(t, town, id); !ok {
		t.Error("after recover and a relay round, the township lacks the household it had relayed to the county")
	}
}
