package factstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/indicators/factstore"
	"github.com/fieldsync/fieldsync/indicators/indicatorstest"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// county is a store of a generated county, its model, and the records
// written, by id, for the test to edit.
type county struct {
	t       *testing.T
	path    string
	store   *boltstore.Store
	model   *factstore.Model
	clock   *syncengine.Clock
	wall    int64
	g       *countygen.Generator
	records map[string]*fieldsyncv1.Record
	ids     []string // of records, in the order written
	joined  []string // households people joined from elsewhere
	rng     *rand.Rand
}

func openCounty(t *testing.T, people int, seed uint64) *county {
	t.Helper()
	g, err := countygen.New(countygen.Config{People: people, Seed: seed, Townships: 3, VillagesPerTownship: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := &county{t: t, path: filepath.Join(t.TempDir(), "server.db"), g: g, records: map[string]*fieldsyncv1.Record{},
		rng: rand.New(rand.NewPCG(seed, 7)), wall: g.Config().AsOf.Add(-48 * time.Hour).UnixMilli()}
	c.open(true)
	c.clock = syncengine.NewClock(c.store.Replica(), 0)
	var batch []*fieldsyncv1.Record
	if err := g.Each(func(r *fieldsyncv1.Record) error {
		batch = append(batch, r)
		if len(batch) == 200 {
			c.write(batch...)
			batch = nil
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c.write(batch...)
	return c
}

// open opens the store, with the model when withModel.
func (c *county) open(withModel bool) {
	c.t.Helper()
	// A store copied back from a backup is a rollback the store refuses
	// unless told (fieldsyncd recover).
	s, err := boltstore.Open(c.path, &boltstore.Options{AcceptRollback: true})
	if err != nil {
		c.t.Fatal(err)
	}
	c.store, c.model = s, nil
	if withModel {
		if c.model, err = factstore.Open(context.Background(), s, filepath.Join(filepath.Dir(c.path), factstore.File)); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *county) close() {
	if c.model != nil {
		if err := c.model.Close(); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.store.Close(); err != nil {
		c.t.Fatal(err)
	}
}

// write writes records in one transaction, as the server applies a batch.
func (c *county) write(recs ...*fieldsyncv1.Record) {
	c.t.Helper()
	err := c.store.Update(context.Background(), func(tx syncengine.Tx) error {
		for _, r := range recs {
			id, _, err := wire.Identity(r)
			if err != nil {
				return err
			}
			cur, err := tx.Record(context.Background(), id)
			if err != nil {
				return err
			}
			e, changed, err := wire.EditOf(cur, r)
			if err != nil || !changed {
				return err
			}
			e.ID = syncengine.ChangeID(uuid.Must(uuid.NewV7()))
			c.wall += 1000
			if _, err := syncengine.WriteLocalTx(context.Background(), tx, c.clock, c.wall, e, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range recs {
		id := recordID(r)
		if c.records[id] == nil {
			c.ids = append(c.ids, id)
		}
		c.records[id] = r
	}
}

// remove deletes a record.
func (c *county) remove(id string) {
	c.t.Helper()
	rid, err := wire.RecordID(id)
	if err != nil {
		c.t.Fatal(err)
	}
	err = c.store.Update(context.Background(), func(tx syncengine.Tx) error {
		c.wall += 1000
		_, err := syncengine.WriteLocalTx(context.Background(), tx, c.clock, c.wall,
			syncengine.Edit{ID: syncengine.ChangeID(uuid.Must(uuid.NewV7())), Record: rid, Delete: true}, nil)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	delete(c.records, id)
}

func recordID(r *fieldsyncv1.Record) string {
	return wire.Body(r).ProtoReflect().Get(wire.Body(r).ProtoReflect().Descriptor().Fields().ByNumber(1)).String()
}

// recomputed computes o from every live record of the store, read afresh.
func (c *county) recomputed(o indicators.Options) indicators.Report {
	c.t.Helper()
	set, err := indicatorstest.FromStore(context.Background(), c.store)
	if err != nil {
		c.t.Fatal(err)
	}
	r, err := set.Compute(o)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// check compares the model's reports with recomputed ones, for the county,
// a township and a village, on several days, with and without a list.
func (c *county) check(label string) {
	c.t.Helper()
	asOf := c.g.Config().AsOf
	days := []time.Time{asOf, asOf.AddDate(0, 0, -1), asOf.AddDate(0, -2, 0), asOf.AddDate(-1, 0, -3)}
	tw := c.g.County.Townships[1]
	areas := []string{c.g.County.Code[:6], tw.Code[:9], tw.Villages[2].Code}
	for _, d := range days {
		for _, a := range areas {
			for _, list := range []indicators.Key{"", "followups_overdue", "visit_coverage", "risk_flagged", "contract_rate"} {
				if list != "" && a != areas[1] {
					continue
				}
				o := indicators.Options{Area: a, AsOf: d, Now: asOf, Rules: survey.DefaultRules(), List: list}
				got, err := c.model.Compute(context.Background(), o, nil)
				if err != nil {
					c.t.Fatal(err)
				}
				want := c.recomputed(o)
				if !reflect.DeepEqual(got, want) {
					c.t.Fatalf("%s: area %s as of %s list %q: the model's report differs from one recomputed from the records:\n%s",
						label, a, d.Format(time.DateOnly), list, diff(got, want))
				}
			}
		}
	}
}

func diff(got, want indicators.Report) string {
	if got.Campaign != want.Campaign {
		return fmt.Sprintf("campaign %q, want %q", got.Campaign, want.Campaign)
	}
	if len(got.Rows) != len(want.Rows) {
		return fmt.Sprintf("%d rows, want %d", len(got.Rows), len(want.Rows))
	}
	for i := range got.Rows {
		for k, v := range want.Rows[i].Values {
			if got.Rows[i].Values[k] != v {
				return fmt.Sprintf("row %s %s: %+v, want %+v", want.Rows[i].Area, k, got.Rows[i].Values[k], v)
			}
		}
	}
	if len(got.Items) != len(want.Items) {
		return fmt.Sprintf("%d items, want %d", len(got.Items), len(want.Items))
	}
	for i := range got.Items {
		if !reflect.DeepEqual(got.Items[i], want.Items[i]) {
			return fmt.Sprintf("item %d: %+v, want %+v", i, got.Items[i], want.Items[i])
		}
	}
	return "(reports differ elsewhere)"
}

// seed is the test's seed: FIELDSYNC_SEED, or the time.
func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("FIELDSYNC_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FIELDSYNC_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("seed %d (replay with FIELDSYNC_SEED=%d)", s, s)
	return s
}

// TestIncrementalEqualsRecomputed edits a generated county at random (edits
// of people, households moved, records deleted, follow-ups and flags of
// people not yet held, visits, problems worked), and checks after every
// round, on several days and areas, that the indicators the model keeps
// equal those computed afresh from the store's merged records; then across
// a restart, and after the store was written without the model.
func TestIncrementalEqualsRecomputed(t *testing.T) {
	s := seed(t)
	c := openCounty(t, 400, s%1000+1)
	c.check("after the load")
	for round := range 6 {
		for range 25 {
			c.mutate()
		}
		c.check(fmt.Sprintf("round %d", round))
	}
	c.close()
	c.open(true)
	c.check("reopened")
	c.close()
	c.open(false)
	for range 10 {
		c.mutate()
	}
	c.close()
	c.open(true)
	c.check("caught up after writes without the model")
	// A store restored from an older copy: the model, ahead of its log, is
	// rebuilt from the records.
	c.close()
	backup, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	c.open(true)
	for range 10 {
		c.mutate()
	}
	c.check("before the restore")
	c.close()
	if err := os.WriteFile(c.path, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	c.records = map[string]*fieldsyncv1.Record{}
	c.open(true)
	c.reload()
	c.check("the store restored from an older copy")
	c.close()
}

// reload reads the records the store holds again, for the test to edit.
func (c *county) reload() {
	c.t.Helper()
	c.ids = c.ids[:0]
	err := indicatorstest.EachRecord(context.Background(), c.store, func(rec *fieldsyncv1.Record, _ syncengine.Record) error {
		id := recordID(rec)
		c.ids, c.records[id] = append(c.ids, id), rec
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// pick returns a random live record of a kind, or nil.
func (c *county) pick(kind string) *fieldsyncv1.Record {
	for range 200 {
		r := c.records[c.ids[c.rng.IntN(len(c.ids))]]
		if r != nil && (kind == "" || fmt.Sprintf("%T", r.GetBody()) == kind) {
			return proto.Clone(r).(*fieldsyncv1.Record)
		}
	}
	return nil
}

func (c *county) village() string {
	vs := c.g.County.Villages()
	return vs[c.rng.IntN(len(vs))].Code
}

func (c *county) at(daysBack int) *timestamppb.Timestamp {
	return timestamppb.New(c.g.Config().AsOf.Add(-time.Duration(daysBack)*24*time.Hour - time.Duration(c.rng.IntN(36000))*time.Second))
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// mutate makes one random change.
func (c *county) mutate() {
	asOfDay := survey.Today(c.g.Config().AsOf)
	switch c.rng.IntN(10) {
	case 0: // a person's conditions, contract or residency
		r := c.pick("*fieldsyncv1.Record_Person")
		if r == nil {
			return
		}
		p := r.GetPerson()
		switch c.rng.IntN(4) {
		case 0:
			p.Conditions = append(p.Conditions, &fieldsyncv1.Condition{Disease: fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION,
				DiagnosedOn: survey.AddDays(asOfDay, -c.rng.IntN(500)), MajorIllness: c.rng.IntN(3) == 0, SevereIllness: c.rng.IntN(3) == 0})
		case 1:
			p.Contract = &fieldsyncv1.Contract{SignedOn: survey.AddDays(asOfDay, -c.rng.IntN(700))}
		case 2:
			p.Residency = fieldsyncv1.Residency_RESIDENCY_DECEASED
		case 3:
			if h := c.pick("*fieldsyncv1.Record_Household"); h != nil {
				p.HouseholdId = h.GetHousehold().GetId() // joins another household, maybe elsewhere
				c.joined = append(c.joined, p.HouseholdId)
			}
		}
		c.write(r)
	case 1: // a household moved with its people, as admin move does
		h := c.pick("*fieldsyncv1.Record_Household")
		if h == nil {
			return
		}
		to := c.village()
		h.GetHousehold().AreaCode = to
		recs := []*fieldsyncv1.Record{h}
		for _, id := range c.ids {
			if r := c.records[id]; r != nil && r.GetPerson().GetHouseholdId() == h.GetHousehold().GetId() {
				r = proto.Clone(r).(*fieldsyncv1.Record)
				r.GetPerson().AreaCode = to
				recs = append(recs, r)
			}
		}
		c.write(recs...)
	case 2: // a record deleted
		if r := c.pick(""); r != nil {
			c.remove(recordID(r))
		}
	case 3: // a household's status changed
		h := c.pick("*fieldsyncv1.Record_Household")
		if len(c.joined) > 0 && c.rng.IntN(2) == 0 {
			// One whose members live elsewhere: they count differently.
			h = c.records[c.joined[c.rng.IntN(len(c.joined))]]
		}
		if h == nil {
			return
		}
		h = proto.Clone(h).(*fieldsyncv1.Record)
		h.GetHousehold().Status = fieldsyncv1.HouseholdStatus(1 + c.rng.IntN(4))
		c.write(h)
	case 4: // a follow-up, of a person held or of one arriving later
		person := ""
		if p := c.pick("*fieldsyncv1.Record_Person"); p != nil && c.rng.IntN(4) > 0 {
			person = p.GetPerson().GetId()
		}
		late := person == ""
		if late {
			person = newID()
		}
		method := fieldsyncv1.FollowUpMethod(1 + c.rng.IntN(3))
		disease := fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION
		if c.rng.IntN(2) == 0 {
			disease = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES
		}
		f := &fieldsyncv1.FollowUp{Id: newID(), AreaCode: c.village(), PersonId: person, Disease: disease, Method: method,
			FollowedUpAt: c.at(c.rng.IntN(400)), NextDueOn: survey.AddDays(asOfDay, c.rng.IntN(60)-30)}
		c.write(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: f}})
		if late && c.rng.IntN(2) == 0 {
			hh := c.pick("*fieldsyncv1.Record_Household")
			p := &fieldsyncv1.Person{Id: person, AreaCode: c.village(), Name: "迟到", Conditions: []*fieldsyncv1.Condition{{Disease: disease}}}
			if hh != nil {
				p.HouseholdId = hh.GetHousehold().GetId()
			}
			c.write(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: p}})
		}
	case 5: // a visit with findings
		h := c.pick("*fieldsyncv1.Record_Household")
		if h == nil {
			return
		}
		v := &fieldsyncv1.HouseholdVisit{Id: newID(), AreaCode: h.GetHousehold().GetAreaCode(), HouseholdId: h.GetHousehold().GetId(),
			Campaign: []string{"", c.g.Config().Campaign, "2099-专项"}[c.rng.IntN(3)], StartedAt: c.at(c.rng.IntN(420))}
		for _, id := range c.ids {
			if r := c.records[id]; r != nil && r.GetPerson().GetHouseholdId() == h.GetHousehold().GetId() {
				yes := c.rng.IntN(2) == 0
				v.Findings = append(v.Findings, &fieldsyncv1.MemberFinding{PersonId: r.GetPerson().GetId(), ContractServedOnTime: &yes,
					MajorIllnessTreated: &yes, KnowsContractedDoctor: &yes, SafetyNetApplied: &yes,
					Satisfaction: fieldsyncv1.Satisfaction(c.rng.IntN(3))})
			}
		}
		c.write(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}})
	case 6: // a flag, for a person held or not, or a household
		f := &fieldsyncv1.RiskFlag{Id: newID(), AreaCode: c.village(), Status: fieldsyncv1.RiskFlagStatus(1 + c.rng.IntN(3)), FlaggedAt: c.at(c.rng.IntN(100))}
		if h := c.pick("*fieldsyncv1.Record_Household"); h != nil {
			f.HouseholdId = h.GetHousehold().GetId()
		}
		switch c.rng.IntN(3) {
		case 0:
			if p := c.pick("*fieldsyncv1.Record_Person"); p != nil {
				f.PersonId = p.GetPerson().GetId()
			}
		case 1:
			f.PersonId = newID()
		}
		c.write(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_RiskFlag{RiskFlag: f}})
	case 7: // a problem worked
		r := c.pick("*fieldsyncv1.Record_Problem")
		if r == nil {
			return
		}
		p := r.GetProblem()
		p.Status = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED
		p.RectifiedAt = c.at(c.rng.IntN(30))
		c.write(r)
	case 8: // a household or clinic record arriving after what names it
		id := newID()
		f := &fieldsyncv1.RiskFlag{Id: newID(), AreaCode: c.village(), HouseholdId: id, Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN, FlaggedAt: c.at(3)}
		v := &fieldsyncv1.HouseholdVisit{Id: newID(), AreaCode: c.village(), HouseholdId: id, Campaign: c.g.Config().Campaign, StartedAt: c.at(5)}
		c.write(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_RiskFlag{RiskFlag: f}}, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}})
		h := &fieldsyncv1.Household{Id: id, AreaCode: c.village(), HeadName: "新户", Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_MONITORED}
		c.write(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: h}})
	case 9: // a clinic audited
		r := c.pick("*fieldsyncv1.Record_ClinicAudit")
		if r == nil {
			return
		}
		a := r.GetClinicAudit()
		a.Id, a.AuditedAt = newID(), c.at(c.rng.IntN(30))
		c.write(r)
	}
}

// Warm, as fieldsyncd serve runs it every second, leaves no village of the
// county to compute again for today's report, after the load and after
// changes; and the report it keeps is right.
func TestWarmKeepsTodayComputed(t *testing.T) {
	c := openCounty(t, 200, seed(t)%1000+1)
	defer c.close()
	now := c.g.Config().AsOf
	o := indicators.Options{Area: c.g.County.Code[:6], AsOf: now, Now: now, Rules: survey.DefaultRules()}
	stale := func() int {
		t.Helper()
		n, err := factstore.Stale(c.model)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := stale(); n == 0 {
		t.Fatal("villages computed before anything asked for them")
	}
	for round := range 3 {
		if err := c.model.Warm(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		if n := stale(); n != 0 {
			t.Fatalf("round %d: %d villages left to compute after Warm", round, n)
		}
		got, err := c.model.Compute(context.Background(), o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.recomputed(o); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: the warmed report differs from one recomputed:\n%s", round, diff(got, want))
		}
		for range 10 {
			c.mutate()
		}
		if err := c.model.CatchUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := stale(); n == 0 {
			t.Fatalf("round %d: ten changes left no village to compute again", round)
		}
	}
}
