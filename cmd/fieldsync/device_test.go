package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// cli runs the fieldsync command in process and returns what it printed on
// standard output and standard error.
func cli(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustCLI is cli failing the test on an error.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := cli(t, args...)
	if err != nil {
		t.Fatalf("fieldsync %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// deviceServer is a real server on 127.0.0.1 and the admin flags to reach it.
type deviceServer struct {
	addr      string
	tokenFile string
}

func startDeviceServer(t *testing.T) deviceServer {
	t.Helper()
	addr, dir := startServer(t)
	return deviceServer{addr: addr, tokenFile: filepath.Join(dir, server.AdminTokenFile)}
}

var codeLine = regexp.MustCompile(`enrolment code: (\S+)`)

// code issues an enrolment code for area with 'fieldsync admin device add'.
func (s deviceServer) code(t *testing.T, area string) string {
	t.Helper()
	out := mustCLI(t, "admin", "device", "add", "--server", s.addr, "--token-file", s.tokenFile, "--area", area, "--name", "phone")
	m := codeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("admin device add printed no code:\n%s", out)
	}
	return m[1]
}

// enroll creates a replica in a new directory and enrols it for area with
// 'fieldsync device enroll'; it returns the replica's path.
func (s deviceServer) enroll(t *testing.T, area string) string {
	t.Helper()
	replica := filepath.Join(t.TempDir(), "phone", "replica.db")
	out := mustCLI(t, "device", "enroll", "--replica", replica, "--server", s.addr, "--code", s.code(t, area))
	if !strings.Contains(out, "for areas "+area) {
		t.Fatalf("enroll printed:\n%s\nwant the area %s", out, area)
	}
	return replica
}

// village is the records of one generated village, by kind, and the code of
// a second village of the county.
type village struct {
	code, other string
	campaign    string
	asOf        time.Time
	records     map[fieldsyncv1.RecordKind][]*fieldsyncv1.Record
	otherHouse  *fieldsyncv1.Record // a household of the other village
}

func newVillage(t testing.TB) village {
	t.Helper()
	asOf := countygen.DefaultAsOf()
	if now := time.Now(); asOf.After(now) {
		asOf = now.Add(-time.Hour)
	}
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 2, HouseholdsPerVillage: 5, Seed: 11, AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	v := village{code: vs[0].Code, other: vs[1].Code, campaign: g.Config().Campaign, asOf: asOf, records: map[fieldsyncv1.RecordKind][]*fieldsyncv1.Record{}}
	err = g.EachInVillage(vs[0], func(r *fieldsyncv1.Record) error {
		if errs := survey.Validate(r, time.Now()); errs != nil {
			return fmt.Errorf("generated record is invalid: %v", errs)
		}
		k := recordKind(r)
		v.records[k] = append(v.records[k], r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = g.EachInVillage(vs[1], func(r *fieldsyncv1.Record) error {
		if r.GetHousehold() != nil && v.otherHouse == nil {
			v.otherHouse = r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []fieldsyncv1.RecordKind{fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT} {
		if len(v.records[k]) == 0 {
			t.Fatalf("the generated village has no %s records", kindName(k))
		}
	}
	return v
}

// writeRecords writes the bodies of recs as a JSON array to a new file and
// returns its path. It uses protojson's default (lowerCamelCase) names, which
// put must read as well as the .proto names it prints.
func writeRecords(t testing.TB, recs ...*fieldsyncv1.Record) string {
	t.Helper()
	var parts []string
	for _, r := range recs {
		b, err := protojson.Marshal(wire.Body(r))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
	return writeFile(t, "["+strings.Join(parts, ",\n")+"]")
}

func writeFile(t testing.TB, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "records-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func ids(t testing.TB, recs []*fieldsyncv1.Record) []string {
	t.Helper()
	out := make([]string, len(recs))
	for i, r := range recs {
		id, _, err := wire.Identity(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = id.String()
	}
	slices.Sort(out)
	return out
}

// readStatus runs 'device status --json'.
func readStatus(t *testing.T, replica string) statusJSON {
	t.Helper()
	var st statusJSON
	out := mustCLI(t, "device", "status", "--replica", replica, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// parseBodies reads a JSON array of record bodies of kind, as list --json
// prints them.
func parseBodies(t *testing.T, kind fieldsyncv1.RecordKind, out string) []*fieldsyncv1.Record {
	t.Helper()
	var raws []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raws); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	var recs []*fieldsyncv1.Record
	for _, raw := range raws {
		body, err := wire.NewBody(wireKind(kind))
		if err != nil {
			t.Fatal(err)
		}
		if err := protojson.Unmarshal(raw, body); err != nil {
			t.Fatalf("element %s: %v", raw, err)
		}
		rec, err := wire.Wrap(wireKind(kind), body)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

const (
	kindHousehold = fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD
	kindVisit     = fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT
	kindFollowUp  = fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP
	kindProblem   = fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM
)

// TestDeviceRecordsReachASecondDevice is a doctor's day through the device
// commands: enrol, record households and visits, sync; a second phone of the
// village syncs and lists, gets and queries them.
func TestDeviceRecordsReachASecondDevice(t *testing.T) {
	srv := startDeviceServer(t)
	v := newVillage(t)
	households, visits := v.records[kindHousehold], v.records[kindVisit]
	phone1 := srv.enroll(t, v.code)

	out := mustCLI(t, "device", "put", "--replica", phone1, "--kind", "household", "--json", writeRecords(t, households...))
	if want := fmt.Sprintf("saved %d of %d household records", len(households), len(households)); !strings.Contains(out, want) {
		t.Errorf("put households printed:\n%s\nwant %q", out, want)
	}
	raised := raisedBy(t, mustCLI(t, "device", "put", "--replica", phone1, "--kind", "visit", "--json", writeRecords(t, visits...)))
	// A lone object (not an array) is one record; saving it again stores nothing.
	lone := writeFile(t, protojson.Format(wire.Body(visits[0])))
	if out := mustCLI(t, "device", "put", "--replica", phone1, "--kind", "household_visit", "--json", lone); !strings.Contains(out, "saved 1 of 1") {
		t.Errorf("put of one object printed:\n%s", out)
	}
	st := readStatus(t, phone1)
	if got, want := st.Pending, len(households)+len(visits)+raised; got != want || len(st.PendingList) != want || st.LastSuccess != nil {
		t.Fatalf("status before sync: pending %d (%d listed), last success %v; want %d pending, no sync", got, len(st.PendingList), st.LastSuccess, want)
	}
	if !slices.Equal(st.Areas, []string{v.code}) || !st.Enrolled {
		t.Errorf("status areas %v, enrolled %v; want [%s]", st.Areas, st.Enrolled, v.code)
	}

	out = mustCLI(t, "device", "sync", "--replica", phone1, "--quiet")
	if want := fmt.Sprintf("pushed %d changes, 0 refused", len(households)+len(visits)+raised); !strings.Contains(out, want) {
		t.Errorf("sync printed:\n%s\nwant %q", out, want)
	}
	st = readStatus(t, phone1)
	if st.Pending != 0 || len(st.Rejected) != 0 || st.LastSuccess == nil || st.LastError != "" {
		t.Fatalf("status after sync: %+v", st)
	}

	phone2 := srv.enroll(t, v.code)
	_, errOut, err := cli(t, "device", "sync", "--replica", phone2)
	if err != nil {
		t.Fatalf("sync of the second phone: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "attempt 1: connecting") || !strings.Contains(errOut, "pull:") {
		t.Errorf("sync progress on stderr:\n%s", errOut)
	}
	out = mustCLI(t, "device", "list", "--replica", phone2, "--kind", "visit", "--json")
	got := parseBodies(t, kindVisit, out)
	if !slices.Equal(ids(t, got), ids(t, visits)) {
		t.Fatalf("phone 2 lists visits %v, want %v", ids(t, got), ids(t, visits))
	}
	byID := map[string]*fieldsyncv1.Record{}
	for _, r := range visits {
		byID[ids(t, []*fieldsyncv1.Record{r})[0]] = r
	}
	for _, r := range got {
		if want := byID[ids(t, []*fieldsyncv1.Record{r})[0]]; !proto.Equal(r, want) {
			t.Errorf("phone 2 lists\n%v\nwant\n%v", r, want)
		}
	}
	// The table has one line per record: id, area, summary.
	out = mustCLI(t, "device", "list", "--replica", phone2, "--kind", "households")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != len(households) || !strings.Contains(lines[0], v.code) {
		t.Errorf("list households printed:\n%s\nwant %d lines with area %s", out, len(households), v.code)
	}

	// get prints the record as multi-line protojson, equal to what was put.
	want := visits[0]
	id := ids(t, []*fieldsyncv1.Record{want})[0]
	out = mustCLI(t, "device", "get", "--replica", phone2, id)
	body, trailer, ok := strings.Cut(out, "\n}\n")
	if !ok || !strings.Contains(trailer, "no open conflicts") {
		t.Fatalf("get printed:\n%s", out)
	}
	gotRec := parseBodies(t, kindVisit, "["+body+"}]")[0]
	if !proto.Equal(gotRec, want) {
		t.Errorf("get printed\n%v\nwant\n%v", gotRec, want)
	}
	// Flags may follow the id; --json gives kind, area and conflicts too.
	out = mustCLI(t, "device", "get", id, "--replica", phone2, "--json")
	var rj recordJSON
	if err := json.Unmarshal([]byte(out), &rj); err != nil || rj.Kind != "household_visit" || rj.ID != id || rj.Area != v.code || rj.Conflicts == nil || len(rj.Conflicts) != 0 {
		t.Errorf("get --json: %v\n%s", err, out)
	}
	if _, _, err := cli(t, "device", "get", "--replica", phone2, "019a8f3e-0000-7000-8000-00000000dead"); err == nil || !strings.Contains(err.Error(), "no record") {
		t.Errorf("get of a missing record: %v", err)
	}
}

func TestDevicePutRefusesInvalidRecordsAndSavesTheRest(t *testing.T) {
	srv := startDeviceServer(t)
	v := newVillage(t)
	phone := srv.enroll(t, v.code)
	valid := v.records[kindVisit][0]
	invalid := proto.Clone(v.records[kindVisit][1]).(*fieldsyncv1.Record)
	iv := invalid.GetHouseholdVisit()
	iv.VisitorWorkerId = ""
	iv.StartedAt = nil
	iv.Findings[0].Presence = fieldsyncv1.Presence_PRESENCE_ABSENT
	iv.Findings[0].AbsenceReason = fieldsyncv1.AbsenceReason_ABSENCE_REASON_UNSPECIFIED
	wantErrs := survey.Validate(invalid, time.Now())
	if len(wantErrs) < 3 {
		t.Fatalf("the broken visit has %d field errors, want at least 3: %v", len(wantErrs), wantErrs)
	}
	file := writeRecords(t, invalid, valid, v.otherHouse)
	out, errOut, err := cli(t, "device", "put", "--replica", phone, "--kind", "visit", "--json", file)
	// The household of another village is not a visit: malformed, nothing saved.
	if err == nil || !strings.Contains(err.Error(), file+":3:") || !strings.Contains(err.Error(), "nothing was saved") {
		t.Fatalf("put of a household as a visit: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = cli(t, "device", "put", "--replica", phone, "--kind", "visit", "--json", writeRecords(t, invalid, valid))
	if err == nil || !strings.Contains(err.Error(), "1 of 2 records refused") {
		t.Fatalf("put with an invalid record: %v, want 1 of 2 refused", err)
	}
	if !strings.Contains(out, "saved 1 of 2 household_visit records") || !strings.Contains(out, "refused 1") {
		t.Errorf("put printed:\n%s", out)
	}
	if !strings.Contains(errOut, "record 1 (line 1)") || !strings.Contains(errOut, "fix what is named above") {
		t.Errorf("put explained:\n%s", errOut)
	}
	for _, fe := range wantErrs {
		line := regexp.MustCompile(regexp.QuoteMeta(fe.Path) + `\s+` + regexp.QuoteMeta(reasonWord(fe.Reason)) + `\s+` + regexp.QuoteMeta(fe.Message))
		if !line.MatchString(errOut) {
			t.Errorf("put did not report %s (%v): %s\n%s", fe.Path, fe.Reason, fe.Message, errOut)
		}
	}
	st := readStatus(t, phone)
	if st.Pending != 1 || st.PendingList[0].RecordID != ids(t, []*fieldsyncv1.Record{valid})[0] {
		t.Errorf("after put: %+v, want the valid visit pending alone", st.PendingList)
	}

	// A valid record of another village is outside the device's areas.
	_, errOut, err = cli(t, "device", "put", "--replica", phone, "--kind", "household", "--json", writeRecords(t, v.otherHouse))
	if err == nil || !strings.Contains(errOut, "outside the areas this device is enrolled for ("+v.code+")") {
		t.Errorf("put of another village's household: %v\n%s", err, errOut)
	}
}

func TestDevicePutMalformedJSON(t *testing.T) {
	v := newVillage(t)
	good, err := protojson.Marshal(wire.Body(v.records[kindVisit][0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, input string
		want        string // in the error, after the file name
	}{
		{"empty", " \n", " is empty"},
		{"empty array", "[ ]", " holds an empty array"},
		{"missing comma", "[\n" + string(good) + "\n" + string(good) + "\n]", ":3:1: malformed JSON: invalid character '{' after array element"},
		{"cut short", "[\n" + string(good) + ",\n{\"id\": ", ":3:8: malformed JSON"},
		{"two values", "{}\n{}", ":2:1: malformed JSON: invalid character '{' after top-level value"},
		{"unknown field", "[\n" + string(good) + ",\n  {\"id\": \"x\",\n   \"colour\": 1}]", `:4:4: record 2 is not a household_visit record (a HouseholdVisit object): unknown field "colour"`},
		{"wrong type on the first line", `[{"findings": 3}]`, `:1:15: record 1 is not a household_visit record`},
		{"one object", "\ufeff{\"id\":\"x\"}\n", ""},
		{"string element", `["visit"]`, `:1:2: record 1 is not a household_visit record`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, err := decodeRecords("in.json", []byte(tc.input), kindVisit)
			if tc.want == "" {
				if err != nil || len(items) != 1 {
					t.Fatalf("decodeRecords = %d records, %v; want 1", len(items), err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "in.json") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decodeRecords(%q) error = %v, want in.json...%s", tc.input, err, tc.want)
			}
		})
	}
	// Through the command, with the file's name, and nothing saved.
	srv := startDeviceServer(t)
	phone := srv.enroll(t, v.code)
	file := writeFile(t, "["+string(good)+",\n{]")
	_, _, err = cli(t, "device", "put", "--replica", phone, "--kind", "visit", "--json", file)
	if err == nil || !strings.Contains(err.Error(), file+":2:2: malformed JSON") {
		t.Errorf("put of malformed JSON: %v", err)
	}
	if st := readStatus(t, phone); st.Pending != 0 {
		t.Errorf("%d changes pending after malformed input, want none", st.Pending)
	}
	// Standard input.
	stdin = strings.NewReader(string(good))
	t.Cleanup(func() { stdin = os.Stdin })
	if out := mustCLI(t, "device", "put", "--replica", phone, "--kind", "visit", "--json", "-"); !strings.Contains(out, "from standard input") {
		t.Errorf("put from standard input printed:\n%s", out)
	}
}

// TestDeviceGetShowsConflicts makes two phones change one household's head
// name concurrently; after both sync, get shows the conflict with both values.
func TestDeviceGetShowsConflicts(t *testing.T) {
	srv, v, h, id, a, b := twoPhonesHoldingAHousehold(t)
	for replica, name := range map[string]string{a: "杨甲", b: "杨乙"} {
		edited := proto.Clone(h).(*fieldsyncv1.Record)
		edited.GetHousehold().HeadName = name
		mustCLI(t, "device", "put", "--replica", replica, "--kind", "household", "--json", writeRecords(t, edited))
	}
	for _, replica := range []string{a, b, a} {
		mustCLI(t, "device", "sync", "--replica", replica, "--quiet")
	}
	for _, replica := range []string{a, b} {
		out := mustCLI(t, "device", "get", "--replica", replica, "--json", id)
		var rj recordJSON
		if err := json.Unmarshal([]byte(out), &rj); err != nil {
			t.Fatalf("get --json: %v\n%s", err, out)
		}
		if len(rj.Conflicts) != 1 || rj.Conflicts[0].Field != "head_name" || len(rj.Conflicts[0].Values) != 2 {
			t.Fatalf("conflicts %+v, want one on head_name with two values", rj.Conflicts)
		}
		var shown string
		var head struct {
			HeadName string `json:"head_name"`
		}
		if err := json.Unmarshal(rj.Record, &head); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(rj.Conflicts[0].Values[0], &shown); err != nil || shown != head.HeadName {
			t.Errorf("the first conflict value is %s, want the shown head name %q", rj.Conflicts[0].Values[0], head.HeadName)
		}
		vals := string(rj.Conflicts[0].Values[0]) + string(rj.Conflicts[0].Values[1])
		if !strings.Contains(vals, "杨甲") || !strings.Contains(vals, "杨乙") {
			t.Errorf("conflict values %s, want both names", vals)
		}
		text := mustCLI(t, "device", "get", "--replica", replica, id)
		if !strings.Contains(text, "1 open conflicts") || !strings.Contains(text, "head_name: ") || !strings.Contains(text, "versus") {
			t.Errorf("get printed:\n%s", text)
		}
	}

	// The operator sees the conflict on the server and settles it with a
	// third name; the resolution closes it on both phones.
	adm := []string{"--server", srv.addr, "--token-file", srv.tokenFile}
	out := mustCLI(t, append([]string{"admin", "conflicts", "list", "--json", "--area", v.code}, adm...)...)
	var c adminConflictJSON
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Field != "head_name" || len(c.Values) != 2 || !strings.HasPrefix(c.ID, id+"/") {
		t.Fatalf("admin conflicts list --json: %v\n%s", err, out)
	}
	if _, _, err := cli(t, append([]string{"admin", "conflicts", "resolve", c.ID, "--kind", "household", "--value", `{"address": "x"}`}, adm...)...); err == nil {
		t.Error("resolving head_name with another field's value succeeded")
	}
	out = mustCLI(t, append([]string{"admin", "conflicts", "resolve", c.ID, "--value", `{"head_name": "杨丙"}`}, adm...)...)
	if !strings.Contains(out, "resolved "+c.ID) {
		t.Errorf("resolve printed:\n%s", out)
	}
	if out := mustCLI(t, append([]string{"admin", "conflicts", "list"}, adm...)...); !strings.Contains(out, "0 open conflicts") {
		t.Errorf("after resolving, list printed:\n%s", out)
	}
	for _, replica := range []string{a, b} {
		mustCLI(t, "device", "sync", "--replica", replica, "--quiet")
		var rj recordJSON
		if err := json.Unmarshal([]byte(mustCLI(t, "device", "get", "--replica", replica, "--json", id)), &rj); err != nil {
			t.Fatal(err)
		}
		if len(rj.Conflicts) != 0 || !strings.Contains(string(rj.Record), "杨丙") {
			t.Errorf("after the resolution the phone shows %s with conflicts %+v", rj.Record, rj.Conflicts)
		}
	}
}

func TestDeviceHelpAndUsageErrors(t *testing.T) {
	out, errOut, err := cli(t, "device", "--help")
	if err != nil || !strings.Contains(errOut, "device enroll") || out != "" {
		t.Errorf("device --help: %v\n%s", err, errOut)
	}
	for name := range deviceCommands {
		_, errOut, err := cli(t, "device", name, "--help")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut, "usage: fieldsync device "+name) || !strings.Contains(errOut, "-replica") {
			t.Errorf("device %s --help: %v\n%s", name, err, errOut)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"device"}, "no command"},
		{[]string{"device", "frobnicate"}, `"frobnicate"`},
		{[]string{"device", "put", "--json", "x.json"}, "--kind is required"},
		{[]string{"device", "list", "--kind", "goat"}, `unknown record kind "goat"`},
		{[]string{"device", "put", "--kind", "visit"}, "--json FILE is required"},
		{[]string{"device", "get"}, "give one record id"},
		{[]string{"device", "status", "extra"}, `unexpected argument "extra"`},
		{[]string{"device", "enroll", "--replica", filepath.Join(t.TempDir(), "r.db")}, "--code is required"},
		{[]string{"device", "due", "--day", "yesterday"}, "want YYYY-MM-DD"},
		{[]string{"device", "unvisited"}, "--campaign is required"},
	} {
		if _, _, err := cli(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fieldsync %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if out, _, _ := cli(t, "--help"); !strings.Contains(out, "device") {
		t.Errorf("fieldsync --help does not list device:\n%s", out)
	}
}

// wireKind is kind as the engine and package wire number it.
func wireKind(kind fieldsyncv1.RecordKind) syncengine.Kind { return syncengine.Kind(kind) }

// raisedRE matches what device put says it raised.
var raisedRE = regexp.MustCompile(`; raised (\d+) problems? and (\d+) risk flags?`)

// raisedBy returns how many problems and risk flags device put's output says
// the saves raised (0 when it says nothing).
func raisedBy(t *testing.T, putOutput string) int {
	t.Helper()
	m := raisedRE.FindStringSubmatch(putOutput)
	if m == nil {
		return 0
	}
	p, _ := strconv.Atoi(m[1])
	f, _ := strconv.Atoi(m[2])
	return p + f
}

// TestDeviceDeleteAgainstEdit deletes a household on one phone while
// another edits it; the operator sees a conflict on its existence, keeps
// the deletion with the CLI, and both phones end without the household.
func TestDeviceDeleteAgainstEdit(t *testing.T) {
	srv, v, h, id, a, b := twoPhonesHoldingAHousehold(t)

	if out := mustCLI(t, "device", "delete", "--replica", a, id); !strings.Contains(out, "deleted record "+id) {
		t.Errorf("delete printed:\n%s", out)
	}
	if _, _, err := cli(t, "device", "delete", "--replica", a, id); err == nil || !strings.Contains(err.Error(), "holds no record") {
		t.Errorf("deleting again: %v, want 'holds no record'", err)
	}
	if _, _, err := cli(t, "device", "get", "--replica", a, id); err == nil {
		t.Error("get of the deleted household succeeded")
	}
	edited := proto.Clone(h).(*fieldsyncv1.Record)
	edited.GetHousehold().HeadName = "杨丁"
	mustCLI(t, "device", "put", "--replica", b, "--kind", "household", "--json", writeRecords(t, edited))
	for _, replica := range []string{a, b, a} {
		mustCLI(t, "device", "sync", "--replica", replica, "--quiet")
	}

	adm := []string{"--server", srv.addr, "--token-file", srv.tokenFile}
	out := mustCLI(t, append([]string{"admin", "conflicts", "list", "--json", "--area", v.code}, adm...)...)
	var c adminConflictJSON
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Field != "existence" || len(c.Values) != 2 || c.ID != id+"/0" {
		t.Fatalf("admin conflicts list --json: %v\n%s", err, out)
	}
	keep := -1
	for i, val := range c.Values {
		if strings.Contains(string(val), "deleted (in area "+v.code+")") {
			keep = i
		}
	}
	if keep < 0 {
		t.Fatalf("no deletion among the values %s", c.Values)
	}
	mustCLI(t, append([]string{"admin", "conflicts", "resolve", c.ID, "--keep", strconv.Itoa(keep)}, adm...)...)
	for _, replica := range []string{a, b} {
		mustCLI(t, "device", "sync", "--replica", replica, "--quiet")
		if _, _, err := cli(t, "device", "get", "--replica", replica, id); err == nil {
			t.Errorf("%s still shows the household the operator kept deleted", replica)
		}
	}
	if out := mustCLI(t, append([]string{"admin", "conflicts", "list"}, adm...)...); !strings.Contains(out, "0 open conflicts") {
		t.Errorf("after resolving, list printed:\n%s", out)
	}
}

// twoPhonesHoldingAHousehold starts a server and enrols two phones of a
// village; the first records household h (id), and both sync.
func twoPhonesHoldingAHousehold(t *testing.T) (srv deviceServer, v village, h *fieldsyncv1.Record, id, a, b string) {
	t.Helper()
	srv = startDeviceServer(t)
	v = newVillage(t)
	h = v.records[kindHousehold][0]
	id = ids(t, []*fieldsyncv1.Record{h})[0]
	a, b = srv.enroll(t, v.code), srv.enroll(t, v.code)
	mustCLI(t, "device", "put", "--replica", a, "--kind", "household", "--json", writeRecords(t, h))
	mustCLI(t, "device", "sync", "--replica", a, "--quiet")
	mustCLI(t, "device", "sync", "--replica", b, "--quiet")
	return srv, v, h, id, a, b
}
