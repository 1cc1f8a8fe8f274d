package countygen

import (
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Age bands for the prevalence tables: under 18, 18–34, 35–44, 45–54, 55–64,
// 65–74, 75 and over.
var bandStarts = []int{0, 18, 35, 45, 55, 65, 75}

func band(age int) int {
	b := 0
	for i, s := range bandStarts {
		if age >= s {
			b = i
		}
	}
	return b
}

// Prevalence of diagnosed, managed disease by age band (see doc.go).
var (
	hypertensionRate = []float64{0, 0.01, 0.07, 0.15, 0.25, 0.32, 0.36}
	diabetesRate     = []float64{0, 0.003, 0.02, 0.05, 0.08, 0.09, 0.09}
	otherListedRate  = []float64{0, 0.008, 0.01, 0.03, 0.03, 0.06, 0.06}
)

const (
	severeMentalRate = 0.006  // of people 15 and over
	tuberculosisRate = 0.0012 // of people 15 and over
	childMajorRate   = 0.001  // major illness, under 15
	adultMajorRate   = 0.005  // major illness, 40 and over
)

// otherListed are diseases of the province's outpatient chronic-disease list
// (门诊慢病) other than the four key ones.
var otherListed = []string{
	"冠心病", "慢性阻塞性肺疾病", "类风湿性关节炎", "脑卒中后遗症", "慢性心力衰竭",
	"慢性肾功能不全", "帕金森病", "癫痫", "慢性病毒性肝炎", "肝硬化",
	"甲状腺功能亢进症", "系统性红斑狼疮", "再生障碍性贫血", "强直性脊柱炎", "支气管哮喘",
}

// Major illnesses under special treatment (大病专项救治).
var (
	childMajor  = []string{"儿童急性淋巴细胞白血病", "儿童先天性心脏病"}
	adultMajor  = []string{"食管癌", "胃癌", "结肠癌", "直肠癌", "肺癌", "肝癌", "终末期肾病"}
	womenMajor  = []string{"宫颈癌", "乳腺癌"}
	keyDiseases = []fieldsyncv1.ChronicDisease{
		fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION,
		fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES,
		fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_SEVERE_MENTAL_DISORDER,
		fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_PULMONARY_TUBERCULOSIS,
	}
)

// health draws the person's conditions, residency and disability.
func (g *Generator) health(x *rng, p *Person) {
	age := p.Age(g.cfg.AsOf)
	b := band(age)
	rates := []float64{hypertensionRate[b], diabetesRate[b], 0, 0}
	if age >= 15 {
		rates[2], rates[3] = severeMentalRate, tuberculosisRate
	}
	for i, d := range keyDiseases {
		if !x.chance(rates[i]) {
			continue
		}
		c := Condition{Disease: d, DiagnosedOn: g.diagnosed(x, p.BirthDate, 30, 15)}
		switch d {
		case fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_SEVERE_MENTAL_DISORDER:
			c.DiagnosedOn = g.diagnosed(x, p.BirthDate, 15, 20)
		case fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_PULMONARY_TUBERCULOSIS:
			c.DiagnosedOn = dayOf(x.timeBetween(g.cfg.AsOf.Add(-days(400)), g.cfg.AsOf.Add(-days(20))))
		}
		p.Conditions = append(p.Conditions, c)
	}
	if x.chance(otherListedRate[b]) {
		p.Conditions = append(p.Conditions, Condition{
			Disease:     fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_OTHER_LISTED,
			OtherName:   pick(x, otherListed),
			DiagnosedOn: g.diagnosed(x, p.BirthDate, 18, 10),
		})
	}
	if name := majorIllness(x, age, p.Sex); name != "" {
		p.Conditions = append(p.Conditions, Condition{
			Disease:      fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_OTHER_LISTED,
			OtherName:    name,
			MajorIllness: true,
			DiagnosedOn:  g.diagnosed(x, p.BirthDate, 0, 3),
		})
	}
	p.Residency = residency(x, age, p.Relation, p.MajorIllness())
	p.Disabled = x.chance([]float64{0.015, 0.03, 0.03, 0.03, 0.03, 0.07, 0.07}[b])
}

// majorIllness returns the name of a major illness under special treatment, or
// "" for most people.
func majorIllness(x *rng, age int, sex fieldsyncv1.Sex) string {
	switch {
	case age < 15 && x.chance(childMajorRate):
		return pick(x, childMajor)
	case age >= 40 && x.chance(adultMajorRate):
		if sex == female && x.chance(0.3) {
			return pick(x, womenMajor)
		}
		return pick(x, adultMajor)
	}
	return ""
}

// diagnosed returns a diagnosis date at least minAge years after birth, within
// the last `within` years, and at least 30 days before AsOf (or any day of life
// for a person too young for that window).
func (g *Generator) diagnosed(x *rng, birth time.Time, minAge, within int) time.Time {
	lo := birth.AddDate(minAge, 0, 0)
	if earliest := g.cfg.AsOf.AddDate(-within, 0, 0); earliest.After(lo) {
		lo = earliest
	}
	hi := g.cfg.AsOf.Add(-days(30))
	if !lo.Before(hi) {
		lo, hi = birth, g.cfg.AsOf
	}
	return dayOf(x.timeBetween(lo, hi))
}

// residency draws where a person lives now. The head of a household is never
// deceased; people under major-illness treatment are in hospital one time in
// five.
func residency(x *rng, age int, rel Relation, major bool) fieldsyncv1.Residency {
	pHospital := 0.003
	if major {
		pHospital = 0.2
	}
	switch {
	case rel != RelationHead && (age >= 70 && x.chance(0.025) || age >= 40 && age < 70 && x.chance(0.002)):
		return fieldsyncv1.Residency_RESIDENCY_DECEASED
	case age >= 1 && x.chance(pHospital):
		return fieldsyncv1.Residency_RESIDENCY_IN_HOSPITAL
	case age >= 65 && x.chance(0.02):
		return fieldsyncv1.Residency_RESIDENCY_IN_CARE
	case age >= 18 && age <= 60 && x.chance(0.005):
		return fieldsyncv1.Residency_RESIDENCY_UNREACHABLE
	case age >= 7 && age <= 12 && x.chance(0.1),
		age >= 13 && age <= 18 && x.chance(0.55),
		age >= 19 && age <= 22 && x.chance(0.35):
		return fieldsyncv1.Residency_RESIDENCY_AT_SCHOOL
	case age >= 18 && age <= 55 && x.chance(0.3):
		return fieldsyncv1.Residency_RESIDENCY_WORKING_AWAY
	}
	return fieldsyncv1.Residency_RESIDENCY_AT_HOME
}

// away reports whether a residency keeps the person out of the county most of
// the year, which excuses a missing service-111 item with a certificate.
func away(r fieldsyncv1.Residency) bool {
	return r == fieldsyncv1.Residency_RESIDENCY_WORKING_AWAY || r == fieldsyncv1.Residency_RESIDENCY_UNREACHABLE
}

// service111 draws the contract, health record, per-person plan and handbook.
// Registered people at home have each item 97–99 % of the time, those away
// less; ordinary households less again. A missing item is explained by a
// village committee certificate for 80 % of people away, 15 % of the others.
func (g *Generator) service111(x *rng, v *Village, h *Household, p *Person) {
	reg, gone := h.Registered(), away(p.Residency)
	pContract, pRecord, pPlan := 0.99, 0.98, 0.97
	switch {
	case reg && gone:
		pContract, pRecord, pPlan = 0.92, 0.92, 0.88
	case !reg && gone:
		pContract, pRecord, pPlan = 0.55, 0.80, 0.85
	case !reg:
		pContract, pRecord, pPlan = 0.75, 0.90, 0.95
	}
	if p.Contract = x.chance(pContract); p.Contract {
		p.ContractDoctorID = pick(x, v.Serving()).ID
		lo, hi := g.cfg.AsOf.Add(-days(330)), g.cfg.AsOf.Add(-days(240))
		if p.BirthDate.After(lo) {
			lo, hi = p.BirthDate, g.cfg.AsOf // signed for a newborn
		}
		p.ContractSignedOn = dayOf(x.timeBetween(lo, hi))
	}
	p.HealthRecord = x.chance(pRecord)
	if p.Chronic() {
		p.OnePersonPlan = x.chance(pPlan)
		p.ChronicHandbook = x.chance(0.88)
	}
	if !p.Contract || !p.HealthRecord || p.Chronic() && !p.OnePersonPlan {
		p.Certificate = x.chance(0.15)
		if gone {
			p.Certificate = x.chance(0.8)
		}
	}
}
