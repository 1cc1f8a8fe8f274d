package fieldsync

import (
	"bytes"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
	"github.com/fieldsync/fieldsync/wire"
)

func TestParseKind(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want fieldsyncv1.RecordKind
	}{
		{"household", fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD},
		{"Households", fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD},
		{" PERSON ", fieldsyncv1.RecordKind_RECORD_KIND_PERSON},
		{"people", fieldsyncv1.RecordKind_RECORD_KIND_PERSON},
		{"household_visit", fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT},
		{"household-visits", fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT},
		{"visit", fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT},
		{"clinic_audit", fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT},
		{"audit", fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT},
		{"follow_up", fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP},
		{"followup", fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP},
		{"Follow-Ups", fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP},
		{"problem", fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM},
		{"clinic", fieldsyncv1.RecordKind_RECORD_KIND_CLINIC},
		{"worker", fieldsyncv1.RecordKind_RECORD_KIND_WORKER},
		{"risk_flag", fieldsyncv1.RecordKind_RECORD_KIND_RISK_FLAG},
		{"RECORD_KIND_RISK_FLAG", fieldsyncv1.RecordKind_RECORD_KIND_RISK_FLAG},
	} {
		got, err := ParseKind(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "house", "unspecified", "record_kind_unspecified", "visits_"} {
		_, err := ParseKind(in)
		if err == nil {
			t.Errorf("ParseKind(%q) succeeded, want an error", in)
			continue
		}
		for _, name := range []string{"household", "household_visit", "follow_up", "risk_flag"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("ParseKind(%q) error %q does not list %s", in, err, name)
			}
		}
	}
	// Every kind the envelope knows has a name, and the name parses back.
	for k := range fieldsyncv1.RecordKind_name {
		kind := fieldsyncv1.RecordKind(k)
		if kind == fieldsyncv1.RecordKind_RECORD_KIND_UNSPECIFIED {
			continue
		}
		if got, err := ParseKind(kindName(kind)); err != nil || got != kind {
			t.Errorf("ParseKind(kindName(%v)) = %v, %v", kind, got, err)
		}
	}
}

// villageRecords returns every record countygen makes for the first village
// of a small county, by kind.
func villageRecords(t testing.TB) map[fieldsyncv1.RecordKind][]*fieldsyncv1.Record {
	t.Helper()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 1, HouseholdsPerVillage: 6, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[fieldsyncv1.RecordKind][]*fieldsyncv1.Record)
	err = g.EachInVillage(g.County.Villages()[0], func(r *fieldsyncv1.Record) error {
		k := fieldsyncv1.RecordKind(wire.KindOf(r))
		out[k] = append(out[k], r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func openReplica(t testing.TB, opts ...Option) *Client {
	t.Helper()
	c, err := Open(t.Context(), filepath.Join(t.TempDir(), "replica.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sortedByID returns recs ordered by record id.
func sortedByID(t *testing.T, recs []*fieldsyncv1.Record) []*fieldsyncv1.Record {
	t.Helper()
	out := append([]*fieldsyncv1.Record{}, recs...)
	ids := make(map[*fieldsyncv1.Record][]byte)
	for _, r := range out {
		id, _, err := wire.Identity(r)
		if err != nil {
			t.Fatal(err)
		}
		ids[r] = id[:]
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if bytes.Compare(ids[out[j]], ids[out[i]]) < 0 {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestListByKind(t *testing.T) {
	old := listPage
	listPage = 7 // several pages
	t.Cleanup(func() { listPage = old })

	byKind := villageRecords(t)
	c := openReplica(t)
	total := 0
	// Store in reverse, so insertion order is not id order. The records are
	// written as they are (c.write), without the save path's derivations,
	// which would add raised problems and move generated ones through the
	// ledger: this test is about listing.
	for _, recs := range byKind {
		for i := len(recs) - 1; i >= 0; i-- {
			if err := c.write(t.Context(), recs[i]); err != nil {
				t.Fatal(err)
			}
			total++
		}
	}
	if total <= listPage {
		t.Fatalf("only %d records; want more than one page", total)
	}
	for _, kd := range kindNames {
		kind := kd.kind
		got, err := c.List(t.Context(), kind)
		if err != nil {
			t.Fatalf("List(%v): %v", kind, err)
		}
		want := sortedByID(t, byKind[kind])
		if len(got) != len(want) {
			t.Errorf("List(%v) returned %d records, want %d", kind, len(got), len(want))
			continue
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Errorf("List(%v)[%d] = %v, want %v", kind, i, got[i], want[i])
			}
		}
	}
	for _, kind := range []fieldsyncv1.RecordKind{fieldsyncv1.RecordKind_RECORD_KIND_UNSPECIFIED, 99} {
		if _, err := c.List(t.Context(), kind); err == nil || !strings.Contains(err.Error(), "household_visit") {
			t.Errorf("List(%d) = %v, want an error listing the kinds", kind, err)
		}
	}

	// A deleted record is not listed.
	h := sortedByID(t, byKind[fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD])[0]
	id, _, _ := wire.Identity(h)
	var cid syncengine.ChangeID
	rand.Read(cid[:])
	if _, err := syncenginetest.WriteLocal(t.Context(), c.store, c.clock, c.now().UnixMilli(), syncengine.Edit{ID: cid, Record: id, Delete: true}); err != nil {
		t.Fatal(err)
	}
	hs, err := c.Households(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := len(byKind[fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD]) - 1; len(hs) != want {
		t.Errorf("Households() after a delete = %d, want %d", len(hs), want)
	}
	for _, got := range hs {
		if got.GetId() == id.String() {
			t.Errorf("Households() lists the deleted household %s", id)
		}
	}
}

func TestTypedReadsAndWrites(t *testing.T) {
	byKind := villageRecords(t)
	c := openReplica(t)
	ctx := t.Context()
	first := func(k fieldsyncv1.RecordKind) *fieldsyncv1.Record {
		if len(byKind[k]) == 0 {
			t.Fatalf("county has no %v", k)
		}
		return byKind[k][0]
	}
	h := first(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD).GetHousehold()
	p := first(fieldsyncv1.RecordKind_RECORD_KIND_PERSON).GetPerson()
	v := first(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT).GetHouseholdVisit()
	a := first(fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT).GetClinicAudit()
	f := first(fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP).GetFollowUp()
	// A problem entered by hand (not raised by a survey): a UUIDv7 id, open.
	pr := proto.Clone(first(fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM).GetProblem()).(*fieldsyncv1.Problem)
	pr.Id, pr.Item = uuid.Must(uuid.NewV7()).String(), "manual.note"
	pr.Status, pr.RectifiedAt, pr.RectifiedByWorkerId, pr.VerifiedAt, pr.VerifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, nil, "", nil, ""

	for name, err := range map[string]error{
		"SaveHousehold":      c.SaveHousehold(ctx, h),
		"SavePerson":         c.SavePerson(ctx, p),
		"SaveHouseholdVisit": c.SaveHouseholdVisit(ctx, v),
		"SaveClinicAudit":    c.SaveClinicAudit(ctx, a),
		"SaveFollowUp":       c.SaveFollowUp(ctx, f),
		"SaveProblem":        c.SaveProblem(ctx, pr),
	} {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	check := func(name string, got, want proto.Message, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !proto.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	gh, err := c.Household(ctx, h.GetId())
	check("Household", gh, h, err)
	gp, err := c.Person(ctx, p.GetId())
	check("Person", gp, p, err)
	gv, err := c.HouseholdVisit(ctx, v.GetId())
	check("HouseholdVisit", gv, v, err)
	ga, err := c.ClinicAudit(ctx, a.GetId())
	check("ClinicAudit", ga, a, err)
	gf, err := c.FollowUp(ctx, f.GetId())
	check("FollowUp", gf, f, err)
	gpr, err := c.Problem(ctx, pr.GetId())
	check("Problem", gpr, pr, err)

	lists := []struct {
		name string
		list func() (int, proto.Message, error)
		want proto.Message
	}{
		{"Households", func() (int, proto.Message, error) { l, err := c.Households(ctx); return len(l), at(l), err }, h},
		{"Persons", func() (int, proto.Message, error) { l, err := c.Persons(ctx); return len(l), at(l), err }, p},
		{"HouseholdVisits", func() (int, proto.Message, error) { l, err := c.HouseholdVisits(ctx); return len(l), at(l), err }, v},
		{"ClinicAudits", func() (int, proto.Message, error) { l, err := c.ClinicAudits(ctx); return len(l), at(l), err }, a},
		{"FollowUps", func() (int, proto.Message, error) { l, err := c.FollowUps(ctx); return len(l), at(l), err }, f},
		{"Problems", func() (int, proto.Message, error) { // and those the visit and audit raised
			l, err := c.Problems(ctx)
			for _, x := range l {
				if x.GetId() == pr.GetId() {
					return 1, x, err
				}
			}
			return 0, nil, err
		}, pr},
	}
	for _, l := range lists {
		n, got, err := l.list()
		if err != nil || n != 1 || !proto.Equal(got, l.want) {
			t.Errorf("%s() = %d records (%v), %v; want [%v]", l.name, n, got, err, l.want)
		}
	}

	// A record of another kind is not found, and the error says what it is.
	_, err = c.Household(ctx, v.GetId())
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "household_visit") {
		t.Errorf("Household(visit id) = %v, want ErrNotFound naming household_visit", err)
	}
	if _, err := c.Person(ctx, "01890000-0000-7000-8000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Person(unknown id) = %v, want ErrNotFound", err)
	}
	if _, err := c.Person(ctx, "not-an-id"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Person(malformed id) = %v, want an error about the id", err)
	}
	if err := c.SaveHousehold(ctx, nil); err == nil || !strings.Contains(err.Error(), "nil") {
		t.Errorf("SaveHousehold(nil) = %v, want an error", err)
	}
	bad := proto.Clone(h).(*fieldsyncv1.Household)
	bad.HeadName = ""
	var verr *ValidationError
	if err := c.SaveHousehold(ctx, bad); !errors.As(err, &verr) {
		t.Errorf("SaveHousehold(invalid) = %v, want a *ValidationError", err)
	}
}

func at[T proto.Message](l []T) proto.Message {
	if len(l) == 0 {
		return nil
	}
	return l[0]
}
