package web

import (
	"fmt"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey"
)

// texts are a page's words in one language. The fields ending in F are
// formats for fmt.Sprintf.
type texts struct {
	Lang, Other, OtherName                 string
	Title, Name, Password, SignIn, SignOut string
	WrongPassword, TooMany, Internal, Back string
	NotFound, NotYours, NoKey              string
	AsOf, Campaign, ComputedAt, Show, CSV  string
	XLSX, Overdue, OverdueTitle, Devices   string
	Total                                  string
	County, Township, Village              string
	CountyStaff, TownshipStaff             string
	// The list pages.
	FigureF, ListedF, RateListF, CountListF    string
	PagesF, Prev, Next                         string
	ColArea, ColKind, ColName, ColMasked       string
	ColDetail, ColCount, None                  string
	Person, Household, Clinic, Problem, Device string
	// The devices page.
	DevicesNow, StaleVillages, StaleVillagesNote string
	NoDevice, AllStaleF                          string
	english                                      bool
}

var chinese = texts{
	Lang: "zh", Other: "en", OtherName: "English",
	Title: "卫生健康指标", Name: "用户名", Password: "密码", SignIn: "登录", SignOut: "退出",
	WrongPassword: "用户名或密码错误", TooMany: "尝试次数过多，请稍后再试", Internal: "服务器内部错误", Back: "返回",
	NotFound: "没有这个地区", NotYours: "这个地区不在您的权限范围内", NoKey: "没有这个指标",
	AsOf: "截至", Campaign: "走访批次", ComputedAt: "计算于", Show: "显示", CSV: "下载 CSV",
	XLSX: "下载 Excel", Overdue: "日通报", OverdueTitle: "日通报：逾期未整改问题", Devices: "3天未同步设备",
	Total: "合计", County: "县", Township: "乡镇", Village: "村",
	CountyStaff: "县级", TownshipStaff: "乡镇级",

	FigureF: "%s：%s", ListedF: "共 %d 项", RateListF: "未达到的单位（分母 − 分子）：%d", CountListF: "计入的单位：%d",
	PagesF: "第 %d 页，共 %d 页（每页 %d 项）；全部可下载 CSV 或 Excel",
	Prev:   "上一页",
	Next:   "下一页",

	ColArea: "地区", ColKind: "类别", ColName: "姓名/名称", ColMasked: "身份证号（脱敏）", ColDetail: "说明", ColCount: "数量",
	None: "没有", Person: "人员", Household: "户", Clinic: "卫生室", Problem: "问题", Device: "设备",

	DevicesNow:    "设备按现在计算，不按所选日期",
	StaleVillages: "3天内没有设备同步的村",
	StaleVillagesNote: "列出的村：没有为它服务的在用设备（本村的，或服务整个乡镇、全县的），或者为它服务的设备都在上面的名单里。" +
		"村指服务器有其记录或设备的村；已停用的设备和乡镇服务器不算。",
	NoDevice: "无设备", AllStaleF: "%d 台设备都3天以上未同步",
}

var english = texts{
	Lang: "en", Other: "zh", OtherName: "中文",
	Title: "Health indicators", Name: "Name", Password: "Password", SignIn: "Sign in", SignOut: "Sign out",
	WrongPassword: "Wrong name or password", TooMany: "Too many attempts: try again later", Internal: "Internal server error", Back: "Back",
	NotFound: "No such area", NotYours: "This area is not yours to see", NoKey: "No such indicator",
	AsOf: "As of", Campaign: "Campaign", ComputedAt: "computed", Show: "Show", CSV: "Download CSV",
	XLSX: "Download Excel", Overdue: "Daily report", OverdueTitle: "Daily report: problems overdue", Devices: "Devices not synced for 3 days",
	Total: "Total", County: "county", Township: "township", Village: "village",
	CountyStaff: "county staff", TownshipStaff: "township staff",

	FigureF: "%s: %s", ListedF: "%d listed", RateListF: "units not achieving it (denominator − numerator): %d", CountListF: "units counted: %d",
	PagesF: "Page %d of %d (%d a page); the CSV and Excel files hold all",
	Prev:   "Previous",
	Next:   "Next",

	ColArea: "Area", ColKind: "Kind", ColName: "Name", ColMasked: "ID number (masked)", ColDetail: "Detail", ColCount: "Count",
	None: "None", Person: "person", Household: "household", Clinic: "clinic", Problem: "problem", Device: "device",

	DevicesNow:    "Devices are counted as of now, whatever the day chosen",
	StaleVillages: "Villages no device has synced for in 3 days",
	StaleVillagesNote: "A village is listed when no active device serving it (the village's own, or one serving its whole township or county) " +
		"has synced in the last 3 days: it has none, or all of them are on the list above. " +
		"Villages: those the server holds records or devices for; revoked devices and township servers do not count.",
	NoDevice: "no device", AllStaleF: "%d device(s), none synced in 3 days",
	english: true,
}

// lang returns the texts of a lang parameter: English for "en", else
// Chinese.
func lang(code string) *texts {
	if code == "en" {
		return &english
	}
	return &chinese
}

func (t *texts) defName(d indicators.Def) string {
	if t.english {
		return d.English
	}
	return d.Name
}

func (t *texts) levelName(l indicators.Level) string {
	switch l {
	case indicators.County:
		return t.County
	case indicators.Township:
		return t.Township
	}
	return t.Village
}

func (t *texts) role(role string) string {
	if role == server.RoleCounty {
		return t.CountyStaff
	}
	return t.TownshipStaff
}

// kind names a listed unit's kind (IndicatorItem.kind).
func (t *texts) kind(k string) string {
	switch k {
	case "person":
		return t.Person
	case "household":
		return t.Household
	case "clinic":
		return t.Clinic
	case "problem":
		return t.Problem
	case "device":
		return t.Device
	}
	return k
}

// areaName is a row's name as the page shows it: its name, when the server
// has one, else its level and code.
func (t *texts) areaName(row *fieldsyncv1.IndicatorRow) string {
	if n := row.GetAreaName(); n != "" {
		return n
	}
	l, err := indicators.ParseLevel(row.GetLevel())
	if err != nil {
		l = indicators.Village
	}
	return t.levelName(l) + " " + prefixOf(row.GetAreaCode())
}

// Words for the details of a list's units, by the enum names the server sends.
var (
	zhDisease = map[string]string{
		"CHRONIC_DISEASE_HYPERTENSION": "高血压", "CHRONIC_DISEASE_TYPE2_DIABETES": "2型糖尿病",
	}
	zhStatus = map[string]string{
		"PROBLEM_STATUS_OPEN": "未整改", "PROBLEM_STATUS_RECTIFIED": "已整改待销号", "PROBLEM_STATUS_VERIFIED": "已销号",
		"RISK_FLAG_STATUS_OPEN": "待处理", "RISK_FLAG_STATUS_FORWARDED": "已转报", "RISK_FLAG_STATUS_CLOSED": "已关闭",
	}
)

// detail words why a unit is listed, in the page's language, from the
// item's fields; the server's English detail when the item says no more.
func (t *texts) detail(it *fieldsyncv1.IndicatorItem) string {
	if t.english {
		return it.GetDetail()
	}
	day := survey.FormatDate(it.GetDay())
	switch it.GetReason() {
	case "due":
		return fmt.Sprintf("%s随访 %s 到期", zhWord(zhDisease, it.GetDisease()), day)
	case "not_visited":
		return fmt.Sprintf("走访批次 %s 未走访", it.GetCampaign())
	case "problem":
		if it.GetDay() == nil {
			return zhWord(zhStatus, it.GetStatus())
		}
		return fmt.Sprintf("%s，整改期限 %s", zhWord(zhStatus, it.GetStatus()), day)
	case "flag":
		return "风险标记" + zhWord(zhStatus, it.GetStatus())
	case "device":
		if it.GetLastSync() == nil {
			return "从未同步"
		}
		return "最后同步 " + it.GetLastSync().AsTime().In(survey.ChinaTime).Format("2006-01-02 15:04")
	case "clinic":
		return "最近一次检查未达标"
	}
	if it.GetDisease() != "" {
		return zhWord(zhDisease, it.GetDisease())
	}
	return ""
}

// zhWord is the Chinese word of an enum name, or the name itself.
func zhWord(words map[string]string, name string) string {
	if w, ok := words[name]; ok {
		return w
	}
	return name
}
