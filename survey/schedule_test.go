package survey_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

const (
	controlled   = fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED
	uncontrolled = fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED
	hypertension = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION
	diabetes     = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES
)

// followedUp is the example follow-up's date; 2 weeks and 3 months after it.
var (
	twoWeeks    = &fieldsyncv1.Date{Year: 2026, Month: 12, Day: 4}
	threeMonths = &fieldsyncv1.Date{Year: 2027, Month: 2, Day: 20}
)

func TestAssessHypertension(t *testing.T) {
	for _, tc := range []struct {
		sbp, dbp int32
		want     fieldsyncv1.Classification
		urgent   bool
	}{
		{139, 80, controlled, false}, {140, 80, uncontrolled, false}, {141, 80, uncontrolled, false},
		{130, 89, controlled, false}, {130, 90, uncontrolled, false}, {130, 91, uncontrolled, false},
		{179, 100, uncontrolled, false}, {180, 100, uncontrolled, true}, {181, 100, uncontrolled, true},
		{170, 109, uncontrolled, false}, {170, 110, uncontrolled, true}, {170, 111, uncontrolled, true},
	} {
		u := exampleFollowUp()
		u.SystolicMmhg, u.DiastolicMmhg = proto.Int32(tc.sbp), proto.Int32(tc.dbp)
		a := survey.AssessFollowUp(u)
		wantDue := threeMonths
		if tc.want != controlled || tc.urgent {
			wantDue = twoWeeks
		}
		if a.Classification != tc.want || a.UrgentReferral != tc.urgent || !proto.Equal(a.NextDue, wantDue) {
			t.Errorf("%d/%d mmHg: got %v urgent=%v due %v; want %v urgent=%v due %v",
				tc.sbp, tc.dbp, a.Classification, a.UrgentReferral, a.NextDue, tc.want, tc.urgent, wantDue)
		}
	}
}

func TestAssessDiabetes(t *testing.T) {
	for _, tc := range []struct {
		glucose float64
		want    fieldsyncv1.Classification
		urgent  bool
	}{
		{3.8, uncontrolled, true}, {3.9, uncontrolled, true}, {4.0, controlled, false},
		{6.9, controlled, false}, {7.0, uncontrolled, false}, {7.1, uncontrolled, false},
		{16.6, uncontrolled, false}, {16.7, uncontrolled, true}, {16.8, uncontrolled, true},
	} {
		u := exampleFollowUp()
		u.Disease = diabetes
		u.SystolicMmhg, u.DiastolicMmhg = proto.Int32(150), proto.Int32(95) // not judged for diabetes control
		u.FastingGlucoseMmolL = proto.Float64(tc.glucose)
		a := survey.AssessFollowUp(u)
		wantDue := threeMonths
		if tc.want != controlled {
			wantDue = twoWeeks
		}
		if a.Classification != tc.want || a.UrgentReferral != tc.urgent || !proto.Equal(a.NextDue, wantDue) {
			t.Errorf("glucose %.1f: got %v urgent=%v due %v; want %v urgent=%v due %v",
				tc.glucose, a.Classification, a.UrgentReferral, a.NextDue, tc.want, tc.urgent, wantDue)
		}
	}
	u := exampleFollowUp()
	u.Disease = diabetes
	u.SystolicMmhg, u.DiastolicMmhg = proto.Int32(182), proto.Int32(100)
	u.FastingGlucoseMmolL = proto.Float64(6.0)
	if a := survey.AssessFollowUp(u); !a.UrgentReferral || !proto.Equal(a.NextDue, twoWeeks) {
		t.Errorf("diabetic at 182 mmHg: got urgent=%v due %v, want urgent referral within 2 weeks", a.UrgentReferral, a.NextDue)
	}
}

func TestAssessKeepsDoctorsComplication(t *testing.T) {
	u := exampleFollowUp()
	u.Classification = fieldsyncv1.Classification_CLASSIFICATION_COMPLICATION
	if a := survey.AssessFollowUp(u); a.Classification != u.Classification || !proto.Equal(a.NextDue, twoWeeks) {
		t.Errorf("complication with controlled pressure: got %v due %v, want complication due in 2 weeks", a.Classification, a.NextDue)
	}
	u = exampleFollowUp()
	u.Disease = fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_SEVERE_MENTAL_DISORDER
	u.NextDueOn = &fieldsyncv1.Date{Year: 2026, Month: 12, Day: 31}
	if a := survey.AssessFollowUp(u); !proto.Equal(a.NextDue, u.NextDueOn) {
		t.Errorf("severe mental disorder: due %v, want the doctor's date %v", a.NextDue, u.NextDueOn)
	}
}

func TestProblemOverdue(t *testing.T) {
	p := exampleProblem() // deadline 2026-12-20, open
	for _, tc := range []struct {
		status fieldsyncv1.ProblemStatus
		at     time.Time
		days   int
		want   bool
	}{
		{fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, time.Date(2026, 12, 20, 23, 59, 0, 0, survey.ChinaTime), 0, false},
		{fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, time.Date(2026, 12, 21, 0, 0, 0, 0, survey.ChinaTime), 1, true},
		// 2026-12-20 17:00 UTC is already the 21st in China.
		{fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, time.Date(2026, 12, 20, 17, 0, 0, 0, time.UTC), 1, true},
		{fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, time.Date(2027, 1, 20, 9, 0, 0, 0, survey.ChinaTime), 31, true},
		{fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, time.Date(2027, 1, 20, 9, 0, 0, 0, survey.ChinaTime), 0, false},
		{fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, time.Date(2027, 1, 20, 9, 0, 0, 0, survey.ChinaTime), 0, false},
	} {
		p.Status = tc.status
		if days, got := survey.ProblemOverdue(p, survey.Today(tc.at)); got != tc.want || days != tc.days {
			t.Errorf("%v on %v: overdue %v by %d days, want %v by %d", tc.status, tc.at, got, days, tc.want, tc.days)
		}
	}
	p.Deadline = nil
	if _, got := survey.ProblemOverdue(p, survey.Today(time.Now())); got {
		t.Error("a problem without a deadline is overdue")
	}
}

func TestStandardManagement(t *testing.T) {
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, survey.ChinaTime)
	visit := func(daysAgo int, method fieldsyncv1.FollowUpMethod) *fieldsyncv1.FollowUp {
		u := exampleFollowUp()
		u.Method = method
		u.FollowedUpAt = ts(at.AddDate(0, 0, -daysAgo))
		return u
	}
	home, phone := fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME, fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE
	three := []*fieldsyncv1.FollowUp{visit(10, home), visit(100, home), visit(190, home)}
	for _, tc := range []struct {
		name string
		fus  []*fieldsyncv1.FollowUp
		want bool
	}{
		{"three", three, false},
		{"four", append(three[:3:3], visit(280, home)), true},
		{"five", append(three[:3:3], visit(280, home), visit(300, home)), true},
		{"fourth by phone", append(three[:3:3], visit(280, phone)), false},
		{"fourth 366 days ago", append(three[:3:3], visit(366, home)), false},
		{"fourth 364 days ago", append(three[:3:3], visit(364, home)), true},
	} {
		if got := survey.StandardManagement(tc.fus, hypertension, at); got != tc.want {
			t.Errorf("%s: StandardManagement = %v, want %v", tc.name, got, tc.want)
		}
	}
	if survey.StandardManagement(append(three[:3:3], visit(280, home)), diabetes, at) {
		t.Error("hypertension follow-ups counted towards diabetes management")
	}
	// The window is made of days: a follow-up later on the same date a year
	// before is outside it, one early the next day inside; on 29 February
	// the year starts after 28 February.
	onDay := func(y int, m time.Month, d, hour int) *fieldsyncv1.FollowUp {
		u := exampleFollowUp()
		u.Method = home
		u.FollowedUpAt = ts(time.Date(y, m, d, hour, 0, 0, 0, survey.ChinaTime))
		return u
	}
	if survey.StandardManagement(append(three[:3:3], onDay(2025, 11, 20, 23)), hypertension, at) {
		t.Error("a follow-up on 2025-11-20 counted in the 12 months ending 2026-11-20")
	}
	if !survey.StandardManagement(append(three[:3:3], onDay(2025, 11, 21, 0)), hypertension, at) {
		t.Error("a follow-up on 2025-11-21 not counted in the 12 months ending 2026-11-20")
	}
	leap := time.Date(2028, 2, 29, 18, 0, 0, 0, survey.ChinaTime)
	recent := []*fieldsyncv1.FollowUp{onDay(2028, 2, 1, 9), onDay(2027, 11, 1, 9), onDay(2027, 8, 1, 9)}
	if survey.StandardManagement(append(recent, onDay(2027, 2, 28, 9)), hypertension, leap) {
		t.Error("a follow-up on 2027-02-28 counted in the 12 months ending 2028-02-29")
	}
	if !survey.StandardManagement(append(recent, onDay(2027, 3, 1, 9)), hypertension, leap) {
		t.Error("a follow-up on 2027-03-01 not counted in the 12 months ending 2028-02-29")
	}
}
