package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/wire"
)

// 'admin report' prints a township's indicators by village from a real
// server holding a generated township: the CSV has exactly the issue's
// columns, one line per area and indicator, the township's figures are the
// sums of its villages', and the counts match the generated registry.
func TestAdminReport(t *testing.T) {
	now := time.Now()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 2, HouseholdsPerVillage: 6, Seed: 21, AsOf: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	township := vs[0].Code[:9]
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, Area: township})
	households := 0
	err = g.Each(func(r *fieldsyncv1.Record) error {
		if _, area, err := wire.Identity(r); err != nil || !strings.HasPrefix(area, township) {
			return err // the county's own records (its workers)
		}
		if r.GetHousehold() != nil {
			households++
		}
		if p := r.GetProblem(); p != nil { // through the ledger's workflow
			for _, step := range countygen.LedgerSteps(p) {
				if _, err := srv.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: step}}); err != nil {
					return err
				}
			}
			return nil
		}
		_, err := srv.Save(t.Context(), r)
		return err
	})
	if err != nil {
		t.Fatalf("saving the township: %v", err)
	}
	conn := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	admin := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(t.Context(), append(append([]string{"admin"}, args...), conn...), &out, &errOut); err != nil {
			t.Fatalf("admin %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}

	// The township's and villages' names, as the county's list gives them.
	names := filepath.Join(t.TempDir(), "areas.csv")
	list := "code,name\n" + township + "," + vs[0].Township.Name + "\n"
	for _, v := range vs {
		list += v.Code + "," + v.Name + "\n"
	}
	if err := os.WriteFile(names, []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := admin("areas", "import", names); !strings.Contains(msg, "imported 3 names") {
		t.Errorf("areas import printed %q", msg)
	}
	for _, line := range []string{"532524100201,别县的村", "532520000000,别的县", "532523101000,别的乡镇"} {
		outside := filepath.Join(t.TempDir(), "outside.csv")
		os.WriteFile(outside, []byte(line+"\n"), 0o600)
		var refused bytes.Buffer
		if err := run(t.Context(), append([]string{"admin", "areas", "import", outside}, conn...), &refused, &refused); err == nil || !strings.Contains(err.Error(), "outside the server's area") {
			t.Errorf("importing %q at township %s: %v", line, township, err)
		}
	}
	if audit := admin("audit"); !strings.Contains(audit, "areas_set") || !strings.Contains(audit, "3 names given") {
		t.Errorf("the import is not in the audit trail:\n%s", audit)
	}

	out := filepath.Join(t.TempDir(), "report.csv")
	if msg := admin("report", "--format", "csv", "--out", out); !strings.Contains(msg, "3 areas") {
		t.Errorf("report --out printed %q", msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lines[0], ","); got != "area_code,area_name,level,as_of,indicator,numerator,denominator,value" {
		t.Fatalf("CSV header %q", got)
	}
	type fig = struct{ num, den int64 }
	byArea := map[string]map[string]fig{}
	levels := map[string]string{}
	for _, l := range lines[1:] {
		num, _ := strconv.ParseInt(l[5], 10, 64)
		den, _ := strconv.ParseInt(l[6], 10, 64)
		if byArea[l[0]] == nil {
			byArea[l[0]] = map[string]fig{}
		}
		byArea[l[0]][l[4]] = fig{num, den}
		levels[l[0]] = l[2]
		if want := map[string]string{township + "000": vs[0].Township.Name, vs[0].Code: vs[0].Name, vs[1].Code: vs[1].Name}[l[0]]; l[1] != want {
			t.Fatalf("area %s named %q, want %q", l[0], l[1], want)
		}
		if l[3] != now.In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly) {
			t.Fatalf("as_of %q, want today", l[3])
		}
		switch {
		case l[6] == "" && l[7] != l[5]:
			t.Errorf("count %s of %s: value %q, want the count", l[4], l[0], l[7])
		case l[6] == "0" && l[7] != "":
			t.Errorf("rate %s of %s with no denominator: value %q, want empty", l[4], l[0], l[7])
		}
	}
	top := township + "000"
	if len(byArea) != 3 || levels[top] != "township" || levels[vs[0].Code] != "village" || levels[vs[1].Code] != "village" {
		t.Fatalf("areas %v, want the township and its two villages", levels)
	}
	for key, f := range byArea[top] {
		a, b := byArea[vs[0].Code][key], byArea[vs[1].Code][key]
		if f.num != a.num+b.num || f.den != a.den+b.den {
			t.Errorf("%s: township %v, villages %v + %v", key, f, a, b)
		}
	}
	if f := byArea[top]["visit_coverage"]; f.den != int64(households) || f.num == 0 {
		t.Errorf("visit_coverage %v, want some of the %d households", f, households)
	}
	for _, key := range []string{"contract_rate", "htn_standard_mgmt_rate", "clinic_compliance.running.water", "problems_closed"} {
		if f := byArea[top][key]; f.num == 0 {
			t.Errorf("%s is %v on a generated township", key, f)
		}
	}
	if f := byArea[top]["clinic_compliance"]; f.den != 2 {
		t.Errorf("clinic_compliance %v, want the 2 clinics audited", f)
	}

	checkReportXLSX(t, admin, byArea, levels)

	// The lists behind the numbers.
	for _, key := range []string{"followups_due", "contract_rate", "problems_open", "health_record_rate"} {
		raw := admin("report", "list", key, "--format", "csv")
		rows, err := csv.NewReader(strings.NewReader(raw)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(rows[0], ",") != "area_code,area_name,kind,id,name,masked_id,detail" {
			t.Fatalf("list header %v", rows[0])
		}
		f := byArea[top][key]
		want := f.num
		if f.den != 0 || key != "followups_due" && key != "problems_open" {
			want = f.den - f.num
		}
		if int64(len(rows)-1) != want {
			t.Errorf("report list %s: %d rows, the report says %d (%v)", key, len(rows)-1, want, f)
		}
		for _, r := range rows[1:] {
			if r[2] == "person" && (r[4] == "" || !strings.Contains(r[5], "*")) {
				t.Errorf("report list %s: person row %v without a name or a masked ID number", key, r)
			}
		}
	}
	if lst := admin("report", "list", "problems_open"); !strings.Contains(lst, "listed for problems_open") {
		t.Errorf("report list table:\n%s", lst)
	}
	var bad bytes.Buffer
	if err := run(t.Context(), append([]string{"admin", "report", "list", "no_such_key"}, conn...), &bad, &bad); err == nil || !strings.Contains(err.Error(), "not an indicator key") {
		t.Errorf("report list of an unknown key: %v", err)
	}

	table := admin("report", "--by", "township")
	for _, want := range []string{"township " + top, "签约率", "contract_rate", "%"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table does not show %q:\n%.600s", want, table)
		}
	}
	if strings.Contains(table, "village "+vs[0].Code) {
		t.Error("--by township shows villages")
	}
	var js struct {
		Rows []struct {
			AreaCode string `json:"area_code"`
			Values   []struct {
				Key       string `json:"key"`
				Numerator string `json:"numerator"`
			} `json:"values"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(admin("report", "--format", "json", "--area", vs[1].Code)), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Rows) != 1 || js.Rows[0].AreaCode != vs[1].Code {
		t.Fatalf("report --area village: rows %+v", js.Rows)
	}
	// health_check_rate counts the checks since the day asked for: from a
	// day after today none, from long ago at least as many as this year's.
	checks := func(from string) fig {
		t.Helper()
		rows, err := csv.NewReader(strings.NewReader(admin("report", "--by", "township", "--format", "csv", "--health-check-from", from))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows[1:] {
			if r[4] == "health_check_rate" {
				num, _ := strconv.ParseInt(r[5], 10, 64)
				den, _ := strconv.ParseInt(r[6], 10, 64)
				return fig{num, den}
			}
		}
		t.Fatal("no health_check_rate in the report")
		return fig{}
	}
	year := byArea[top]["health_check_rate"]
	if long, none := checks("2000-01-01"), checks(now.AddDate(0, 0, 1).Format(time.DateOnly)); long.num < year.num || none.num != 0 || long.den != year.den {
		t.Errorf("health checks since 2000: %v, since tomorrow: %v, this year: %v", long, none, year)
	}
	var badDay bytes.Buffer
	if err := run(t.Context(), append([]string{"admin", "report", "--health-check-from", "1.1.2026"}, conn...), &badDay, &badDay); err == nil || !strings.Contains(err.Error(), "--health-check-from") {
		t.Errorf("a malformed --health-check-from: %v", err)
	}
	var past bytes.Buffer
	err = run(t.Context(), append([]string{"admin", "report", "--as-of", now.AddDate(0, 0, 2).Format(time.DateOnly)}, conn...), &past, &past)
	if err == nil || !strings.Contains(err.Error(), "after today") {
		t.Errorf("report as of the day after tomorrow: %v", err)
	}
}

// checkReportXLSX writes the report as XLSX and reads it back with excelize:
// a sheet per level, the Chinese header over the keys, and every cell equal
// to the CSV's figures (rates as fractions formatted as percentages, counts
// as whole numbers, an empty cell for a rate with nothing to count).
func checkReportXLSX(t *testing.T, admin func(...string) string, byArea map[string]map[string]struct{ num, den int64 }, levels map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.xlsx")
	admin("report", "--format", "xlsx", "--out", path)
	f, err := excelize.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.GetSheetList(); strings.Join(got, ",") != "乡镇,村" {
		t.Fatalf("sheets %v, want 乡镇 and 村", got)
	}
	seen := 0
	for _, sheet := range f.GetSheetList() {
		rows, err := f.GetRows(sheet, excelize.Options{RawCellValue: true})
		if err != nil {
			t.Fatal(err)
		}
		head, keys := rows[0], rows[1]
		if head[0] != "地区代码" || keys[0] != "area_code" || keys[3] != "contract_rate" || head[3] != "签约率" {
			t.Fatalf("sheet %s header %v / %v", sheet, head[:4], keys[:4])
		}
		for _, row := range rows[2:] {
			area := row[0]
			if want := map[string]string{"乡镇": "township", "村": "village"}[sheet]; levels[area] != want {
				t.Errorf("area %s on sheet %s", area, sheet)
			}
			seen++
			for i, key := range keys[3:] {
				col := 3 + i
				fig := byArea[area][key]
				cell := ""
				if col < len(row) {
					cell = row[col]
				}
				name, _ := excelize.CoordinatesToCellName(col+1, 3)
				style, _ := f.GetCellStyle(sheet, name)
				isRate := fig.den != 0 || cell == ""
				switch {
				case fig.den == 0 && cell == "":
				case isRate:
					v, err := strconv.ParseFloat(cell, 64)
					if err != nil || math.Abs(v-float64(fig.num)/float64(fig.den)) > 1e-12 {
						t.Errorf("%s %s: cell %q, want %d/%d", area, key, cell, fig.num, fig.den)
					}
					if st, err := f.GetStyle(style); err != nil || st.NumFmt != 10 {
						t.Errorf("%s %s: style %v, %v, want a percentage", area, key, st, err)
					}
				default:
					if cell != strconv.FormatInt(fig.num, 10) {
						t.Errorf("%s %s: cell %q, want the count %d", area, key, cell, fig.num)
					}
				}
			}
		}
	}
	if seen != len(byArea) {
		t.Errorf("the workbook shows %d areas, the CSV %d", seen, len(byArea))
	}
}

// TestDemoReport is the README's walk-through: the demo records a generated
// village on a phone, enrols it with a township server and syncs; the
// areas' names are imported; the township's report then shows the village by
// name with the figures the phone's records give.
func TestDemoReport(t *testing.T) {
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, Area: "532523100"})
	code, _, err := srv.IssueEnrolmentCode([]string{"532523100"}, "demo phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	areas := filepath.Join(t.TempDir(), "areas.csv")
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"demo", "--replica", filepath.Join(t.TempDir(), "demo.db"), "--server", addr, "--code", code, "--areas", areas}, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "0 changes pending, 0 refused") {
		t.Fatalf("demo printed:\n%s", out.String())
	}
	conn := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	out.Reset()
	if err := run(t.Context(), append([]string{"admin", "areas", "import", areas}, conn...), &out, &errOut); err != nil {
		t.Fatalf("areas import: %v\n%s", err, errOut.String())
	}
	out.Reset()
	if err := run(t.Context(), append([]string{"admin", "report"}, conn...), &out, &errOut); err != nil {
		t.Fatalf("report: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"township 532523100000 鸡坪镇", "village 532523100201 白沙湾村", "followups_due", "visit_coverage"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report does not show %q:\n%.800s", want, out.String())
		}
	}
}
