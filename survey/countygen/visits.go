package countygen

import (
	"cmp"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// villageSurveys makes the surveys of one village and what they raise, from the
// village's own random stream.
type villageSurveys struct {
	g         *Generator
	v         *Village
	x         *rng
	asOf      time.Time
	yearStart time.Time // midnight 365 days before AsOf's day: the survey year
	campStart time.Time // midnight CampaignDays before AsOf's day: the campaign

	visits    []*fieldsyncv1.HouseholdVisit
	audits    []*fieldsyncv1.ClinicAudit
	followUps []*fieldsyncv1.FollowUp
	problems  []*fieldsyncv1.Problem
	flags     []*fieldsyncv1.RiskFlag
}

// surveys makes the village's surveys and passes them to fn, each kind in time
// order.
func (g *Generator) surveys(v *Village, fn func(*fieldsyncv1.Record) error) error {
	s := &villageSurveys{
		g:         g,
		v:         v,
		x:         newRNG(g.cfg.Seed, streamSurveys|uint64(v.Index)),
		asOf:      g.cfg.AsOf,
		yearStart: dayOf(g.cfg.AsOf).Add(-days(365)),
		campStart: dayOf(g.cfg.AsOf).Add(-days(g.cfg.CampaignDays)),
	}
	s.visitAll()
	s.auditClinic()
	s.followUpAll()
	s.followUps = slices.DeleteFunc(s.followUps, func(f *fieldsyncv1.FollowUp) bool {
		return f.GetFollowedUpAt().AsTime().Before(s.yearStart) // series start before the year
	})
	var recs []*fieldsyncv1.Record
	for _, r := range sortedBy(s.visits, (*fieldsyncv1.HouseholdVisit).GetStartedAt) {
		recs = append(recs, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: r}})
	}
	for _, r := range sortedBy(s.audits, (*fieldsyncv1.ClinicAudit).GetAuditedAt) {
		recs = append(recs, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_ClinicAudit{ClinicAudit: r}})
	}
	for _, r := range sortedBy(s.followUps, (*fieldsyncv1.FollowUp).GetFollowedUpAt) {
		recs = append(recs, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: r}})
	}
	for _, r := range sortedBy(s.problems, (*fieldsyncv1.Problem).GetRaisedAt) {
		recs = append(recs, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: r}})
	}
	for _, r := range sortedBy(s.flags, (*fieldsyncv1.RiskFlag).GetFlaggedAt) {
		recs = append(recs, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_RiskFlag{RiskFlag: r}})
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// sortedBy sorts s stably by the timestamp at returns and returns it.
func sortedBy[T any](s []T, at func(T) *timestamppb.Timestamp) []T {
	slices.SortStableFunc(s, func(a, b T) int {
		ta, tb := at(a), at(b)
		return cmp.Or(cmp.Compare(ta.GetSeconds(), tb.GetSeconds()), cmp.Compare(ta.GetNanos(), tb.GetNanos()))
	})
	return s
}

// visitAll visits every household once in the campaign, by its village doctor
// (or the cover); 10 % are visited again by township staff (乡级自查) and 3 % by a
// county inspector (县级复查), later in the campaign.
func (s *villageSurveys) visitAll() {
	x := s.x
	for _, h := range s.v.Households {
		at := x.workTime(x.timeBetween(s.campStart, dayOf(s.asOf)))
		s.visit(h, pick(x, s.v.Serving()), at, true)
		if x.chance(0.10) {
			s.recheck(h, pick(x, s.v.Township.Staff), at)
		}
		if x.chance(0.03) {
			s.recheck(h, pick(x, s.g.County.Inspectors), at)
		}
	}
}

// recheck visits h again on a later day than the visit at first, if the
// campaign leaves one before AsOf's day.
func (s *villageSurveys) recheck(h *Household, by *Worker, first time.Time) {
	lo, hi := dayOf(first).Add(days(1)), dayOf(s.asOf)
	if lo.Before(hi) {
		s.visit(h, by, s.x.workTime(s.x.timeBetween(lo, hi)), false)
	}
}

var visitPhotoCaptions = []string{"入户走访合影", "政策宣传资料", "家庭医生签约服务手册", "慢病门诊手册", "健康档案"}

// visit makes one visit of h by a worker starting at at. The primary visit of
// the campaign also raises problems and risk flags.
func (s *villageSurveys) visit(h *Household, by *Worker, at time.Time, primary bool) {
	x := s.x
	end := at.Add(time.Duration(x.between(12*60, 45*60)) * time.Second)
	hv := &fieldsyncv1.HouseholdVisit{
		Id:              x.uuid7(at),
		AreaCode:        h.AreaCode,
		HouseholdId:     h.ID,
		VisitorWorkerId: by.ID,
		Campaign:        s.g.cfg.Campaign,
		StartedAt:       timestamppb.New(at),
		EndedAt:         timestamppb.New(end),
	}
	if x.chance(0.9) {
		hv.Location = geo(h.Latitude+x.uniform(-1e-4, 1e-4), h.Longitude+x.uniform(-1e-4, 1e-4), float64(x.between(5, 30)))
	}
	materials := x.chance(0.92)
	for _, p := range h.Members {
		hv.Findings = append(hv.Findings, s.finding(p, materials))
	}
	for i := range x.between(1, 3) {
		hv.Photos = append(hv.Photos, photo(hv.Id+"/photo/"+string(rune('1'+i)), pick(x, visitPhotoCaptions)))
	}
	s.visits = append(s.visits, hv)
	if primary {
		s.raiseFromVisit(hv, h)
	}
}

// absenceReasons maps a residency away from home to the absence reason.
var absenceReasons = map[fieldsyncv1.Residency]fieldsyncv1.AbsenceReason{
	fieldsyncv1.Residency_RESIDENCY_WORKING_AWAY: fieldsyncv1.AbsenceReason_ABSENCE_REASON_WORKING_AWAY,
	fieldsyncv1.Residency_RESIDENCY_AT_SCHOOL:    fieldsyncv1.AbsenceReason_ABSENCE_REASON_AT_SCHOOL,
	fieldsyncv1.Residency_RESIDENCY_IN_CARE:      fieldsyncv1.AbsenceReason_ABSENCE_REASON_IN_CARE,
	fieldsyncv1.Residency_RESIDENCY_IN_HOSPITAL:  fieldsyncv1.AbsenceReason_ABSENCE_REASON_IN_HOSPITAL,
	fieldsyncv1.Residency_RESIDENCY_UNREACHABLE:  fieldsyncv1.AbsenceReason_ABSENCE_REASON_UNREACHABLE,
	fieldsyncv1.Residency_RESIDENCY_DECEASED:     fieldsyncv1.AbsenceReason_ABSENCE_REASON_OTHER,
}

// AbsenceReason returns the absence reason a visit records for a member of the
// given residency, and false for a member at home, who is found present.
func AbsenceReason(r fieldsyncv1.Residency) (fieldsyncv1.AbsenceReason, bool) {
	reason, ok := absenceReasons[r]
	return reason, ok
}

var dissatisfactionReasons = []string{
	"看病排队时间长", "村医经常不在卫生室", "报销比例低", "卫生室药品种类少", "随访不及时", "转诊手续麻烦",
}

// finding records what a visit finds for member p. Members at home are present;
// the others are absent for the reason their residency gives (the deceased:
// other, noted 已故). The major-illness and safety-net findings are the
// registry's (batchFindings). Policy awareness, satisfaction and spending are
// asked of members present and 15 or older.
func (s *villageSurveys) finding(p *Person, materials bool) *fieldsyncv1.MemberFinding {
	x := s.x
	f := &fieldsyncv1.MemberFinding{PersonId: p.ID, Presence: fieldsyncv1.Presence_PRESENCE_PRESENT}
	if reason, absent := AbsenceReason(p.Residency); absent {
		f.Presence, f.AbsenceReason = fieldsyncv1.Presence_PRESENCE_ABSENT, reason
		if !p.Alive() {
			f.Notes = "已故"
			return f
		}
		if reason != fieldsyncv1.AbsenceReason_ABSENCE_REASON_AT_SCHOOL && x.chance(0.4) {
			f.AbsenceCertificate = photo(p.ID+"/absence/"+s.g.cfg.Campaign, "外出证明")
		}
	}
	f.ContractSigned = proto.Bool(p.Contract)
	if p.Contract {
		f.ContractServedOnTime = proto.Bool(x.chance(0.95))
	}
	f.HealthRecordExists = proto.Bool(p.HealthRecord)
	if p.HealthRecord {
		f.HealthRecordUpToDate = proto.Bool(x.chance(0.93))
	}
	if p.Chronic() {
		f.OnePersonPlanPresent = proto.Bool(p.OnePersonPlan)
		f.ChronicHandbookIssued = proto.Bool(p.ChronicHandbook)
	}
	// A member away or unreachable who lacks a service-111 measure needs the
	// village committee certificate (村委会证明): the visit photographs it.
	missing111 := !p.Contract || !p.HealthRecord || (p.Chronic() && !p.OnePersonPlan)
	if f.AbsenceCertificate == nil && missing111 && (f.AbsenceReason == fieldsyncv1.AbsenceReason_ABSENCE_REASON_WORKING_AWAY ||
		f.AbsenceReason == fieldsyncv1.AbsenceReason_ABSENCE_REASON_UNREACHABLE) {
		f.AbsenceCertificate = photo(p.ID+"/absence/"+s.g.cfg.Campaign, "村委会证明")
	}
	f.PolicyMaterialsComplete = proto.Bool(materials)
	batchFindings(p, f)
	if f.Presence != fieldsyncv1.Presence_PRESENCE_PRESENT || p.Age(s.asOf) < 15 {
		return f
	}
	if p.Chronic() && p.ChronicHandbook {
		f.ChronicHandbookUnderstood = proto.Bool(x.chance(0.85))
	}
	if p.Contract {
		f.KnowsContractedDoctor = proto.Bool(x.chance(0.92))
	}
	f.KnowsSecondaryHospitalDoctor = proto.Bool(x.chance(0.65))
	f.CanExplainKanbing_120 = proto.Bool(x.chance(0.78))
	f.CanExplainFuwu_111 = proto.Bool(x.chance(0.72))
	f.Satisfaction = fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED
	if x.chance(0.04) {
		f.Satisfaction = fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED
		f.DissatisfactionReason = pick(x, dissatisfactionReasons)
	}
	s.spending(p, f)
	return f
}

// spending records this year's medical cost for 60 % of chronic patients and
// 12 % of others: a total in the hundreds to thousands of yuan (tens of
// thousands for major illness), of which 2–10 % is paid out of pocket, or
// 10–35 % one time in seven.
func (s *villageSurveys) spending(p *Person, f *fieldsyncv1.MemberFinding) {
	x := s.x
	pAsked, median := 0.12, 800.0
	if p.Chronic() {
		pAsked, median = 0.6, 3000
	}
	if p.MajorIllness() {
		median = 60000
	}
	if !x.chance(pAsked) {
		return
	}
	yuan := math.Exp(x.normal(math.Log(median), 0.9, math.Log(50), math.Log(500000)))
	share := x.uniform(0.02, 0.10)
	if x.chance(1.0 / 7) {
		share = x.uniform(0.101, 0.35)
	}
	total := int64(yuan * 100)
	f.TotalMedicalCostFen = proto.Int64(total)
	f.OutOfPocketFen = proto.Int64(int64(float64(total) * share))
}
