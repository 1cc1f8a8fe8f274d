package survey

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Follow-up thresholds of the national basic public health service standard
// (国家基本公共卫生服务规范).
const (
	// UncontrolledSBP and UncontrolledDBP (mmHg): at or above either, hypertension
	// control is unsatisfactory (控制不满意).
	UncontrolledSBP = 140
	UncontrolledDBP = 90
	// UrgentSBP and UrgentDBP (mmHg): at or above either, the patient is referred
	// urgently (转诊).
	UrgentSBP = 180
	UrgentDBP = 110
	// UncontrolledGlucose (mmol/L, fasting): at or above it, diabetes control is
	// unsatisfactory.
	UncontrolledGlucose = 7.0
	// UrgentHighGlucose and UrgentLowGlucose (mmol/L): at or above the first, or at
	// or below the second, the patient is referred urgently.
	UrgentHighGlucose = 16.7
	UrgentLowGlucose  = 3.9
	// StandardManagementVisits is the fewest face-to-face follow-ups in the last 12
	// months for a patient to count as under standard management (规范管理).
	StandardManagementVisits = 4
)

// Assessment is what the follow-up standard says about one follow-up.
type Assessment struct {
	// Classification from the measured values: CONTROLLED or UNCONTROLLED, or the
	// doctor's ADVERSE_REACTION or COMPLICATION, which the measurements never
	// downgrade. For severe mental disorder, tuberculosis and other listed
	// diseases it is the doctor's.
	Classification fieldsyncv1.Classification
	// UrgentReferral is set when a value reaches an emergency threshold.
	UrgentReferral bool
	// NextDue is when the next follow-up is due at the latest: 14 calendar days
	// after an unsatisfactory, urgent or complicated follow-up, otherwise 3
	// months (AddMonths), counted from the follow-up's day in China Standard
	// Time. For severe mental disorder, tuberculosis and other listed diseases
	// the doctor sets it, and NextDue is the record's next_due_on (nil if
	// unset).
	NextDue *fieldsyncv1.Date
	// DoctorSchedule is set when the doctor's classification and next due date
	// stand (severe mental disorder, tuberculosis, other listed diseases).
	DoctorSchedule bool
	// Uncontrolled and Urgent name the measurement that made control
	// unsatisfactory and the referral urgent, e.g. "systolic 185 ≥ 180"; ""
	// when none did.
	Uncontrolled, Urgent string
}

// AssessFollowUp classifies a follow-up from its measurements and gives the
// date the next one is due. Blood-pressure emergencies count for every disease;
// blood-pressure control is judged for hypertension and glucose for diabetes.
// A classification the doctor made stricter than the measurements (UNCONTROLLED
// with normal values) shortens the schedule to 2 weeks as well.
func AssessFollowUp(f *fieldsyncv1.FollowUp) Assessment {
	var a Assessment
	sbp, dbp, glucose := f.SystolicMmhg, f.DiastolicMmhg, f.FastingGlucoseMmolL
	switch {
	case sbp != nil && *sbp >= UrgentSBP:
		a.Urgent = fmt.Sprintf("systolic %d ≥ %d", *sbp, UrgentSBP)
	case dbp != nil && *dbp >= UrgentDBP:
		a.Urgent = fmt.Sprintf("diastolic %d ≥ %d", *dbp, UrgentDBP)
	}
	bpHigh := ""
	switch {
	case a.Urgent != "":
		bpHigh = a.Urgent
	case sbp != nil && *sbp >= UncontrolledSBP:
		bpHigh = fmt.Sprintf("systolic %d ≥ %d", *sbp, UncontrolledSBP)
	case dbp != nil && *dbp >= UncontrolledDBP:
		bpHigh = fmt.Sprintf("diastolic %d ≥ %d", *dbp, UncontrolledDBP)
	}
	a.Classification = fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED
	switch f.GetDisease() {
	case fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION:
		a.Uncontrolled = bpHigh
	case fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES:
		switch {
		case a.Urgent != "":
		case glucose != nil && *glucose >= UrgentHighGlucose:
			a.Urgent = fmt.Sprintf("fasting glucose %g ≥ %g mmol/L", *glucose, UrgentHighGlucose)
		case glucose != nil && *glucose <= UrgentLowGlucose:
			a.Urgent = fmt.Sprintf("fasting glucose %g ≤ %g mmol/L", *glucose, UrgentLowGlucose)
		}
		switch {
		case a.Urgent != "":
			a.Uncontrolled = a.Urgent
		case glucose != nil && *glucose >= UncontrolledGlucose:
			a.Uncontrolled = fmt.Sprintf("fasting glucose %g ≥ %g mmol/L", *glucose, UncontrolledGlucose)
		}
	default:
		a.UrgentReferral = a.Urgent != ""
		a.Classification = f.GetClassification()
		a.NextDue = f.GetNextDueOn()
		a.DoctorSchedule = true
		return a
	}
	a.UrgentReferral = a.Urgent != ""
	if a.Uncontrolled != "" {
		a.Classification = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
	}
	switch c := f.GetClassification(); c {
	case fieldsyncv1.Classification_CLASSIFICATION_ADVERSE_REACTION, fieldsyncv1.Classification_CLASSIFICATION_COMPLICATION:
		a.Classification = c
	case fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED:
		a.Classification = c // the doctor may be stricter than the measurements
	}
	day := Today(f.GetFollowedUpAt().AsTime())
	if a.Classification == fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED && !a.UrgentReferral {
		a.NextDue = AddMonths(day, 3)
	} else {
		a.NextDue = AddDays(day, 14)
	}
	return a
}

// DefaultReferralFacility is where a derived urgent referral sends the patient
// when the doctor named no facility.
const DefaultReferralFacility = "上级医院 (higher-level hospital)"

// DeriveFollowUp returns a copy of f with the schedule the standard derives
// from its measurements applied as a floor: the classification at least as bad
// as the measurements say, an urgent referral where a value reaches an
// emergency threshold, and the next due date no later than the standard's. The
// doctor may be stricter (an earlier date, a referral, a worse
// classification), never laxer; for severe mental disorder, tuberculosis and
// other listed diseases the doctor's classification and date stand, and only a
// blood-pressure emergency adds the urgent referral. f is not modified.
func DeriveFollowUp(f *fieldsyncv1.FollowUp) *fieldsyncv1.FollowUp {
	out := proto.Clone(f).(*fieldsyncv1.FollowUp)
	if f.GetFollowedUpAt() == nil || f.GetFollowedUpAt().CheckValid() != nil {
		return out // Validate refuses it; nothing to derive from
	}
	a := AssessFollowUp(f)
	if a.UrgentReferral {
		if out.Referral == nil {
			out.Referral = &fieldsyncv1.Referral{}
		}
		out.Referral.Urgent = true
		if out.Referral.ToFacility == "" {
			out.Referral.ToFacility = DefaultReferralFacility
		}
		if out.Referral.Reason == "" {
			out.Referral.Reason = a.Urgent + ": urgent referral (紧急转诊)"
		}
	}
	if a.DoctorSchedule {
		return out
	}
	out.Classification = a.Classification
	if d := out.GetNextDueOn(); d == nil || CompareDates(d, a.NextDue) > 0 {
		out.NextDueOn = a.NextDue
	}
	return out
}

// followUpRules adds the field errors of a follow-up laxer than its own
// measurements: what DeriveFollowUp would have made stricter. Each message
// names the rule and the value.
func (c *checker) followUpRules(f *fieldsyncv1.FollowUp) {
	if f.GetFollowedUpAt() == nil || f.GetFollowedUpAt().CheckValid() != nil {
		return
	}
	a := AssessFollowUp(f)
	if a.UrgentReferral && !f.GetReferral().GetUrgent() {
		c.add("referral.urgent", reasonRule, "%s requires an urgent referral (紧急转诊)", a.Urgent)
	}
	if a.DoctorSchedule {
		return
	}
	if f.GetClassification() == fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED &&
		a.Classification == fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED {
		c.add("classification", reasonRule, "%s: control is unsatisfactory (控制不满意), not CONTROLLED", a.Uncontrolled)
	}
	if d := f.GetNextDueOn(); d != nil && CompareDates(d, a.NextDue) > 0 {
		why := "3 months after a satisfactory follow-up"
		switch {
		case a.Urgent != "":
			why = "within 2 weeks of an urgent referral (" + a.Urgent + ")"
		case a.Uncontrolled != "":
			why = "within 2 weeks when control is unsatisfactory (" + a.Uncontrolled + ")"
		case a.Classification != fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED:
			why = "within 2 weeks of a follow-up classified " + a.Classification.String()
		}
		c.add("next_due_on", reasonRule, "next_due_on %s is later than %s: the next follow-up is due %s",
			FormatDate(d), FormatDate(a.NextDue), why)
	}
}

// StandardManagement reports whether a patient's follow-ups for disease put them
// under standard management at at: at least StandardManagementVisits
// face-to-face (clinic or home) follow-ups in the 12 months ending at at,
// which are the days (China Standard Time) after the same date a year before
// (AddMonths, so 29 February's year starts after 28 February) up to at.
func StandardManagement(followUps []*fieldsyncv1.FollowUp, disease fieldsyncv1.ChronicDisease, at time.Time) bool {
	from := AddMonths(Today(at), -12)
	n := 0
	for _, f := range followUps {
		if f.GetDisease() != disease || f.GetMethod() == fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE ||
			f.GetMethod() == fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_UNSPECIFIED || f.GetFollowedUpAt() == nil {
			continue
		}
		if t := f.GetFollowedUpAt().AsTime(); CompareDates(Today(t), from) > 0 && !t.After(at) {
			n++
		}
	}
	return n >= StandardManagementVisits
}

// NextDue is the day the follow-up after f is due: f's next_due_on; for a
// follow-up without a valid one (which validation refuses) the day the
// national standard gives (AssessFollowUp), and failing that today, so that
// no patient drops off a due list.
func NextDue(f *fieldsyncv1.FollowUp, today *fieldsyncv1.Date) *fieldsyncv1.Date {
	if _, err := DateTime(f.GetNextDueOn()); err == nil {
		return f.GetNextDueOn()
	}
	if f.GetFollowedUpAt() != nil {
		if d := AssessFollowUp(f).NextDue; d != nil {
			if _, err := DateTime(d); err == nil {
				return d
			}
		}
	}
	return today
}
