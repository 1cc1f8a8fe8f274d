package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
)

// TestDeviceDailyQueries records a whole village, and a hypertension patient
// never followed up, and asks the day's questions; the answers match the
// SDK's.
func TestDeviceDailyQueries(t *testing.T) {
	srv := startDeviceServer(t)
	v := newVillage(t)
	phone := srv.enroll(t, v.code)
	newPatient := neverFollowedUp(t, v)
	v.records[kindPerson] = append(v.records[kindPerson], newPatient)
	for _, k := range []fieldsyncv1.RecordKind{kindHousehold, kindPerson, kindVisit, kindFollowUp} {
		if len(v.records[k]) > 0 {
			mustCLI(t, "device", "put", "--replica", phone, "--kind", kindName(k), "--json", writeRecords(t, v.records[k]...))
		}
	}
	// The generated ledger, moved through its workflow as a phone may: raised,
	// then rectified (verifying is the township's).
	for step := range 2 {
		var recs []*fieldsyncv1.Record
		for _, r := range v.records[kindProblem] {
			if steps := countygen.LedgerSteps(r.GetProblem()); step < len(steps) {
				recs = append(recs, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: steps[step]}})
			}
		}
		if len(recs) > 0 {
			mustCLI(t, "device", "put", "--replica", phone, "--kind", "problem", "--json", writeRecords(t, recs...))
		}
	}
	// Two months on, the patients followed up in the last weeks are due.
	day := v.asOf.In(survey.ChinaTime).AddDate(0, 2, 0).Format(time.DateOnly)
	dueJSONOut := mustCLI(t, "device", "due", "--replica", phone, "--day", day, "--json")
	unvisitedJSON := mustCLI(t, "device", "unvisited", "--replica", phone, "--campaign", "no such campaign", "--json")
	problemsJSON := mustCLI(t, "device", "problems", "--replica", phone, "--json")
	dueText := mustCLI(t, "device", "due", "--replica", phone, "--day", day)
	problemsText := mustCLI(t, "device", "problems", "--replica", phone)

	c, err := fieldsync.Open(t.Context(), phone)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dayT, _ := time.ParseInLocation(time.DateOnly, day, survey.ChinaTime)
	due, err := c.DuePatients(t.Context(), dayT)
	if err != nil {
		t.Fatal(err)
	}
	open, err := c.OpenProblems(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	followedUp := slices.ContainsFunc(due, func(d fieldsync.DuePatient) bool { return d.LastFollowUpID != "" })
	if !followedUp || len(open) == 0 {
		t.Fatalf("the village has %d patients due by %s (followed up before: %v) and %d open problems; the test needs some of each",
			len(due), day, followedUp, len(open))
	}

	// --json: the SDK's rows, in its order, with snake_case keys.
	var rows []dueJSON
	if err := json.Unmarshal([]byte(dueJSONOut), &rows); err != nil {
		t.Fatalf("due --json: %v\n%s", err, dueJSONOut)
	}
	if len(rows) != len(due) {
		t.Fatalf("due --json lists %d patients, the SDK %d", len(rows), len(due))
	}
	for i, d := range due {
		if r := rows[i]; r.PersonID != d.PersonID || r.Disease != d.Disease.String() || r.Name != d.Name || r.DaysOverdue != d.DaysOverdue {
			t.Errorf("due --json row %d is %+v, the SDK's %+v", i, r, d)
		}
	}
	for _, key := range []string{"person_id", "name", "area_code", "household_id", "disease", "due_on", "days_overdue",
		"reason", "urgent_referral", "last_follow_up_id", "last_followed_up_on"} {
		if !strings.Contains(dueJSONOut, `"`+key+`":`) {
			t.Errorf("due --json has no key %s:\n%s", key, dueJSONOut)
		}
	}
	p := newPatient.GetPerson()
	diagnosed := p.GetConditions()[0].GetDiagnosedOn()
	i := slices.IndexFunc(rows, func(r dueJSON) bool { return r.PersonID == p.GetId() })
	if i < 0 {
		t.Fatalf("the patient never followed up is not listed by due --json:\n%s", dueJSONOut)
	}
	wantDays := int(dayT.Sub(mustDate(t, diagnosed)).Hours() / 24)
	if r := rows[i]; r.Name != p.GetName() || r.AreaCode != v.code || r.HouseholdID != p.GetHouseholdId() ||
		r.Disease != "CHRONIC_DISEASE_HYPERTENSION" || r.DueOn != dateString(diagnosed) || r.DaysOverdue != wantDays ||
		r.Reason != "never_followed_up" || r.UrgentReferral || r.LastFollowUpID != "" || r.LastFollowedUpOn != nil {
		t.Errorf("the patient never followed up is listed as %+v; want due on %s, %d days overdue", r, dateString(diagnosed), wantDays)
	}

	// Text: one line per row, with names and no ids, then the summary.
	lines := strings.Split(strings.TrimSuffix(dueText, "\n"), "\n")
	managed, err := c.StandardManagement(t.Context(), dayT)
	if err != nil {
		t.Fatal(err)
	}
	wantManaged := "standard management (规范管理, ≥ 4 face-to-face follow-ups in 12 months): " +
		fmt.Sprintf("hypertension %d of %d, type2 diabetes %d of %d", managed[0].Managed, managed[0].Patients, managed[1].Managed, managed[1].Patients)
	if got := lines[len(lines)-1]; got != wantManaged || managed[0].Patients == 0 || managed[0].Managed == 0 {
		t.Errorf("due's last line is %q, want %q with some patients managed", got, wantManaged)
	}
	lines = lines[:len(lines)-1]
	if len(lines) != len(due)+1 {
		t.Fatalf("due printed %d lines for %d patients:\n%s", len(lines), len(due), dueText)
	}
	for i, d := range due {
		if !strings.Contains(lines[i], d.Name) || !strings.Contains(lines[i], d.DueOn.Format(time.DateOnly)) {
			t.Errorf("due line %d is %q; want %s due on %v", i, lines[i], d.Name, d.DueOn)
		}
	}
	if uuidPattern.MatchString(dueText) {
		t.Errorf("due printed record ids:\n%s", dueText)
	}
	if line := lines[i]; !strings.HasPrefix(line, "OVERDUE "+dateString(diagnosed)) || !strings.Contains(line, v.code) ||
		!strings.Contains(line, p.GetName()+", hypertension, never followed up, last -") {
		t.Errorf("the patient never followed up is printed as %q", line)
	}
	patients, overdue, urgent := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, d := range due {
		patients[d.PersonID] = true
		if d.DaysOverdue > 0 {
			overdue[d.PersonID] = true
		}
		if d.Reason == fieldsync.DueUrgentReferral {
			urgent[d.PersonID] = true
		}
	}
	want := fmt.Sprintf("%s due by %s, %d overdue, %s", plural(len(patients), "patient"), day, len(overdue), plural(len(urgent), "urgent referral"))
	if lines[len(lines)-1] != want {
		t.Errorf("due summary is %q, want %q", lines[len(lines)-1], want)
	}

	if got := parseBodies(t, kindHousehold, unvisitedJSON); len(got) != len(v.records[kindHousehold]) {
		t.Errorf("unvisited in an unknown campaign lists %d households, want all %d", len(got), len(v.records[kindHousehold]))
	}
	if got := parseBodies(t, kindProblem, problemsJSON); !slices.Equal(ids(t, got), ids(t, mustWrap(t, kindProblem, open))) {
		t.Errorf("problems --json lists %d, the SDK %d", len(got), len(open))
	}
	if want := plural(len(open), "open problem"); !strings.Contains(problemsText, want) {
		t.Errorf("problems printed:\n%s\nwant %q", problemsText, want)
	}
	if out := mustCLI(t, "device", "unvisited", "--replica", phone, "--campaign", v.campaign); !strings.Contains(out, "0 households not yet visited") {
		t.Errorf("unvisited in the generated campaign printed:\n%s", out)
	}
}

const kindPerson = fieldsyncv1.RecordKind_RECORD_KIND_PERSON

var uuidPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// neverFollowedUp returns a new living person of the village's first
// household, with hypertension diagnosed 10 days before the village's day and
// no follow-up.
func neverFollowedUp(t *testing.T, v village) *fieldsyncv1.Record {
	t.Helper()
	var p *fieldsyncv1.Person
	for _, r := range v.records[kindPerson] {
		if p = r.GetPerson(); p != nil {
			break
		}
	}
	if p == nil {
		t.Fatal("the generated village has no persons")
	}
	p = proto.Clone(p).(*fieldsyncv1.Person)
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	p.Id, p.Name, p.Residency = id.String(), "新患者", fieldsyncv1.Residency_RESIDENCY_AT_HOME
	p.Conditions = []*fieldsyncv1.Condition{{
		Disease:     fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION,
		DiagnosedOn: survey.Today(v.asOf.AddDate(0, 0, -10)),
	}}
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: p}}
}

func mustDate(t *testing.T, d *fieldsyncv1.Date) time.Time {
	t.Helper()
	at, err := survey.DateTime(d)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func mustWrap[T proto.Message](t *testing.T, kind fieldsyncv1.RecordKind, bodies []T) []*fieldsyncv1.Record {
	t.Helper()
	recs, err := wrapAll(kind, bodies)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
