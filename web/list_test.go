package web_test

import (
	"encoding/csv"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/xuri/excelize/v2"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
)

// nameAreas gives the server the generated county's names of its county,
// townships and villages through AdminService.SetAreaNames, as fieldsync
// admin areas import does.
func (c *county) nameAreas(t *testing.T) {
	t.Helper()
	req := &fieldsyncv1.SetAreaNamesRequest{}
	for code, name := range c.names {
		req.Names = append(req.Names, &fieldsyncv1.AreaName{AreaCode: code, Name: name})
	}
	if _, err := c.admin.SetAreaNames(c.adminCtx(t), req); err != nil {
		t.Fatalf("SetAreaNames: %v", err)
	}
}

// countyDevices is what addDevices made: the ids of the devices not synced
// for three days, and the villages no device has synced for in that time
// with how many devices serve each.
type countyDevices struct {
	stale         []string
	staleVillages map[string]string
}

// addDevices gives the county's server devices of every case the devices
// page tells apart, with the townships' relays reporting theirs as a
// township server does (ReportDevices):
//
//	village 0: a phone of its own enrolled now (synced lately), and two the
//	           first township reports: one last synced 5 days ago, one
//	           enrolled 10 days ago and never synced (both stale);
//	village 1: no device at all;
//	village 2: a phone synced an hour ago, and the second township's
//	           tablet serving the whole township, last synced 4 days ago;
//	village 3: that tablet only, and a revoked phone (which does not count).
func (c *county) addDevices(t *testing.T) countyDevices {
	t.Helper()
	enrol := fieldsyncv1.NewEnrolmentServiceClient(c.conn)
	enroll := func(code string, id syncengine.ReplicaID, name string) string {
		t.Helper()
		resp, err := enrol.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: id[:], DeviceName: name})
		if err != nil {
			t.Fatalf("Enroll %s: %v", name, err)
		}
		return resp.GetDeviceToken()
	}
	code, _, err := c.srv.IssueEnrolmentCode([]string{c.villages[0]}, "李医生的手机", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	enroll(code, syncengine.ReplicaID{0xa}, "李医生的手机")

	now := time.Now()
	ts := func(d time.Duration) *timestamppb.Timestamp {
		return timestamppb.New(now.Add(-d).Truncate(time.Second))
	}
	const day = 24 * time.Hour
	b, cc, d, e, f := syncengine.ReplicaID{0xb}, syncengine.ReplicaID{0xc}, syncengine.ReplicaID{0xd}, syncengine.ReplicaID{0xe}, syncengine.ReplicaID{0xf}
	reports := [][]*fieldsyncv1.DeviceReport{
		{
			{ReplicaId: b[:], AreaPrefixes: []string{c.villages[0]}, EnrolledAt: ts(10 * day), LastSync: ts(5 * day)},
			{ReplicaId: cc[:], AreaPrefixes: []string{c.villages[0]}, EnrolledAt: ts(10 * day)},
		},
		{
			{ReplicaId: d[:], AreaPrefixes: []string{c.villages[2]}, EnrolledAt: ts(10 * day), LastSync: ts(time.Hour)},
			{ReplicaId: e[:], AreaPrefixes: []string{c.townships[1]}, EnrolledAt: ts(10 * day), LastSync: ts(4 * day)},
			{ReplicaId: f[:], AreaPrefixes: []string{c.villages[3]}, EnrolledAt: ts(10 * day), Revoked: true},
		},
	}
	for i, town := range c.townships {
		code, _, err := c.srv.IssueRelayCode([]string{town}, "township", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		token := enroll(code, syncengine.ReplicaID{0x70, byte(i)}, "township")
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
		if _, err := fieldsyncv1.NewSyncServiceClient(c.conn).ReportDevices(ctx, &fieldsyncv1.ReportDevicesRequest{Devices: reports[i]}); err != nil {
			t.Fatalf("ReportDevices of %s: %v", town, err)
		}
	}
	return countyDevices{
		stale:         []string{b.String(), cc.String(), e.String()},
		staleVillages: map[string]string{c.villages[1]: "0", c.villages[3]: "1"},
	}
}

// addOverdue saves three open problems through the server's save path,
// as a phone's would arrive: in village 0 one raised 40 days ago with its
// deadline 14 days ago, in village 2 one raised 10 days ago due yesterday
// (both overdue today, neither a month ago), and in village 1 one due in 5
// days.
func (c *county) addOverdue(t *testing.T) {
	t.Helper()
	today := survey.Today(time.Now())
	for _, s := range []struct {
		village, raised, deadline int // days from today
	}{{0, -40, -14}, {2, -10, -1}, {1, -3, 5}} {
		id, err := uuid.NewV7()
		if err != nil {
			t.Fatal(err)
		}
		src, err := uuid.NewV7()
		if err != nil {
			t.Fatal(err)
		}
		p := &fieldsyncv1.Problem{
			Id: id.String(), AreaCode: c.villages[s.village], SourceKind: fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT,
			SourceRecordId: src.String(), Item: "member.one_person_plan", Severity: fieldsyncv1.Severity_SEVERITY_NORMAL,
			Description: "慢病患者无一人一策", Responsible: "王建国", Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN,
			RaisedAt: timestamppb.New(time.Now().AddDate(0, 0, s.raised)), Deadline: survey.AddDays(today, s.deadline),
		}
		if _, err := c.srv.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: p}}); err != nil {
			t.Fatalf("saving a problem: %v", err)
		}
	}
}

// reportList is the server's own list of key for area, as of asOf (nil:
// today).
func (c *county) reportList(t *testing.T, area, key string, asOf *fieldsyncv1.Date) *fieldsyncv1.IndicatorsResponse {
	t.Helper()
	resp, err := c.srv.IndicatorsReport(t.Context(), &fieldsyncv1.IndicatorsRequest{AreaCode: area, Depth: "village", ListKey: key, AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// listLength is how many units the figure of v stands for: the
// denominator less the numerator for a rate, the count for a count.
func listLength(v *fieldsyncv1.IndicatorValue) int {
	if v.GetRate() {
		return int(v.GetDenominator() - v.GetNumerator())
	}
	return int(v.GetNumerator())
}

func valueIn(t *testing.T, resp *fieldsyncv1.IndicatorsResponse, area, key string) *fieldsyncv1.IndicatorValue {
	t.Helper()
	for _, row := range resp.GetRows() {
		if row.GetAreaCode() == area {
			for _, v := range row.GetValues() {
				if v.GetKey() == key {
					return v
				}
			}
		}
	}
	t.Fatalf("no %s of %s in the report", key, area)
	return nil
}

// openXLSX downloads u and opens it as a workbook.
func openXLSX(t *testing.T, hc *http.Client, u string) *excelize.File {
	t.Helper()
	resp, body := get(t, hc, u)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" ||
		!strings.HasSuffix(resp.Header.Get("Content-Disposition"), `.xlsx"`) {
		t.Fatalf("%s: %s %s %s", u, resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}
	f, err := excelize.OpenReader(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// rawCell is a cell's value as stored, not as formatted.
func rawCell(t *testing.T, f *excelize.File, sheet string, col, row int) string {
	t.Helper()
	cell, _ := excelize.CoordinatesToCellName(col, row)
	v, err := f.GetCellValue(sheet, cell, excelize.Options{RawCellValue: true})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// itemRows are the list rows of a page: area code and unit id.
var itemRows = regexp.MustCompile(`<tr class="item" data-area="(\d{12})" data-id="([^"]+)">`)

// clearID matches an ID number in clear.
var clearID = regexp.MustCompile(`\d{17}[\dX]`)

// County staff download the figures of the county's page as a workbook
// whose cells are the report's; follow every figure of the county and a
// township to the units behind it, as many as the figure says, named, with
// masked ID numbers only, and download each list as CSV and XLSX with the
// report's units; read the 日通报 of today and of a month ago, village by
// village; and see the devices not synced for three days and the villages
// no device has synced for. Township staff read the lists of their
// township only.
func TestListsOverdueDevicesAndXLSX(t *testing.T) {
	c := startCounty(t)
	c.nameAreas(t)
	devs := c.addDevices(t)
	c.addOverdue(t)
	hc := browser(t)
	if resp := c.signIn(t, hc, "县", c.addStaff(t, "县", c.code), nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", resp.Status)
	}

	// The county page's workbook: a sheet per level, the report's figures.
	report := c.report(t, c.code, "township")
	main := mainKeys()
	f := openXLSX(t, hc, c.base+"/area/"+c.code+"/xlsx")
	if got := f.GetSheetList(); !slices.Equal(got, []string{"县", "乡镇"}) {
		t.Errorf("sheets %v, want 县 and 乡镇", got)
	}
	sheetRow := map[string]int{}
	for _, row := range report.GetRows() {
		sheet := map[string]string{"county": "县", "township": "乡镇"}[row.GetLevel()]
		n := 3 + sheetRow[sheet]
		sheetRow[sheet]++
		if got := rawCell(t, f, sheet, 1, n); got != row.GetAreaCode() {
			t.Fatalf("%s row %d is %s, want %s", sheet, n, got, row.GetAreaCode())
		}
		if got := rawCell(t, f, sheet, 2, n); got != c.names[row.GetAreaCode()] || got == "" {
			t.Errorf("%s row %d named %q, want %q", sheet, n, got, c.names[row.GetAreaCode()])
		}
		col := 4
		for _, v := range row.GetValues() {
			if !main[v.GetKey()] {
				continue
			}
			if key := rawCell(t, f, sheet, col, 2); key != v.GetKey() {
				t.Fatalf("%s column %d is %s, want %s", sheet, col, key, v.GetKey())
			}
			got := rawCell(t, f, sheet, col, n)
			switch {
			case !v.GetRate():
				if got != strconv.FormatInt(v.GetNumerator(), 10) {
					t.Errorf("%s %s of %s: cell %q, report %d", sheet, v.GetKey(), row.GetAreaCode(), got, v.GetNumerator())
				}
			case v.GetDenominator() == 0:
				if got != "" {
					t.Errorf("%s %s of %s: cell %q, want empty (0/0)", sheet, v.GetKey(), row.GetAreaCode(), got)
				}
			default:
				x, err := strconv.ParseFloat(got, 64)
				if err != nil || math.Abs(x-float64(v.GetNumerator())/float64(v.GetDenominator())) > 1e-12 {
					t.Errorf("%s %s of %s: cell %q, report %d/%d", sheet, v.GetKey(), row.GetAreaCode(), got, v.GetNumerator(), v.GetDenominator())
				}
				cell, _ := excelize.CoordinatesToCellName(col, n)
				id, _ := f.GetCellStyle(sheet, cell)
				if st, err := f.GetStyle(id); err != nil || st.NumFmt != 10 {
					t.Errorf("%s %s: rate cell not formatted as a percentage (%v, %v)", sheet, cell, st, err)
				}
			}
			col++
		}
	}

	// Every figure of the county and its first township links to its list,
	// as long as the figure says.
	for _, area := range []string{c.code, c.townships[0]} {
		_, page := get(t, hc, c.base+"/area/"+area)
		full := c.reportList(t, area, "", nil)
		for _, v := range full.GetRows()[0].GetValues() {
			if !main[v.GetKey()] {
				continue
			}
			href := `/area/` + area + `/list/` + v.GetKey() + `?lang=zh`
			if !strings.Contains(page, `href="`+href+`"`) {
				t.Errorf("the page of %s does not link %s", area, href)
				continue
			}
			resp, list := get(t, hc, c.base+href)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %s", href, resp.Status)
				continue
			}
			if got, want := len(itemRows.FindAllString(list, -1)), listLength(v); got != want {
				t.Errorf("%s lists %d, its figure %d", href, got, want)
			}
			if m := clearID.FindString(list); m != "" {
				t.Errorf("%s shows a clear ID number %s", href, m)
			}
		}
	}

	// A list's downloads hold the report's units, with names and masked
	// ID numbers, never a clear one.
	list := c.reportList(t, c.code, "health_check_rate", nil)
	if len(list.GetItems()) == 0 {
		t.Fatal("nobody without a health check in the county: the test needs some")
	}
	resp, body := get(t, hc, c.base+"/area/"+c.code+"/list/health_check_rate/csv")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("list CSV: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	lines, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	columns := []string{"area_code", "area_name", "kind", "id", "name", "masked_id", "detail"}
	if !slices.Equal(lines[0], columns) {
		t.Fatalf("list CSV header %v, want %v", lines[0], columns)
	}
	f = openXLSX(t, hc, c.base+"/area/"+c.code+"/list/health_check_rate/xlsx")
	rows, err := f.GetRows("清单", excelize.Options{RawCellValue: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[1], columns) || rows[0][0] != "地区代码" {
		t.Errorf("list workbook header %v / %v", rows[0], rows[1])
	}
	if len(lines)-1 != len(list.GetItems()) || len(rows)-2 != len(list.GetItems()) {
		t.Fatalf("list CSV has %d units, workbook %d, report %d", len(lines)-1, len(rows)-2, len(list.GetItems()))
	}
	masked := regexp.MustCompile(`^\d{4}\*{10}[\dX]{4}$`)
	for i, it := range list.GetItems() {
		want := []string{it.GetAreaCode(), c.names[it.GetAreaCode()], it.GetKind(), it.GetId(), it.GetName(), it.GetMaskedId(), it.GetDetail()}
		if !slices.Equal(lines[i+1], want) {
			t.Errorf("list CSV line %d: %v, want %v", i+1, lines[i+1], want)
		}
		if got := append(rows[i+2], make([]string, len(want)-len(rows[i+2]))...); !slices.Equal(got, want) {
			t.Errorf("list workbook row %d: %v, want %v", i+3, got, want)
		}
		if it.GetKind() == "person" && (it.GetName() == "" || !masked.MatchString(it.GetMaskedId())) {
			t.Errorf("listed person %v has no name or masked ID number", it)
		}
	}
	for _, id := range c.clearIDs {
		if strings.Contains(body, id) {
			t.Fatalf("the list CSV holds the clear ID number %s", id)
		}
	}

	// 日通报: the problems overdue today, and a month ago, village by village.
	monthAgo := survey.Today(time.Now().AddDate(0, -1, 0))
	for _, asOf := range []*fieldsyncv1.Date{nil, monthAgo} {
		u := c.base + "/area/" + c.code + "/overdue"
		if asOf != nil {
			u += "?as_of=" + survey.FormatDate(asOf)
		}
		want := c.reportList(t, c.code, "problems_overdue", asOf)
		resp, page := get(t, hc, u)
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "日通报") {
			t.Fatalf("%s: %s", u, resp.Status)
		}
		var ids []string
		for _, m := range itemRows.FindAllStringSubmatch(page, -1) {
			ids = append(ids, m[1]+" "+m[2])
		}
		var wantIDs []string
		for _, it := range want.GetItems() {
			wantIDs = append(wantIDs, it.GetAreaCode()+" "+it.GetId())
		}
		if !slices.Equal(ids, wantIDs) || int64(len(ids)) != valueIn(t, want, pad(c.code), "problems_overdue").GetNumerator() {
			t.Errorf("%s lists %v, want %v", u, ids, wantIDs)
		}
		for _, v := range c.villages {
			n := valueIn(t, want, v, "problems_overdue").GetNumerator()
			row := regexp.MustCompile(`<tr data-area="` + v + `"><td>.*?</td><td class="num">(\d+)</td>`).FindStringSubmatch(page)
			if row == nil || row[1] != strconv.FormatInt(n, 10) || !strings.Contains(row[0], c.names[v]) {
				t.Errorf("%s: village %s (%s) shows %v, want %d overdue", u, v, c.names[v], row, n)
			}
		}
		if asOf == nil && len(ids) == 0 {
			t.Error("no problem overdue today: the test needs some")
		}
	}

	// The devices not synced for three days, and the villages no device has
	// synced for, at the county, a township and a village.
	for _, tc := range []struct {
		area          string
		stale         []string
		staleVillages map[string]string
	}{
		{c.code, devs.stale, devs.staleVillages},
		{c.townships[1], devs.stale[2:], map[string]string{c.villages[3]: "1"}},
		// The township's tablet serves village 3 but counts at the township.
		{c.villages[3], nil, map[string]string{c.villages[3]: "1"}},
		{c.villages[0], devs.stale[:2], map[string]string{}},
	} {
		resp, page := get(t, hc, c.base+"/area/"+tc.area+"/devices?as_of=2020-01-01")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("devices page of %s: %s", tc.area, resp.Status)
		}
		var ids []string
		for _, m := range itemRows.FindAllStringSubmatch(page, -1) {
			ids = append(ids, m[2])
		}
		slices.Sort(ids)
		want := slices.Sorted(slices.Values(tc.stale))
		figure := valueIn(t, c.reportList(t, tc.area, "", nil), pad(tc.area), "devices_not_synced_3d").GetNumerator()
		if !slices.Equal(ids, want) || int64(len(ids)) != figure {
			t.Errorf("devices page of %s lists %v, want %v (figure %d)", tc.area, ids, want, figure)
		}
		got := map[string]string{}
		for _, m := range regexp.MustCompile(`<tr data-area="(\d{12})" data-devices="(\d+)">`).FindAllStringSubmatch(page, -1) {
			got[m[1]] = m[2]
		}
		if !maps.Equal(got, tc.staleVillages) {
			t.Errorf("devices page of %s: villages no device synced for %v, want %v", tc.area, got, tc.staleVillages)
		}
	}

	// Township staff: their township's lists, no other's.
	tc := browser(t)
	c.signIn(t, tc, "乡", c.addStaff(t, "乡", c.townships[0]), nil)
	if resp, _ := get(t, tc, c.base+"/area/"+c.townships[0]+"/list/contract_rate"); resp.StatusCode != http.StatusOK {
		t.Errorf("township staff reading their list: %s", resp.Status)
	}
	if resp, _ := get(t, tc, c.base+"/area/"+c.townships[0]+"/list/no_such_key"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a list of no indicator: %s, want 404", resp.Status)
	}
	for _, area := range []string{c.code, c.townships[1], c.villages[2]} {
		for _, page := range []string{"/list/contract_rate", "/list/contract_rate/csv", "/list/contract_rate/xlsx", "/xlsx", "/overdue", "/devices"} {
			if resp, body := get(t, tc, c.base+"/area/"+area+page); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "data-id") {
				t.Errorf("township staff reading %s%s: %s, want 403", area, page, resp.Status)
			}
		}
	}
}

func pad(p string) string { return p + strings.Repeat("0", 12-len(p)) }

// TestListDetailsInChinese: a list's reasons are worded in the page's
// language from the item's fields: the overdue follow-ups name the disease
// and the due day in Chinese, the devices their last sync, the open problems
// their status and deadline; in English the server's words stay.
func TestListDetailsInChinese(t *testing.T) {
	c := startCounty(t)
	c.addDevices(t)
	c.addOverdue(t)
	hc := browser(t)
	if resp := c.signIn(t, hc, "县", c.addStaff(t, "县", c.code), nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", resp.Status)
	}
	for _, tc := range []struct{ key, lang, want, not string }{
		{"devices_not_synced_3d", "zh", "同步", "last sync"},
		{"problems_overdue", "zh", "未整改，整改期限", "PROBLEM_STATUS_OPEN"},
		{"problems_overdue", "en", "PROBLEM_STATUS_OPEN, deadline", "整改期限"},
	} {
		_, page := get(t, hc, c.base+"/area/"+c.code+"/list/"+tc.key+"?lang="+tc.lang)
		if !strings.Contains(page, tc.want) || strings.Contains(page, tc.not) {
			t.Errorf("%s in %s: the page shows %q: %v, %q: %v", tc.key, tc.lang, tc.want, strings.Contains(page, tc.want), tc.not, strings.Contains(page, tc.not))
		}
	}
	// Follow-ups due, if the generated county has any.
	if v := valueIn(t, c.report(t, c.code, "township"), pad(c.code), "followups_due"); v.GetNumerator() > 0 {
		_, page := get(t, hc, c.base+"/area/"+c.code+"/list/followups_due?lang=zh")
		if !strings.Contains(page, "随访") || !strings.Contains(page, "到期") || strings.Contains(page, " due ") {
			t.Error("the follow-ups due are not worded in Chinese")
		}
	}
}
