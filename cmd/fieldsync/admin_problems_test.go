package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
)

// problemWorld is a township server holding a village's registry and five
// problems around today, saved by the server:
//
//	crit   village 0, critical, OPEN, deadline 14 days ago, about a person
//	late   village 0, normal,   OPEN, deadline yesterday (a description CSV must quote)
//	rect   village 1, normal,   RECTIFIED by doctor, deadline 30 days ago
//	later  village 1, normal,   OPEN, deadline in 5 days
//	rect2  village 1, normal,   RECTIFIED by doctor, deadline in 10 days
type problemWorld struct {
	srv      *server.Server
	ds       deviceServer
	conn     []string // --server and --token-file
	township string
	asOf     string // today, China time
	doctor   string
	person   *fieldsyncv1.Person
	p        map[string]*fieldsyncv1.Problem
}

func newProblemWorld(t *testing.T) problemWorld {
	t.Helper()
	now := time.Now()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 2, HouseholdsPerVillage: 2, Seed: 5, AsOf: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	dir := t.TempDir()
	w := problemWorld{township: vs[0].Code[:9], doctor: uuid.Must(uuid.NewV7()).String(), p: map[string]*fieldsyncv1.Problem{}}
	var addr string
	w.srv, addr = servertest.Start(t, server.Config{DataDir: dir, Area: w.township})
	w.ds = deviceServer{addr: addr, tokenFile: filepath.Join(dir, server.AdminTokenFile)}
	w.conn = []string{"--server", addr, "--token-file", w.ds.tokenFile}
	today := survey.Today(now)
	w.asOf = survey.FormatDate(today)
	err = g.EachInVillage(vs[0], func(r *fieldsyncv1.Record) error {
		if r.GetHousehold() == nil && r.GetPerson() == nil {
			return nil
		}
		if p := r.GetPerson(); p != nil && w.person == nil {
			w.person = p
		}
		_, err := w.srv.Save(t.Context(), r)
		return err
	})
	if err != nil || w.person == nil {
		t.Fatalf("saving the registry: %v", err)
	}
	for _, s := range []struct {
		name, description string
		village           int
		critical          bool
		deadline          int
		rectified         bool
	}{
		{"crit", "慢病患者无一人一策", 0, true, -14, false},
		{"late", `门诊手册未发放, 村医"一口清"不清`, 0, false, -1, false},
		{"rect", "签约未履约", 1, false, -30, true},
		{"later", "健康档案未更新", 1, false, 5, false},
		{"rect2", "宣传资料不全", 1, false, 10, true},
	} {
		p := &fieldsyncv1.Problem{
			Id: uuid.Must(uuid.NewV7()).String(), AreaCode: vs[s.village].Code, SourceKind: fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT,
			SourceRecordId: uuid.Must(uuid.NewV7()).String(), Item: "member." + s.name, Severity: fieldsyncv1.Severity_SEVERITY_NORMAL,
			Description: s.description, Responsible: "王建国", Deadline: survey.AddDays(today, s.deadline),
			Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, RaisedAt: timestamppb.New(now.Add(-48 * time.Hour)),
		}
		if s.critical {
			p.Severity, p.PersonId = fieldsyncv1.Severity_SEVERITY_CRITICAL, w.person.GetId()
		}
		w.save(t, p)
		if s.rectified {
			p.Status, p.Measure = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, "已整改"
			p.RectifiedAt, p.RectifiedByWorkerId = timestamppb.New(now.Add(-time.Hour)), w.doctor
			w.save(t, p)
		}
		w.p[s.name] = p
	}
	return w
}

func (w problemWorld) save(t *testing.T, p *fieldsyncv1.Problem) {
	t.Helper()
	if _, err := w.srv.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: proto.Clone(p).(*fieldsyncv1.Problem)}}); err != nil {
		t.Fatal(err)
	}
}

// problems runs 'admin problems' with args and the connection flags.
func (w problemWorld) problems(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, errOut, err := cli(t, append(append([]string{"admin", "problems"}, args...), w.conn...)...)
	return out + errOut, err
}

func (w problemWorld) ids(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, w.p[n].GetId())
	}
	return out
}

// The daily overdue list in JSON and CSV, the table and its summary, and the
// filters.
func TestAdminProblemsList(t *testing.T) {
	w := newProblemWorld(t)

	out, err := w.problems(t, "--overdue", "--json", "--as-of", w.asOf)
	var rows []problemJSON
	if err != nil || json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("problems --overdue --json: %v\n%s", err, out)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, w.ids("crit", "late")) {
		t.Fatalf("problems --overdue --json lists %v, want crit, late", got)
	}
	crit, late := w.p["crit"], w.p["late"]
	if r := rows[0]; r.AreaCode != crit.GetAreaCode() || r.Item != "member.crit" || r.Severity != "critical" || r.Status != "open" ||
		r.Deadline == nil || *r.Deadline != dateString(crit.GetDeadline()) || r.DaysOverdue != 14 || !r.Overdue ||
		r.PersonID != w.person.GetId() || r.PersonName != w.person.GetName() || r.Description != crit.GetDescription() ||
		r.Responsible != "王建国" || r.SourceRecordID != crit.GetSourceRecordId() {
		t.Errorf("crit is listed as %+v", r)
	}
	if r := rows[1]; r.Severity != "normal" || r.DaysOverdue != 1 || !r.Overdue || r.PersonName != "" || r.Description != late.GetDescription() {
		t.Errorf("late is listed as %+v", r)
	}
	for _, key := range problemColumns {
		if !strings.Contains(out, `"`+key+`":`) {
			t.Errorf("problems --json has no key %s:\n%s", key, out)
		}
	}

	out, err = w.problems(t, "--overdue", "--csv", "--as-of", w.asOf)
	if err != nil {
		t.Fatalf("problems --overdue --csv: %v\n%s", err, out)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) != 3 {
		t.Fatalf("problems --csv is not a header and 2 rows of CSV (%v):\n%s", err, out)
	}
	if !slices.Equal(recs[0], problemColumns) {
		t.Errorf("CSV header %v, want %v", recs[0], problemColumns)
	}
	for i, r := range rows {
		if !slices.Equal(recs[i+1], r.row()) {
			t.Errorf("CSV row %d = %v, JSON row %v", i+1, recs[i+1], r.row())
		}
	}
	if recs[2][10] != late.GetDescription() || !strings.Contains(out, `"门诊手册未发放, 村医""一口清""不清"`) {
		t.Errorf("the description with a comma and quotes is not quoted as RFC 4180 says:\n%s", out)
	}

	// The table: critical first, then overdue, then by deadline; one line each
	// and the summary.
	out, err = w.problems(t, "--as-of", w.asOf)
	if err != nil {
		t.Fatalf("problems: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	order := []string{"crit", "late", "rect", "later", "rect2"}
	if len(lines) != len(order)+1 {
		t.Fatalf("problems printed %d lines, want %d and the summary:\n%s", len(lines), len(order), out)
	}
	for i, n := range order {
		p, line := w.p[n], lines[i]
		if !strings.HasSuffix(line, p.GetId()) || !strings.Contains(line, dateString(p.GetDeadline())) || !strings.Contains(line, p.GetAreaCode()) ||
			!strings.Contains(line, p.GetItem()) || !strings.Contains(line, p.GetDescription()) || !strings.Contains(line, "responsible 王建国") {
			t.Errorf("line %d is %q; want problem %s", i, line, n)
		}
		if overdue := strings.HasPrefix(line, "OVERDUE"); overdue != (n == "crit" || n == "late") {
			t.Errorf("line %d (%s) is %q: overdue marker %v", i, n, line, overdue)
		}
	}
	if !strings.HasPrefix(lines[0], "OVERDUE   14 days  "+dateString(crit.GetDeadline())) || !strings.Contains(lines[0], "critical  open") ||
		!strings.Contains(lines[0], w.person.GetName()) {
		t.Errorf("crit is printed as %q", lines[0])
	}
	if !strings.Contains(lines[2], "normal    rectified") {
		t.Errorf("rect is printed as %q", lines[2])
	}
	if want := "5 problems, 2 overdue, 1 critical"; lines[len(lines)-1] != want {
		t.Errorf("summary %q, want %q", lines[len(lines)-1], want)
	}

	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--severity", "critical", "--json"}, w.ids("crit")},
		{[]string{"--severity", "normal", "--overdue", "--json"}, w.ids("late")},
		{[]string{"--area", w.p["rect"].GetAreaCode(), "--json"}, w.ids("rect", "later", "rect2")},
		{[]string{"--overdue", "--as-of", survey.FormatDate(survey.AddDays(w.p["later"].GetDeadline(), 1)), "--json"}, w.ids("crit", "late", "later")},
	} {
		out, err := w.problems(t, tt.args...)
		var rows []problemJSON
		if err != nil || json.Unmarshal([]byte(out), &rows) != nil {
			t.Errorf("problems %v: %v\n%s", tt.args, err, out)
			continue
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("problems %v lists %v, want %v", tt.args, got, tt.want)
		}
	}
	if out, err := w.problems(t, "--area", w.township[:6]+"999"); err == nil || !strings.Contains(err.Error(), "outside this server's area") {
		t.Errorf("problems --area outside the server: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"--json", "--csv"}, {"--severity", "urgent"}, {"--as-of", "2026-13-01"}, {"extra"}} {
		if out, err := w.problems(t, args...); err == nil {
			t.Errorf("problems %v succeeded:\n%s", args, out)
		}
	}
	if _, errOut, err := cli(t, "admin", "problems", "--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut, "fieldsync admin problems verify") || !strings.Contains(errOut, "日通报") {
		t.Errorf("admin problems --help: %v\n%s", err, errOut)
	}
}

// The operator verifies a rectified problem and reopens it; the ledger's
// rules refuse, with their message, verifying an open problem, verifying by
// the worker who rectified, and reopening without a reason.
func TestAdminProblemsVerifyAndReopen(t *testing.T) {
	w := newProblemWorld(t)
	staff := uuid.Must(uuid.NewV7()).String()
	rect := w.p["rect"]

	out, err := w.problems(t, "verify", rect.GetId(), "--worker", staff)
	if err != nil || !strings.Contains(out, "problem "+rect.GetId()+" is now VERIFIED (verified by worker "+staff+")") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, err = w.problems(t, "--all", "--json")
	if err != nil || !strings.Contains(out, `"id":"`+rect.GetId()+`","area_code":"`+rect.GetAreaCode()+`","item":"member.rect","severity":"normal","status":"verified"`) {
		t.Errorf("problems --all after the verification: %v\n%s", err, out)
	}
	if out, err := w.problems(t, "--json"); err != nil || strings.Contains(out, rect.GetId()) {
		t.Errorf("problems lists the verified problem: %v\n%s", err, out)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", w.p["late"].GetId(), "--worker", staff}, "an OPEN problem cannot be verified: it must be rectified first"},
		{[]string{"verify", w.p["rect2"].GetId(), "--worker", w.doctor}, "the worker who rectified a problem cannot verify it"},
		{[]string{"reopen", rect.GetId(), "--worker", staff}, "reopening needs --reason"},
		{[]string{"verify", rect.GetId()}, "--worker"},
		{[]string{"verify", uuid.Must(uuid.NewV7()).String(), "--worker", staff}, "NotFound"},
		{[]string{"verify", "P-1", "--worker", staff}, "UUID"},
	} {
		if out, err := w.problems(t, tt.args...); err == nil || !strings.Contains(err.Error()+out, tt.want) {
			t.Errorf("problems %v: %v\n%s\nwant an error saying %q", tt.args, err, out, tt.want)
		}
	}

	out, err = w.problems(t, "reopen", rect.GetId(), "--worker", staff, "--reason", "复查发现仍未整改")
	if err != nil || !strings.Contains(out, "is now OPEN (reopened by worker "+staff+": 复查发现仍未整改)") {
		t.Fatalf("reopen: %v\n%s", err, out)
	}
	out, err = w.problems(t, "--overdue", "--json")
	var rows []problemJSON
	if err != nil || json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("problems --overdue after the reopening: %v\n%s", err, out)
	}
	if len(rows) != 3 || rows[1].ID != rect.GetId() || rows[1].DaysOverdue != 30 || rows[1].Status != "open" {
		t.Errorf("problems --overdue after the reopening:\n%s\nwant rect second, 30 days overdue", out)
	}
}

// A phone of the township lists its problems with the overdue ones marked.
func TestDeviceProblemsOverdue(t *testing.T) {
	w := newProblemWorld(t)
	phone := w.ds.enroll(t, w.township)
	mustCLI(t, "device", "sync", "--replica", phone)
	out := mustCLI(t, "device", "problems", "--replica", phone, "--day", w.asOf)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("device problems printed:\n%s\nwant 5 problems and the summary", out)
	}
	for _, line := range lines[:5] {
		var name string
		for n, p := range w.p {
			if strings.Contains(line, p.GetId()) {
				name = n
			}
		}
		want := map[string]string{"crit": "OVERDUE   14 days  ", "late": "OVERDUE    1 days  "}[name]
		if want == "" {
			want = strings.Repeat(" ", 19)
		}
		if name == "" || !strings.HasPrefix(line, want) {
			t.Errorf("device problems line %q (problem %q), want it to start %q", line, name, want)
		}
	}
	if want := "5 open problems, 1 critical, 2 overdue on " + w.asOf; lines[5] != want {
		t.Errorf("device problems summary %q, want %q", lines[5], want)
	}
	// Ten days on, the problem due in 5 days is overdue too; the rectified
	// ones never are.
	out = mustCLI(t, "device", "problems", "--replica", phone, "--day", survey.FormatDate(survey.AddDays(w.p["rect2"].GetDeadline(), 1)))
	if !strings.Contains(out, "3 overdue") {
		t.Errorf("device problems 11 days on:\n%s", out)
	}
	if _, _, err := cli(t, "device", "problems", "--replica", phone, "--day", "tomorrow"); err == nil {
		t.Error("device problems --day tomorrow succeeded")
	}
}
