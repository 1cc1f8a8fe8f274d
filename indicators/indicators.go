// Package indicators computes the county's indicators (指标) per village,
// township and county, as of a day, from the merged states of the records a
// server holds: what the bureau reads (contract and service rates, standard
// management of hypertension and diabetes, overdue follow-ups, visit coverage,
// clinic compliance, the problem ledger, the three batches, ...).
//
// Every indicator is a pair of integers per area (a numerator and a
// denominator for a rate, a count for a count), so a township's row is the
// sum of its villages' and a county's the sum of its townships': a rate is
// computed only at the end, never averaged. Each unit (a person, household,
// clinic, problem, flagged person or device) counts in the village its record
// names now, so a household moved by the county counts once, where it is.
//
// The definitions are in the README ("Indicators"), next to the seed
// documents' wording; Keys lists them.
package indicators

import (
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/fieldsync/fieldsync/survey"
)

// Key names an indicator; the keys are stable (reports, CSV columns, URLs).
type Key string

// Kind says how an indicator reads: a rate (numerator over denominator) or
// a count.
type Kind uint8

// The kinds of indicator.
const (
	Rate Kind = iota + 1
	Count
)

// Def describes an indicator.
type Def struct {
	Key  Key
	Kind Kind
	// Name is the indicator's Chinese name, as the seed documents write it.
	Name string
	// English is its name in English.
	English string
}

// The indicators, in report order.
var defs = []Def{
	{"contract_rate", Rate, "签约率", "family-doctor contract rate"},
	{"service_rate", Rate, "履约率", "contracted services delivered on time"},
	{"health_record_rate", Rate, "健康档案建档率", "health record coverage"},
	{"health_check_rate", Rate, "健康体检覆盖率", "free health check coverage (aged 7-64)"},
	{"plan_rate", Rate, "一人一策覆盖率", "per-person plan coverage of chronic patients"},
	{"htn_standard_mgmt_rate", Rate, "高血压规范管理率", "hypertension standard management"},
	{"dm_standard_mgmt_rate", Rate, "糖尿病规范管理率", "type 2 diabetes standard management"},
	{"followups_due", Count, "到期随访", "follow-ups due (overdue included)"},
	{"followups_overdue", Count, "逾期随访", "follow-ups overdue"},
	{"visit_coverage", Rate, "入户走访覆盖率", "households visited in the campaign"},
	{"clinic_compliance", Rate, "村卫生室达标率", "clinics meeting every standard"},
	{"policy_awareness_rate", Rate, "政策知晓率", "policy awareness"},
	{"satisfaction_rate", Rate, "满意度", "satisfaction with care"},
	{"problems_open", Count, "未整改问题", "problems open"},
	{"problems_overdue", Count, "逾期未整改问题", "problems overdue"},
	{"problems_closed", Count, "已销号问题", "problems verified and closed"},
	{"critical_problems_open", Count, "未整改颠覆性问题", "critical problems open"},
	{"risk_flagged", Count, "返贫风险监测对象", "people flagged for return-to-poverty risk"},
	{"devices_not_synced_3d", Count, "3天未同步设备", "devices not synced for 3 days"},
	{"major_illness_treated_rate", Rate, "大病集中救治率", "major illnesses treated centrally"},
	{"chronic_contract_mgmt_rate", Rate, "慢病签约管理率", "chronic patients under contracted management"},
	{"severe_illness_safety_net_rate", Rate, "重病兜底保障率", "severe illnesses under the safety net"},
}

// Sub-keys: one per clinic checklist item and per policy-awareness question.
var subDefs = []Def{
	{"clinic_compliance.room.consultation", Rate, "诊断室分开", "consultation room separate"},
	{"clinic_compliance.room.treatment", Rate, "治疗室分开", "treatment room separate"},
	{"clinic_compliance.room.public_health", Rate, "公共卫生室分开", "public-health room separate"},
	{"clinic_compliance.room.pharmacy", Rate, "药房分开", "pharmacy separate"},
	{"clinic_compliance.floor_area", Rate, "面积达标", "floor area to standard"},
	{"clinic_compliance.doctor", Rate, "有合格村医", "licensed or covering doctor"},
	{"clinic_compliance.equipment.stethoscope", Rate, "有听诊器", "stethoscope"},
	{"clinic_compliance.equipment.thermometer", Rate, "有体温表", "thermometer"},
	{"clinic_compliance.equipment.sphygmomanometer", Rate, "有血压计", "sphygmomanometer"},
	{"clinic_compliance.equipment.examination_bed", Rate, "有诊查床", "examination bed"},
	{"clinic_compliance.drugs.essential_kinds", Rate, "基本药物种类达标", "essential medicines to standard"},
	{"clinic_compliance.drugs.expired", Rate, "无过期药品", "no expired medicines"},
	{"clinic_compliance.drugs.supplements", Rate, "无保健品", "no health supplements"},
	{"clinic_compliance.drugs.off_list", Rate, "无目录外药品", "no off-list medicines"},
	{"clinic_compliance.running.water", Rate, "通水", "running water"},
	{"clinic_compliance.running.electricity", Rate, "通电", "electricity"},
	{"clinic_compliance.running.heating", Rate, "有取暖", "heating"},
	{"clinic_compliance.running.funds", Rate, "有运行经费", "operating funds"},
	{"policy_awareness_rate.contracted_doctor", Rate, "知晓签约医生", "knows the contracted doctor"},
	{"policy_awareness_rate.hospital_doctor", Rate, "知晓二级医院医生", "knows the secondary-hospital doctor"},
	{"policy_awareness_rate.kanbing_120", Rate, "能表达\"看病120\"", "can explain 看病120"},
	{"policy_awareness_rate.fuwu_111", Rate, "能表达\"服务111\"", "can explain 服务111"},
}

// Keys returns the definitions of the indicators, then of their sub-keys, in
// report order.
func Keys() []Def { return slices.Concat(defs, subDefs) }

// Lookup returns the definition of key.
func Lookup(key Key) (Def, bool) {
	for _, d := range Keys() {
		if d.Key == key {
			return d, true
		}
	}
	return Def{}, false
}

// Value is an indicator's figure for an area: Num over Den for a rate, Num for
// a count (Den is then 0).
type Value struct {
	Num, Den int64
}

// Level is the level of an area: county, township or village (survey's
// levels of the division codes).
type Level = survey.AreaLevel

// The levels, from the top.
const (
	County   = survey.AreaCounty
	Township = survey.AreaTownship
	Village  = survey.AreaVillage
)

// ParseLevel reads "county", "township" or "village".
func ParseLevel(s string) (Level, error) {
	for _, l := range []Level{County, Township, Village} {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("level %q: want county, township or village", s)
}

// areaOf returns the 12-digit code of the area at level l containing village
// (a 12-digit code): its county's (6 digits and zeros), township's (9 digits
// and zeros) or itself.
func areaOf(village string, l Level) string {
	switch l {
	case County:
		return village[:6] + "000000"
	case Township:
		return village[:9] + "000"
	}
	return village
}

// levelOf is the level of a 12-digit area code (AreaInvalid for another).
func levelOf(code string) Level {
	l, _ := survey.ParseAreaCode(code)
	return l
}

// Row is the indicators of one area.
type Row struct {
	// Area is the area's 12-digit code (a county's or township's padded with
	// zeros).
	Area  string
	Level Level
	// Values holds every key; a rate with nothing to count has Den 0.
	Values map[Key]Value
}

// Report is the indicators of an area and the areas below it, as of a day.
type Report struct {
	// AsOf is the day, midnight China Standard Time.
	AsOf time.Time
	// Campaign is the campaign visit_coverage counts ("" when no visit names
	// one by AsOf).
	Campaign string
	// HealthCheckFrom is the first day of health_check_rate's period.
	HealthCheckFrom time.Time
	// ComputedAt is when the report was computed (devices_not_synced_3d is
	// as of then).
	ComputedAt time.Time
	// Rows: the area asked for first, then the areas below it down to the
	// level asked for, each level in code order.
	Rows []Row
	// Items are the units behind Options.List, by area, then name and id.
	Items []Item
}

// Percent formats a rate as a percentage with two decimals, rounded half up
// in exact arithmetic (6118/6666 is "91.78"), or "" when den is 0.
func Percent(num, den int64) string { return decimal(num, den, 100, 2) }

// Fraction formats a rate as a decimal fraction with six places ("0.917792"),
// rounded half up, or "" when den is 0: the CSV's value column.
func Fraction(num, den int64) string { return decimal(num, den, 1, 6) }

// decimal is scale·num/den with places decimals, rounded half up in exact
// arithmetic, or "" when den is 0.
func decimal(num, den, scale int64, places int) string {
	if den == 0 {
		return ""
	}
	unit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil)
	q := new(big.Int).Mul(big.NewInt(num), big.NewInt(2*scale))
	q.Mul(q, unit)
	q.Add(q, big.NewInt(den))
	q.Quo(q, new(big.Int).Mul(big.NewInt(den), big.NewInt(2)))
	s := q.String()
	for len(s) <= places {
		s = "0" + s
	}
	return s[:len(s)-places] + "." + s[len(s)-places:]
}
