package countygen

import (
	"math"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

const (
	hypertension = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION
	diabetes     = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES
	mental       = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_SEVERE_MENTAL_DISORDER
	tuberculosis = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_PULMONARY_TUBERCULOSIS

	controlledClass   = fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED
	uncontrolledClass = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
)

// control is the state of a follow-up's measurements.
type control int

const (
	controlled   control = iota
	uncontrolled         // SBP ≥ 140 or DBP ≥ 90; glucose ≥ 7.0
	emergency            // SBP ≥ 180 or DBP ≥ 110; glucose ≥ 16.7 or ≤ 3.9
)

// patient is what lasts between one patient's follow-ups.
type patient struct {
	p       *Person
	doctor  *Worker
	remote  bool    // not at home: followed up mostly by phone
	pUncont float64 // chance a follow-up finds control unsatisfactory
	pEmerg  float64 // chance it finds an emergency
	weight  float64 // kg
	heart   int     // bpm
}

// followUpAll follows up every living, reachable patient with a key disease.
func (s *villageSurveys) followUpAll() {
	for _, h := range s.v.Households {
		for _, p := range h.Members {
			if !p.Alive() || p.Residency == fieldsyncv1.Residency_RESIDENCY_UNREACHABLE {
				continue
			}
			var pt *patient // drawn once per person, for the first key disease
			for _, c := range p.Conditions {
				if c.Disease == fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_OTHER_LISTED {
					continue
				}
				if pt == nil {
					pt = s.newPatient(p)
				}
				switch c.Disease {
				case hypertension, diabetes:
					s.chronicSeries(pt, c)
				case mental:
					s.mentalSeries(pt, c)
				case tuberculosis:
					s.tbSeries(pt, c)
				}
			}
		}
	}
}

// newPatient draws a patient's doctor and lasting traits. 25 % of patients are
// poorly controlled (50 % of their follow-ups unsatisfactory, 4 % emergencies),
// the others well (10 %, 0.3 %).
func (s *villageSurveys) newPatient(p *Person) *patient {
	x := s.x
	pt := &patient{
		p:       p,
		doctor:  pick(x, s.v.Serving()),
		remote:  p.Residency != fieldsyncv1.Residency_RESIDENCY_AT_HOME,
		pUncont: 0.10,
		pEmerg:  0.003,
		weight:  x.normal(62, 9, 40, 110),
		heart:   int(x.normal(76, 8, 55, 100)),
	}
	if p.Sex == female {
		pt.weight = x.normal(53, 8, 35, 100)
	}
	if x.chance(0.25) {
		pt.pUncont, pt.pEmerg = 0.5, 0.04
	}
	return pt
}

// chronicSeries follows up a hypertension or diabetes patient. The series
// runs from up to 90 days before the survey year (or soon after diagnosis), so
// that the year opens mid-schedule; surveys keeps only the follow-ups in the
// year. 95 % of patients at home are followed up 14 days early to 2 days late
// of each due date, 4 % 10 to 75 days late, and 1 % are lost after one to
// three follow-ups; patients away from home (30 %, 50 %, 20 %) are mostly
// followed up by phone, which is not face to face.
func (s *villageSurveys) chronicSeries(pt *patient, c Condition) {
	x := s.x
	weights := []float64{95, 4, 1} // on time, late, lost
	if pt.remote {
		weights = []float64{30, 50, 20}
	}
	habit, stopAfter := x.weighted(weights), x.between(1, 3)
	day := later(s.yearStart.Add(-days(x.between(0, 90))), c.DiagnosedOn.Add(days(x.between(3, 14))))
	for n := 0; ; n++ {
		at := x.workTime(day)
		if !at.Before(s.asOf) || habit == 2 && n >= stopAfter {
			return
		}
		due := s.chronicFollowUp(pt, c.Disease, at)
		next := due.Add(days(x.between(-14, 2)))
		if habit == 1 {
			next = due.Add(days(x.between(10, 75)))
		}
		day = later(next, dayOf(at).Add(days(7)))
	}
}

var (
	calmSymptoms         = []string{"无症状"}
	hypertensionSymptoms = []string{"头晕", "头痛", "心悸", "胸闷", "视物模糊", "下肢水肿"}
	diabetesSymptoms     = []string{"多饮", "多尿", "多食", "视力模糊", "手脚麻木", "乏力"}
)

// chronicFollowUp makes one hypertension or diabetes follow-up at at and
// returns its next due date. The classification, the urgent referral and the
// due date are survey.AssessFollowUp's: 2 weeks after an unsatisfactory,
// urgent, adverse-reaction or complicated follow-up, 3 months otherwise.
func (s *villageSurveys) chronicFollowUp(pt *patient, disease fieldsyncv1.ChronicDisease, at time.Time) time.Time {
	x := s.x
	state := controlled
	if r := x.r.Float64(); r < pt.pEmerg {
		state = emergency
	} else if r < pt.pEmerg+pt.pUncont {
		state = uncontrolled
	}
	f := s.newFollowUp(pt, disease, at)
	f.HeartRateBpm = proto.Int32(int32(pt.heart + x.between(-6, 6)))
	f.WeightKg = proto.Float64(math.Round((pt.weight+x.uniform(-1, 1))*10) / 10)
	symptoms := hypertensionSymptoms
	if disease == hypertension {
		sbp, dbp := bloodPressure(x, state)
		f.SystolicMmhg, f.DiastolicMmhg = proto.Int32(sbp), proto.Int32(dbp)
	} else {
		f.FastingGlucoseMmolL = proto.Float64(glucose(x, state))
		symptoms = diabetesSymptoms
	}
	f.Symptoms = calmSymptoms
	f.Adherence = fieldsyncv1.Adherence(1 + x.weighted([]float64{88, 10, 2}))
	f.Classification = controlledClass
	if state == controlled {
		s.sideEvents(f)
	} else {
		f.Symptoms = []string{pick(x, symptoms)}
		f.Adherence = fieldsyncv1.Adherence(1 + x.weighted([]float64{55, 30, 15}))
	}
	a := survey.AssessFollowUp(f)
	f.Classification, f.NextDueOn = a.Classification, a.NextDue
	if a.UrgentReferral {
		f.Referral = &fieldsyncv1.Referral{Urgent: true, ToFacility: s.g.cfg.CountyName + "人民医院", Reason: emergencyReason[disease]}
	}
	s.followUps = append(s.followUps, f)
	return time.Date(int(a.NextDue.Year), time.Month(a.NextDue.Month), int(a.NextDue.Day), 0, 0, 0, 0, cst)
}

var emergencyReason = map[fieldsyncv1.ChronicDisease]string{
	hypertension: "血压≥180/110mmHg，紧急转诊",
	diabetes:     "血糖≥16.7或≤3.9mmol/L，紧急转诊",
}

// sideEvents marks 1.5 % of controlled follow-ups as adverse reactions and 1 % as
// complications referred, not urgently, to the county hospital.
func (s *villageSurveys) sideEvents(f *fieldsyncv1.FollowUp) {
	switch s.x.weighted([]float64{97.5, 1.5, 1}) {
	case 1:
		f.AdverseReactions = proto.Bool(true)
		f.AdverseReactionNotes = pick(s.x, []string{"干咳", "踝部水肿", "头痛面红", "低血糖反应"})
		f.Classification = fieldsyncv1.Classification_CLASSIFICATION_ADVERSE_REACTION
	case 2:
		f.Classification = fieldsyncv1.Classification_CLASSIFICATION_COMPLICATION
		f.Referral = &fieldsyncv1.Referral{ToFacility: s.g.cfg.CountyName + "人民医院", Reason: "出现并发症，进一步检查"}
	}
}

// bloodPressure draws SBP and DBP for a state of control.
func bloodPressure(x *rng, state control) (sbp, dbp int32) {
	var s, d int
	switch state {
	case controlled:
		s = x.between(105, 139)
		d = x.between(62, min(89, s-25))
	case uncontrolled:
		if x.chance(0.75) {
			s = x.between(140, 179)
			d = x.between(78, min(109, s-30))
		} else {
			s, d = x.between(125, 139), x.between(90, 109)
		}
	default:
		if x.chance(0.7) {
			s, d = x.between(180, 220), x.between(90, 125)
		} else {
			s, d = x.between(160, 200), x.between(110, 125)
		}
	}
	return int32(s), int32(d)
}

// glucose draws a fasting glucose in mmol/L, to one decimal, for a state of
// control: 4.4–6.9 controlled, 7.0–16.6 unsatisfactory, 16.7–25.0 or 2.5–3.9 in
// an emergency.
func glucose(x *rng, state control) float64 {
	lo, hi := 4.4, 6.94
	switch {
	case state == uncontrolled:
		lo, hi = 7.0, 16.64
	case state == emergency && x.chance(0.75):
		lo, hi = 16.7, 25.0
	case state == emergency:
		lo, hi = 2.5, 3.94
	}
	return math.Round(x.uniform(lo, hi)*10) / 10
}

// newFollowUp starts a follow-up of pt at at: clinic or home face to face, or by
// phone (2 % at home; 85 % of patients away).
func (s *villageSurveys) newFollowUp(pt *patient, disease fieldsyncv1.ChronicDisease, at time.Time) *fieldsyncv1.FollowUp {
	x := s.x
	method := fieldsyncv1.FollowUpMethod(1 + x.weighted([]float64{54, 44, 2}))
	if pt.remote {
		method = fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME
		if x.chance(0.85) {
			method = fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE
		}
	}
	return &fieldsyncv1.FollowUp{
		Id:               x.uuid7(at),
		AreaCode:         pt.p.AreaCode,
		PersonId:         pt.p.ID,
		DoctorWorkerId:   pt.doctor.ID,
		Disease:          disease,
		FollowedUpAt:     timestamppb.New(at),
		Method:           method,
		AdverseReactions: proto.Bool(false),
	}
}

// finishFollowUp sets the next due date the doctor chooses for a severe mental
// disorder (2 weeks when unsatisfactory, else 3 months), records the follow-up
// and returns the date.
func (s *villageSurveys) finishFollowUp(f *fieldsyncv1.FollowUp, at time.Time) time.Time {
	due := dayOf(at).AddDate(0, 3, 0)
	if f.Classification == uncontrolledClass {
		due = dayOf(at).Add(days(14))
	}
	f.NextDueOn = protoDate(due)
	s.followUps = append(s.followUps, f)
	return due
}

// mentalSeries follows up a severe-mental-disorder patient about quarterly,
// from before the survey year as chronicSeries does. The doctor assesses a risk level 0–5 each time; level 2 or
// more is unsatisfactory (next in 2 weeks), 3 or more is referred urgently.
func (s *villageSurveys) mentalSeries(pt *patient, c Condition) {
	x := s.x
	day := later(s.yearStart.Add(-days(x.between(0, 90))), c.DiagnosedOn.Add(days(7)))
	for at := x.workTime(day); at.Before(s.asOf); at = x.workTime(day) {
		f := s.newFollowUp(pt, mental, at)
		level := x.weighted([]float64{70, 18, 8, 3, 0.7, 0.3})
		f.MentalRiskLevel = proto.Int32(int32(level))
		f.Adherence = fieldsyncv1.Adherence(1 + x.weighted([]float64{70, 20, 10}))
		f.Classification = controlledClass
		f.Symptoms = []string{"病情稳定"}
		if level >= 2 {
			f.Classification = uncontrolledClass
			f.Symptoms = []string{pick(x, []string{"失眠", "幻听", "自言自语", "情绪激动"})}
		}
		if level >= 3 {
			f.Referral = &fieldsyncv1.Referral{Urgent: true, ToFacility: s.g.cfg.CountyName + "人民医院精神科", Reason: "危险性评估3级及以上"}
		}
		day = s.finishFollowUp(f, at).Add(days(x.between(-5, 7)))
	}
}

// tbSeries follows up a tuberculosis patient from diagnosis: two weeks after,
// then monthly; intensive phase for the first 60 days, continuation to 180
// days, then one follow-up marks the treatment completed. 5 % record an adverse
// reaction.
func (s *villageSurveys) tbSeries(pt *patient, c Condition) {
	x := s.x
	day := c.DiagnosedOn.Add(days(x.between(10, 16)))
	for at := x.workTime(day); at.Before(s.asOf); at = x.workTime(day) {
		f := s.newFollowUp(pt, tuberculosis, at)
		f.WeightKg = proto.Float64(math.Round((pt.weight+x.uniform(-1.5, 1.5))*10) / 10)
		f.Adherence = fieldsyncv1.Adherence(1 + x.weighted([]float64{85, 12, 3}))
		f.Classification = controlledClass
		since := at.Sub(c.DiagnosedOn)
		f.TbPhase = fieldsyncv1.TbTreatmentPhase_TB_TREATMENT_PHASE_CONTINUATION
		switch {
		case since < days(60):
			f.TbPhase = fieldsyncv1.TbTreatmentPhase_TB_TREATMENT_PHASE_INTENSIVE
		case since >= days(180):
			f.TbPhase = fieldsyncv1.TbTreatmentPhase_TB_TREATMENT_PHASE_COMPLETED
		}
		if x.chance(0.05) {
			f.AdverseReactions = proto.Bool(true)
			f.AdverseReactionNotes = pick(x, []string{"胃肠道反应", "肝功能异常", "皮疹"})
			f.Classification = fieldsyncv1.Classification_CLASSIFICATION_ADVERSE_REACTION
		}
		next := dayOf(at).AddDate(0, 1, 0)
		if f.TbPhase == fieldsyncv1.TbTreatmentPhase_TB_TREATMENT_PHASE_COMPLETED {
			next = dayOf(at).AddDate(0, 3, 0)
		}
		f.NextDueOn = protoDate(next)
		s.followUps = append(s.followUps, f)
		if f.TbPhase == fieldsyncv1.TbTreatmentPhase_TB_TREATMENT_PHASE_COMPLETED {
			return
		}
		day = next.Add(days(x.between(-3, 3)))
	}
}
