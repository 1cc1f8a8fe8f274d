package web

import (
	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// texts are a page's words in one language.
type texts struct {
	Lang, Other, OtherName                 string
	Title, Name, Password, SignIn, SignOut string
	WrongPassword, TooMany, Internal, Back string
	NotFound, NotYours                     string
	AsOf, Campaign, ComputedAt, Show, CSV  string
	Total                                  string
	County, Township, Village              string
	CountyStaff, TownshipStaff             string
	english                                bool
}

var chinese = texts{
	Lang: "zh", Other: "en", OtherName: "English",
	Title: "卫生健康指标", Name: "用户名", Password: "密码", SignIn: "登录", SignOut: "退出",
	WrongPassword: "用户名或密码错误", TooMany: "尝试次数过多，请稍后再试", Internal: "服务器内部错误", Back: "返回",
	NotFound: "没有这个地区", NotYours: "这个地区不在您的权限范围内",
	AsOf: "截至", Campaign: "走访批次", ComputedAt: "计算于", Show: "显示", CSV: "下载 CSV",
	Total: "合计", County: "县", Township: "乡镇", Village: "村",
	CountyStaff: "县级", TownshipStaff: "乡镇级",
}

var english = texts{
	Lang: "en", Other: "zh", OtherName: "中文",
	Title: "Health indicators", Name: "Name", Password: "Password", SignIn: "Sign in", SignOut: "Sign out",
	WrongPassword: "Wrong name or password", TooMany: "Too many attempts: try again later", Internal: "Internal server error", Back: "Back",
	NotFound: "No such area", NotYours: "This area is not yours to see",
	AsOf: "As of", Campaign: "Campaign", ComputedAt: "computed", Show: "Show", CSV: "Download CSV",
	Total: "Total", County: "county", Township: "township", Village: "village",
	CountyStaff: "county staff", TownshipStaff: "township staff",
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
