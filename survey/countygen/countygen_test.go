package countygen

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// newGenerator returns a Generator for cfg or fails the test.
func newGenerator(t testing.TB, cfg Config) *Generator {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return g
}

// medium is a county of about 6,000 people shared by the tests that only read.
var medium = sync.OnceValue(func() *Generator {
	g, err := New(Config{People: 6000, Seed: 42})
	if err != nil {
		panic(err)
	}
	return g
})

// eachRecord calls fn for every record of g, failing the test on error.
func eachRecord(t *testing.T, g *Generator, fn func(*fieldsyncv1.Record)) {
	t.Helper()
	err := g.Each(func(r *fieldsyncv1.Record) error {
		fn(r)
		return nil
	})
	if err != nil {
		t.Fatalf("Each: %v", err)
	}
}

// digest returns the count of g's records and the SHA-256 of their
// deterministic encodings in order.
func digest(t *testing.T, g *Generator) (int, [32]byte) {
	t.Helper()
	h, n := sha256.New(), 0
	opts := proto.MarshalOptions{Deterministic: true}
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		b, err := opts.Marshal(r)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		h.Write(b)
		n++
	})
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return n, sum
}

func TestDeterministic(t *testing.T) {
	cfg := Config{People: 1500, Seed: 7}
	g1, g2 := newGenerator(t, cfg), newGenerator(t, cfg)
	n1, d1 := digest(t, g1)
	n2, d2 := digest(t, g2)
	if n1 != n2 || d1 != d2 {
		t.Errorf("two generators of %+v: got %d records %x, want %d records %x", cfg, n2, d2, n1, d1)
	}
	if n3, d3 := digest(t, g1); n3 != n1 || d3 != d1 {
		t.Errorf("second Each: got %d records %x, want %d records %x", n3, d3, n1, d1)
	}
	var ids1, ids2 []string
	g1.County.EachPerson(func(p *Person) { ids1 = append(ids1, p.IDNumber) })
	g2.County.EachPerson(func(p *Person) { ids2 = append(ids2, p.IDNumber) })
	if got, want := strings.Join(ids2, ","), strings.Join(ids1, ","); got != want {
		t.Errorf("clear ID numbers differ between two generators of the same config")
	}

	other := newGenerator(t, Config{People: 1500, Seed: 8})
	if _, d := digest(t, other); d == d1 {
		t.Errorf("seeds 7 and 8 generated the same records")
	}
}

func TestZeroConfigIsDefault(t *testing.T) {
	got := newGenerator(t, Config{}).Config()
	if got.Seed != DefaultSeed || got.Townships != DefaultTownships || got.VillagesPerTownship != DefaultVillagesPerTownship ||
		got.HouseholdsPerVillage != DefaultHouseholdsPerVillage || got.CountyCode != DefaultCountyCode ||
		got.CountyName != DefaultCountyName || got.CampaignDays != DefaultCampaignDays ||
		got.SelfPayThresholdBP != DefaultSelfPayThresholdBP || !bytes.Equal(got.IDHashKey, defaultIDHashKey) {
		t.Errorf("Config{} normalizes to %+v, want the Default constants", got)
	}
	if got, want := got.AsOf, time.Date(2026, 11, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600)); !got.Equal(want) || !got.Equal(DefaultAsOf()) {
		t.Errorf("default AsOf = %v, want %v", got, want)
	}
	if got, want := got.Campaign, "2026-回头看"; got != want {
		t.Errorf("default campaign = %q, want %q", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{CountyCode: "53252"},
		{CountyCode: "53252x"},
		{CountyCode: "530023"},
		{Townships: MaxTownships + 1},
		{VillagesPerTownship: MaxVillagesPerTownship + 1},
		{HouseholdsPerVillage: -1},
		{People: -5},
		{People: MaxPeople + 1},
		{CampaignDays: 400},
		{SelfPayThresholdBP: 10001},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) error = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestSizing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		min, max int
	}{
		{"village by people", Config{People: 300}, 300, 315},
		{"village by households", Config{Townships: 1, VillagesPerTownship: 1, HouseholdsPerVillage: 100}, 250, 500},
		{"default", Config{}, 17000, 23000},
		{"county of 20,000", Config{People: 20000}, 20000, 20400},
		{"county of 200,000", Config{People: 200000}, 200000, 201500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGenerator(t, tc.cfg)
			if got := g.County.People(); got < tc.min || got > tc.max {
				t.Errorf("people = %d, want %d to %d", got, tc.min, tc.max)
			}
		})
	}
	g := newGenerator(t, Config{People: 300})
	if got, want := len(g.County.Villages()), 1; got != want {
		t.Errorf("villages for 300 people = %d, want %d", got, want)
	}
}

func TestStructureFor(t *testing.T) {
	for _, tc := range []struct{ people, minVillages, maxVillages int }{
		{300, 1, 1},
		{20000, 50, 70},
		{200000, 180, 220},
	} {
		tw, pt := structureFor(tc.people)
		if v := tw * pt; v < tc.minVillages || v > tc.maxVillages || pt > 12 {
			t.Errorf("structureFor(%d) = %d townships × %d villages, want %d to %d villages, ≤ 12 per township",
				tc.people, tw, pt, tc.minVillages, tc.maxVillages)
		}
	}
}

// bodyOf returns the message set in a record's oneof.
func bodyOf(r *fieldsyncv1.Record) proto.Message {
	m := r.ProtoReflect()
	return m.Get(m.WhichOneof(m.Descriptor().Oneofs().Get(0))).Message().Interface()
}

// areaOf returns the area code of any record.
func areaOf(r *fieldsyncv1.Record) string {
	return bodyOf(r).(interface{ GetAreaCode() string }).GetAreaCode()
}

func TestAreaCodes(t *testing.T) {
	g := medium()
	prefix := g.Config().CountyCode
	seen := map[string]bool{}
	for _, tw := range g.County.Townships {
		for _, v := range tw.Villages {
			if seen[v.Code] {
				t.Errorf("village code %s used twice", v.Code)
			}
			seen[v.Code] = true
			if !strings.HasPrefix(v.Code, tw.Code[:9]) {
				t.Errorf("village %s is not under its township %s", v.Code, tw.Code)
			}
		}
	}
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		code := areaOf(r)
		level, err := survey.ParseAreaCode(code)
		if err != nil {
			t.Fatalf("record %v: %v", r, err)
		}
		if !strings.HasPrefix(code, prefix) {
			t.Errorf("area %s is not under county %s", code, prefix)
		}
		if r.GetWorker() == nil && level != survey.AreaVillage {
			t.Errorf("%T in area %s: got level %v, want village", r.Body, code, level)
		}
	})
}

// checkUUIDv7 reports whether s is a canonical lower-case UUIDv7.
func checkUUIDv7(s string) bool {
	if len(s) != 36 || s[14] != '7' || !strings.ContainsRune("89ab", rune(s[19])) {
		return false
	}
	for i := 0; i < 36; i++ {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if s[i] != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdef", rune(s[i])):
			return false
		}
	}
	return true
}

func TestRecordIDs(t *testing.T) {
	seen := map[string]bool{}
	eachRecord(t, medium(), func(r *fieldsyncv1.Record) {
		id := bodyOf(r).(interface{ GetId() string }).GetId()
		switch b := r.Body.(type) {
		case *fieldsyncv1.Record_Problem:
			p := b.Problem
			if want := survey.ProblemID(p.SourceRecordId, p.Item, p.PersonId); id != want {
				t.Errorf("problem id %q, want its derived id %s", id, want)
			}
		case *fieldsyncv1.Record_RiskFlag:
			f := b.RiskFlag
			if want := survey.RiskFlagID(f.SourceRecordId, f.PersonId, f.Reason.String()); id != want {
				t.Errorf("risk flag id %q, want its derived id %s", id, want)
			}
		default:
			if !checkUUIDv7(id) {
				t.Errorf("%T id %q is not a canonical UUIDv7", r.Body, id)
			}
		}
		if seen[id] {
			t.Errorf("id %s used twice", id)
		}
		seen[id] = true
	})
}

func TestIDNumbers(t *testing.T) {
	g := medium()
	cfg := g.Config()
	seen := map[string]bool{}
	g.County.EachPerson(func(p *Person) {
		norm, birth, err := survey.ParseIDNumber(p.IDNumber)
		if err != nil {
			t.Fatalf("person %s: %v", p.ID, err)
		}
		if norm != p.IDNumber {
			t.Errorf("ID number %s is not normalised (%s)", p.IDNumber, norm)
		}
		if got, want := birth.Format(time.DateOnly), p.BirthDate.Format(time.DateOnly); got != want {
			t.Errorf("ID number %s: birth date %s, want %s", p.IDNumber, got, want)
		}
		if !strings.HasPrefix(p.IDNumber, cfg.CountyCode) {
			t.Errorf("ID number %s is not under county %s", p.IDNumber, cfg.CountyCode)
		}
		if got, want := (p.IDNumber[16]-'0')%2 == 1, p.Sex == fieldsyncv1.Sex_SEX_MALE; got != want {
			t.Errorf("ID number %s: odd sequence %v, want %v for %v", p.IDNumber, got, want, p.Sex)
		}
		if seen[p.IDNumber] {
			t.Errorf("ID number %s given twice", p.IDNumber)
		}
		seen[p.IDNumber] = true
	})
	people := map[string]*Person{}
	g.County.EachPerson(func(p *Person) { people[p.ID] = p })
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		rec := r.GetPerson()
		if rec == nil {
			return
		}
		p := people[rec.Id]
		if got, want := rec.IdNumber.GetMasked(), survey.MaskIDNumber(p.IDNumber); got != want {
			t.Errorf("person %s masked = %q, want %q", rec.Id, got, want)
		}
		if got, want := rec.IdNumber.GetKeyedHash(), survey.HashIDNumber(cfg.IDHashKey, p.IDNumber); !bytes.Equal(got, want) {
			t.Errorf("person %s keyed hash = %x, want %x", rec.Id, got, want)
		}
		if d := rec.BirthDate; int(d.Year) != p.BirthDate.Year() || int(d.Month) != int(p.BirthDate.Month()) || int(d.Day) != p.BirthDate.Day() {
			t.Errorf("person %s birth date %v, want %v", rec.Id, d, p.BirthDate)
		}
		if strings.Contains(prototext.Format(rec), p.IDNumber) {
			t.Errorf("person record %s carries the clear ID number", rec.Id)
		}
	})
}

func TestRelationsPlausible(t *testing.T) {
	asOf := medium().Config().AsOf
	for _, v := range medium().County.Villages() {
		for _, h := range v.Households {
			head := h.Members[0]
			if head.Relation != RelationHead {
				t.Fatalf("household %s: first member is %v, want the head", h.ID, head.Relation)
			}
			parents := []*Person{head}
			for _, p := range h.Members[1:] {
				if p.Relation == RelationSpouse {
					parents = append(parents, p)
				}
			}
			for _, p := range h.Members[1:] {
				checkRelation(t, p, head, parents, asOf)
			}
		}
	}
}

// checkRelation checks that p's age fits its relation to the head.
func checkRelation(t *testing.T, p, head *Person, parents []*Person, asOf time.Time) {
	t.Helper()
	age, headAge := p.Age(asOf), head.Age(asOf)
	switch p.Relation {
	case RelationHead:
		t.Errorf("household %s has two heads", p.HouseholdID)
	case RelationSpouse:
		if d := age - headAge; d < -12 || d > 12 || age < 18 {
			t.Errorf("spouse aged %d of a head aged %d", age, headAge)
		}
	case RelationChild:
		for _, parent := range parents {
			if d := parent.Age(asOf) - age; d < 15 {
				t.Errorf("child aged %d of a parent aged %d", age, parent.Age(asOf))
			}
		}
	case RelationGrandchild:
		if headAge-age < 30 {
			t.Errorf("grandchild aged %d of a head aged %d", age, headAge)
		}
	case RelationParent:
		if age-headAge < 15 {
			t.Errorf("parent aged %d of a head aged %d", age, headAge)
		}
	}
}

func TestEachStopsAtError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := newGenerator(t, Config{People: 300}).Each(func(*fieldsyncv1.Record) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("Each returned %v after %d records, want %v after 10", err, n, stop)
	}
}

func TestEachInVillageMatchesEach(t *testing.T) {
	g := newGenerator(t, Config{Townships: 2, VillagesPerTownship: 2, HouseholdsPerVillage: 20})
	v := g.County.Villages()[3]
	var inVillage, fromEach []string
	err := g.EachInVillage(v, func(r *fieldsyncv1.Record) error {
		inVillage = append(inVillage, prototext.Format(r))
		return nil
	})
	if err != nil {
		t.Fatalf("EachInVillage: %v", err)
	}
	eachRecord(t, g, func(r *fieldsyncv1.Record) {
		if areaOf(r) == v.Code {
			fromEach = append(fromEach, prototext.Format(r))
		}
	})
	if got, want := strings.Join(inVillage, "\n"), strings.Join(fromEach, "\n"); got != want {
		t.Errorf("EachInVillage gave %d records, Each %d for the same village, or in another order", len(inVillage), len(fromEach))
	}
}
