package sqlitestore_test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save/savetest"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
)

const (
	hypertension = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION
	diabetes     = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES
	mental       = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_SEVERE_MENTAL_DISORDER

	dueVillage   = "532523101201"
	otherVillage = "532523101202"
)

// cst is a time of day in China Standard Time.
func cst(date string, hour, minute int) time.Time {
	d, err := time.ParseInLocation(time.DateOnly, date, survey.ChinaTime)
	if err != nil {
		panic(err)
	}
	return d.Add(time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)
}

// date is a calendar date given as YYYY-MM-DD.
func date(s string) *fieldsyncv1.Date { return survey.Today(cst(s, 12, 0)) }

func newID(t testing.TB) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// saveAt writes rec as a local change stamped at wall time at, with a clock of
// its own so that the stamp is at and nothing later. With a stored record it
// writes only the fields that differ (wire.EditOf), as the device SDK does.
func saveAt(t testing.TB, s *sqlitestore.Store, rec *fieldsyncv1.Record, at time.Time) {
	t.Helper()
	if changed, err := savetest.Raw(t.Context(), s, syncengine.NewClock(s.Replica(), 0), at.UnixMilli(), rec); err != nil || !changed {
		t.Fatalf("save: changed %v, %v", changed, err)
	}
}

// followUp is a follow-up of a test patient; next is its next_due_on.
type followUp struct {
	label          string
	disease        fieldsyncv1.ChronicDisease
	at             time.Time
	classification fieldsyncv1.Classification
	urgent         bool
	next           string
}

// dueRow is what a test expects of one DuePatient; last is the label of the
// last follow-up, "" for none.
type dueRow struct {
	disease fieldsyncv1.ChronicDisease
	dueOn   string
	days    int
	reason  sqlitestore.DueReason
	last    string
}

func TestDuePatients(t *testing.T) {
	day := cst("2026-11-10", 9, 0)
	controlled := fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED
	uncontrolled := fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
	cases := []struct {
		name       string // the person's name, and the subtest's
		area       string
		residency  fieldsyncv1.Residency
		conditions []*fieldsyncv1.Condition
		recordedAt time.Time // when the person was written; default 2026-06-01
		followUps  []followUp
		want       []dueRow // the person's rows, nil when not listed
	}{{
		name:       "甲 never followed up, diagnosed",
		conditions: []*fieldsyncv1.Condition{{Disease: hypertension, DiagnosedOn: date("2026-10-01")}},
		want:       []dueRow{{hypertension, "2026-10-01", 40, sqlitestore.DueNeverFollowedUp, ""}},
	}, {
		// Recorded at 01:30 China time on 3 November, still 2 November in UTC.
		name:       "乙 never followed up, no diagnosis date",
		conditions: []*fieldsyncv1.Condition{{Disease: diabetes}},
		recordedAt: cst("2026-11-03", 1, 30),
		want:       []dueRow{{diabetes, "2026-11-03", 7, sqlitestore.DueNeverFollowedUp, ""}},
	}, {
		name:       "丙 due today",
		conditions: []*fieldsyncv1.Condition{{Disease: hypertension, DiagnosedOn: date("2020-05-01")}},
		followUps:  []followUp{{"丙1", hypertension, cst("2026-08-10", 10, 0), controlled, false, "2026-11-10"}},
		want:       []dueRow{{hypertension, "2026-11-10", 0, sqlitestore.DueRoutine, "丙1"}},
	}, {
		name:       "丁 due tomorrow",
		conditions: []*fieldsyncv1.Condition{{Disease: hypertension, DiagnosedOn: date("2020-05-01")}},
		followUps:  []followUp{{"丁1", hypertension, cst("2026-08-11", 10, 0), controlled, false, "2026-11-11"}},
	}, {
		name:       "戊 overdue, uncontrolled",
		conditions: []*fieldsyncv1.Condition{{Disease: diabetes, DiagnosedOn: date("2019-03-01")}},
		followUps:  []followUp{{"戊1", diabetes, cst("2026-10-13", 15, 0), uncontrolled, false, "2026-10-27"}},
		want:       []dueRow{{diabetes, "2026-10-27", 14, sqlitestore.DueUncontrolled, "戊1"}},
	}, {
		name:       "己 urgent referral",
		conditions: []*fieldsyncv1.Condition{{Disease: hypertension, DiagnosedOn: date("2018-01-01")}},
		followUps:  []followUp{{"己1", hypertension, cst("2026-10-25", 11, 0), uncontrolled, true, "2026-11-08"}},
		want:       []dueRow{{hypertension, "2026-11-08", 2, sqlitestore.DueUrgentReferral, "己1"}},
	}, {
		name: "庚 both diseases",
		conditions: []*fieldsyncv1.Condition{
			{Disease: hypertension, DiagnosedOn: date("2017-01-01")},
			{Disease: diabetes, DiagnosedOn: date("2026-09-01")},
		},
		followUps: []followUp{{"庚1", hypertension, cst("2026-08-01", 9, 0), controlled, false, "2026-11-01"}},
		want: []dueRow{
			{hypertension, "2026-11-01", 9, sqlitestore.DueRoutine, "庚1"},
			{diabetes, "2026-09-01", 70, sqlitestore.DueNeverFollowedUp, ""},
		},
	}, {
		name:       "辛 deceased",
		residency:  fieldsyncv1.Residency_RESIDENCY_DECEASED,
		conditions: []*fieldsyncv1.Condition{{Disease: hypertension, DiagnosedOn: date("2025-01-01")}},
	}, {
		name:       "壬 another village",
		area:       otherVillage,
		conditions: []*fieldsyncv1.Condition{{Disease: hypertension, DiagnosedOn: date("2025-01-01")}},
	}, {
		name:       "癸 overdue follow-up superseded",
		conditions: []*fieldsyncv1.Condition{{Disease: hypertension, DiagnosedOn: date("2025-01-01")}},
		followUps: []followUp{
			{"癸2", hypertension, cst("2026-10-20", 16, 0), controlled, false, "2027-01-20"},
			{"癸1", hypertension, cst("2026-07-01", 16, 0), uncontrolled, true, "2026-07-15"},
		},
	}, {
		name:       "子 urgent follow-up superseded, due",
		conditions: []*fieldsyncv1.Condition{{Disease: diabetes, DiagnosedOn: date("2025-01-01")}},
		followUps: []followUp{
			{"子1", diabetes, cst("2026-08-01", 10, 0), uncontrolled, true, "2026-08-15"},
			{"子2", diabetes, cst("2026-08-05", 10, 0), controlled, false, "2026-11-05"},
		},
		want: []dueRow{{diabetes, "2026-11-05", 5, sqlitestore.DueRoutine, "子2"}},
	}, {
		name:       "丑 severe mental disorder only",
		conditions: []*fieldsyncv1.Condition{{Disease: mental, DiagnosedOn: date("2025-01-01")}},
	}, {
		name:       "寅 diagnosed tomorrow",
		conditions: []*fieldsyncv1.Condition{{Disease: diabetes, DiagnosedOn: date("2026-11-11")}},
	}}

	s := openTemp(t)
	household := &fieldsyncv1.Household{Id: newID(t), AreaCode: dueVillage, HeadName: "张建国", Address: "三组 12 号"}
	saveAt(t, s, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: household}}, cst("2026-06-01", 8, 0))
	personIDs := map[string]string{}         // name → id
	followUpIDs := map[string]string{"": ""} // label → id
	for _, tc := range cases {
		p := &fieldsyncv1.Person{
			Id: newID(t), AreaCode: cmp.Or(tc.area, dueVillage), HouseholdId: household.GetId(), Name: tc.name,
			Sex: fieldsyncv1.Sex_SEX_FEMALE, Residency: fieldsyncv1.Residency_RESIDENCY_AT_HOME, Conditions: tc.conditions,
		}
		if tc.residency != 0 {
			p.Residency = tc.residency
		}
		personIDs[tc.name] = p.GetId()
		recorded := tc.recordedAt
		if recorded.IsZero() {
			recorded = cst("2026-06-01", 9, 0)
		}
		rec := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: p}}
		saveAt(t, s, rec, recorded)
		// A later edit of another field leaves the day the conditions were
		// recorded alone.
		p = proto.Clone(p).(*fieldsyncv1.Person)
		p.Disabled = proto.Bool(false)
		saveAt(t, s, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: p}}, cst("2026-11-09", 18, 0))
		for _, fu := range tc.followUps {
			f := &fieldsyncv1.FollowUp{
				Id: newID(t), AreaCode: p.GetAreaCode(), PersonId: p.GetId(), Disease: fu.disease,
				FollowedUpAt: timestamppb.New(fu.at), Classification: fu.classification, NextDueOn: date(fu.next),
			}
			if fu.urgent {
				f.Referral = &fieldsyncv1.Referral{Urgent: true, ToFacility: "县人民医院"}
			}
			followUpIDs[fu.label] = f.GetId()
			saveAt(t, s, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: f}}, fu.at)
		}
	}

	got, err := s.DuePatients(t.Context(), []string{dueVillage}, day)
	if err != nil {
		t.Fatal(err)
	}
	byPerson := map[string][]sqlitestore.DuePatient{}
	for _, d := range got {
		byPerson[d.PersonID] = append(byPerson[d.PersonID], d)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows := byPerson[personIDs[tc.name]]
			if len(rows) != len(tc.want) {
				t.Fatalf("listed %d rows %v, want %d", len(rows), rows, len(tc.want))
			}
			for _, w := range tc.want {
				i := slices.IndexFunc(rows, func(d sqlitestore.DuePatient) bool { return d.Disease == w.disease })
				if i < 0 {
					t.Fatalf("no row for %v in %v", w.disease, rows)
				}
				d := rows[i]
				if d.Name != tc.name || d.AreaCode != dueVillage || d.HouseholdID != household.GetId() || d.HeadName != "张建国" || d.Address != "三组 12 号" {
					t.Errorf("row names %q of %s, household %s of %q at %q", d.Name, d.AreaCode, d.HouseholdID, d.HeadName, d.Address)
				}
				if on := d.DueOn.In(survey.ChinaTime).Format(time.DateOnly); on != w.dueOn || d.DueOn.Hour() != 0 {
					t.Errorf("%v due on %v, want %s", w.disease, d.DueOn, w.dueOn)
				}
				if d.DaysOverdue != w.days || d.Overdue() != (w.days > 0) {
					t.Errorf("%v overdue by %d days (Overdue %v), want %d", w.disease, d.DaysOverdue, d.Overdue(), w.days)
				}
				if d.Reason != w.reason {
					t.Errorf("%v due for %v, want %v", w.disease, d.Reason, w.reason)
				}
				if d.LastFollowUpID != followUpIDs[w.last] {
					t.Errorf("%v last follow-up %q, want %s %q", w.disease, d.LastFollowUpID, w.last, followUpIDs[w.last])
				}
				if wantAt := followUpAt(tc.followUps, w.last); !d.LastFollowedUpAt.Equal(wantAt) {
					t.Errorf("%v last followed up at %v, want %v", w.disease, d.LastFollowedUpAt, wantAt)
				}
			}
		})
	}

	// Urgent referrals first, then most days overdue, then due day and name.
	var order []string
	for _, d := range got {
		order = append(order, fmt.Sprintf("%s/%v", strings.Fields(d.Name)[0], d.Reason))
	}
	want := []string{
		"己/urgent_referral", "庚/never_followed_up", "甲/never_followed_up", "戊/uncontrolled",
		"庚/routine", "乙/never_followed_up", "子/routine", "丙/routine",
	}
	if !slices.Equal(order, want) {
		t.Errorf("order\n%v\nwant\n%v", order, want)
	}

	// Prefixes select villages; none selects nothing.
	if other, err := s.DuePatients(t.Context(), []string{otherVillage}, day); err != nil || len(other) != 1 || other[0].Name != "壬 another village" {
		t.Errorf("DuePatients in the other village = %v, %v; want 壬", other, err)
	}
	if all, err := s.DuePatients(t.Context(), []string{dueVillage[:9]}, day); err != nil || len(all) != len(got)+1 {
		t.Errorf("DuePatients in the township = %d rows, %v; want %d", len(all), err, len(got)+1)
	}
	if none, err := s.DuePatients(t.Context(), nil, day); err != nil || len(none) != 0 {
		t.Errorf("DuePatients without prefixes = %v, %v; want none", none, err)
	}
}

// followUpAt is when the follow-up labelled label took place; zero for "".
func followUpAt(fus []followUp, label string) time.Time {
	for _, f := range fus {
		if f.label == label {
			return f.at
		}
	}
	return time.Time{}
}

func TestDueReasonString(t *testing.T) {
	for r, want := range map[sqlitestore.DueReason]string{
		sqlitestore.DueUrgentReferral:  "urgent_referral",
		sqlitestore.DueUncontrolled:    "uncontrolled",
		sqlitestore.DueNeverFollowedUp: "never_followed_up",
		sqlitestore.DueRoutine:         "routine",
		0:                              "due_reason(0)",
	} {
		if got := r.String(); got != want {
			t.Errorf("DueReason(%d).String() = %q, want %q", r, got, want)
		}
	}
}

// TestStandardManagement counts the patients with at least 4 face-to-face
// follow-ups in the 12 months before the day: 3 are not enough, phone
// follow-ups and older ones do not count, and another disease's do not either.
func TestStandardManagement(t *testing.T) {
	s := openTemp(t)
	at := cst("2026-11-10", 9, 0)
	household := &fieldsyncv1.Household{Id: newID(t), AreaCode: dueVillage, HeadName: "张建国"}
	saveAt(t, s, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: household}}, cst("2026-01-01", 8, 0))
	home, phone := fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME, fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE
	type fu struct {
		disease fieldsyncv1.ChronicDisease
		method  fieldsyncv1.FollowUpMethod
		at      string
	}
	quarterly := func(d fieldsyncv1.ChronicDisease, m fieldsyncv1.FollowUpMethod, n int) []fu {
		var out []fu
		for i := range n {
			out = append(out, fu{d, m, cst("2026-10-01", 9, 0).AddDate(0, -3*i, 0).Format(time.DateOnly)})
		}
		return out
	}
	for _, p := range []struct {
		name       string
		conditions []fieldsyncv1.ChronicDisease
		followUps  []fu
	}{
		{"四次", []fieldsyncv1.ChronicDisease{hypertension}, quarterly(hypertension, home, 4)},
		{"三次", []fieldsyncv1.ChronicDisease{hypertension}, quarterly(hypertension, home, 3)},
		{"电话", []fieldsyncv1.ChronicDisease{hypertension}, append(quarterly(hypertension, home, 3), fu{hypertension, phone, "2026-11-01"})},
		{"过期", []fieldsyncv1.ChronicDisease{hypertension}, append(quarterly(hypertension, home, 3), fu{hypertension, home, "2025-11-09"})},
		{"两病", []fieldsyncv1.ChronicDisease{hypertension, diabetes}, quarterly(diabetes, home, 4)},
		{"未随访", []fieldsyncv1.ChronicDisease{diabetes}, nil},
	} {
		person := &fieldsyncv1.Person{Id: newID(t), AreaCode: dueVillage, HouseholdId: household.GetId(), Name: p.name,
			Sex: fieldsyncv1.Sex_SEX_MALE, Residency: fieldsyncv1.Residency_RESIDENCY_AT_HOME}
		for _, d := range p.conditions {
			person.Conditions = append(person.Conditions, &fieldsyncv1.Condition{Disease: d})
		}
		saveAt(t, s, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: person}}, cst("2026-01-01", 9, 0))
		for _, f := range p.followUps {
			at := cst(f.at, 10, 0)
			saveAt(t, s, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: &fieldsyncv1.FollowUp{
				Id: newID(t), AreaCode: dueVillage, PersonId: person.GetId(), Disease: f.disease, Method: f.method,
				FollowedUpAt: timestamppb.New(at), NextDueOn: date("2027-01-01"),
			}}}, at)
		}
	}
	got, err := s.StandardManagement(t.Context(), []string{dueVillage}, at)
	if err != nil {
		t.Fatal(err)
	}
	want := []sqlitestore.Managed{{Disease: hypertension, Patients: 5, Managed: 1}, {Disease: diabetes, Patients: 2, Managed: 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("StandardManagement = %v, want %v", got, want)
	}
	if got, err := s.StandardManagement(t.Context(), []string{otherVillage}, at); err != nil || got[0].Patients != 0 || got[1].Patients != 0 {
		t.Errorf("another village: %v, %v; want no patients", got, err)
	}
}
