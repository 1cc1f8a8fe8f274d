package survey

import (
	"time"

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
	// downgrade.
	Classification fieldsyncv1.Classification
	// UrgentReferral is set when a value reaches an emergency threshold.
	UrgentReferral bool
	// NextDue is when the next follow-up is due: 2 weeks after an unsatisfactory,
	// urgent or complicated follow-up, otherwise 3 months. For severe mental
	// disorder and tuberculosis the doctor sets it, and NextDue is the record's
	// next_due_on (nil if unset).
	NextDue *fieldsyncv1.Date
}

// AssessFollowUp classifies a follow-up from its measurements and gives the
// date the next one is due. Blood-pressure emergencies count for every disease;
// blood-pressure control is judged for hypertension and glucose for diabetes.
func AssessFollowUp(f *fieldsyncv1.FollowUp) Assessment {
	var a Assessment
	sbp, dbp, glucose := f.SystolicMmhg, f.DiastolicMmhg, f.FastingGlucoseMmolL
	bpUrgent := (sbp != nil && *sbp >= UrgentSBP) || (dbp != nil && *dbp >= UrgentDBP)
	bpHigh := (sbp != nil && *sbp >= UncontrolledSBP) || (dbp != nil && *dbp >= UncontrolledDBP)
	a.Classification = fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED
	switch f.GetDisease() {
	case fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION:
		a.UrgentReferral = bpUrgent
		if bpHigh {
			a.Classification = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
		}
	case fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES:
		a.UrgentReferral = bpUrgent || (glucose != nil && (*glucose >= UrgentHighGlucose || *glucose <= UrgentLowGlucose))
		if a.UrgentReferral || (glucose != nil && *glucose >= UncontrolledGlucose) {
			a.Classification = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
		}
	default:
		a.UrgentReferral = bpUrgent
		a.Classification = f.GetClassification()
		a.NextDue = f.GetNextDueOn()
		return a
	}
	switch c := f.GetClassification(); c {
	case fieldsyncv1.Classification_CLASSIFICATION_ADVERSE_REACTION, fieldsyncv1.Classification_CLASSIFICATION_COMPLICATION:
		a.Classification = c
	}
	at := f.GetFollowedUpAt().AsTime().In(ChinaTime)
	if a.Classification == fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED && !a.UrgentReferral {
		a.NextDue = Today(at.AddDate(0, 3, 0))
	} else {
		a.NextDue = Today(at.AddDate(0, 0, 14))
	}
	return a
}

// Overdue reports whether a follow-up due on due is overdue (逾期) on the
// calendar day of at: it is once the due day has passed.
func Overdue(due *fieldsyncv1.Date, at time.Time) bool {
	d, err := DateTime(due)
	if err != nil {
		return false
	}
	today, _ := DateTime(Today(at))
	return today.After(d)
}

// StandardManagement reports whether a patient's follow-ups for disease put them
// under standard management at at: at least StandardManagementVisits
// face-to-face (clinic or home) follow-ups in the 12 months ending at at.
func StandardManagement(followUps []*fieldsyncv1.FollowUp, disease fieldsyncv1.ChronicDisease, at time.Time) bool {
	from := at.AddDate(-1, 0, 0)
	n := 0
	for _, f := range followUps {
		if f.GetDisease() != disease || f.GetMethod() == fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE ||
			f.GetMethod() == fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_UNSPECIFIED || f.GetFollowedUpAt() == nil {
			continue
		}
		if t := f.GetFollowedUpAt().AsTime(); t.After(from) && !t.After(at) {
			n++
		}
	}
	return n >= StandardManagementVisits
}
