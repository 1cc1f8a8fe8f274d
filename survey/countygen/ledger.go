package countygen

import (
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// raiseFromVisit adds the problems and risk flags survey's rules raise for a
// household's first visit of the campaign.
func (s *villageSurveys) raiseFromVisit(hv *fieldsyncv1.HouseholdVisit, h *Household) {
	people := make(map[string]*fieldsyncv1.Person, len(h.Members))
	for _, p := range h.Members {
		people[p.ID] = personProto(p, nil)
	}
	household := &fieldsyncv1.Household{Id: h.ID, Status: h.Status}
	for _, p := range s.g.rules.HouseholdVisitProblems(hv, household, people) {
		s.track(p)
	}
	for _, f := range s.g.rules.RiskFlags(hv) {
		s.flag(f, hv.EndedAt.AsTime())
	}
}

// measures are the rectification measures by item prefix, most specific first.
var measures = []struct{ prefix, measure string }{
	{"service111.one_person_plan", "一周内建立一人一策并录入"},
	{"service111.", "补齐服务111（签约、健康档案）或补充村委会证明"},
	{"contract.", "按协议补做签约服务并记录"},
	{"member.", "回访并解决群众反映的问题"},
	{"clinic.yikouqing.", "村医熟记本村底数，与台账核对"},
	{"clinic.drugs.", "清理药品，补齐基本药物"},
	{"clinic.", "限期整改到位"},
}

func measureFor(item string) string {
	for _, m := range measures {
		if strings.HasPrefix(item, m.prefix) {
			return m.measure
		}
	}
	return "限期整改到位"
}

// track gives a problem raised by survey's rules its id, measure, responsible
// person and a lifecycle: problems past their deadline are mostly verified and
// closed (70 %; rectified 15 %, open 15 %), newer ones mostly open (60 %;
// rectified 30 %, verified 10 %). Rectification falls before the deadline plus
// ten days, verification within 20 days after it; both before AsOf.
func (s *villageSurveys) track(p *fieldsyncv1.Problem) {
	x := s.x
	at := p.RaisedAt.AsTime()
	deadline := dayOf(at).Add(days(30))
	if p.Deadline != nil {
		deadline = time.Date(int(p.Deadline.Year), time.Month(p.Deadline.Month), int(p.Deadline.Day), 0, 0, 0, 0, cst)
	}
	x.uuid7(at) // the id is survey's derived one; the draw keeps the stream of earlier versions
	p.Measure = measureFor(p.Item)
	p.Responsible = s.v.Serving()[0].Name
	weights := []float64{60, 30, 10} // open, rectified, verified
	if deadline.Before(s.asOf) {
		weights = []float64{15, 15, 70}
	}
	status := fieldsyncv1.ProblemStatus(1 + x.weighted(weights))
	last := s.asOf.Add(-time.Hour)
	rectifyBy := earlier(deadline.Add(days(10)), last)
	if status >= fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED && at.Add(time.Hour).Before(rectifyBy) {
		rectified := x.timeBetween(at.Add(time.Hour), rectifyBy)
		p.Status, p.RectifiedAt = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, timestamppb.New(rectified)
		p.RectifiedByWorkerId = s.v.Serving()[0].ID
		if status == fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED && rectified.Add(time.Hour).Before(last) {
			verified := x.timeBetween(rectified.Add(time.Hour), earlier(rectified.Add(days(20)), last))
			p.Status, p.VerifiedAt = status, timestamppb.New(verified)
			p.VerifiedByWorkerId = pick(x, s.v.Township.Staff).ID
			if p.VerifiedByWorkerId == p.RectifiedByWorkerId {
				// The cover sent from the township rectified it: a colleague verifies.
				p.RectifiedByWorkerId = s.v.Township.Staff[0].ID
				if p.VerifiedByWorkerId == p.RectifiedByWorkerId {
					p.RectifiedByWorkerId = s.v.Township.Staff[len(s.v.Township.Staff)-1].ID
				}
			}
		}
	}
	s.problems = append(s.problems, p)
}

// flag gives a risk flag raised by survey's rules its id, a time shortly after
// the visit ended, and a handling status: flags older than 30 days have mostly
// been forwarded (60 %) or closed (25 %); newer ones are mostly open (70 %).
func (s *villageSurveys) flag(f *fieldsyncv1.RiskFlag, end time.Time) {
	x := s.x
	at := end.Add(time.Duration(x.between(0, 120)) * time.Minute)
	weights := []float64{70, 30, 0} // open, forwarded, closed
	if at.Before(s.asOf.Add(-days(30))) {
		weights = []float64{15, 60, 25}
	}
	x.uuid7(at) // the id is survey's derived one
	f.FlaggedAt = timestamppb.New(at)
	f.Status = fieldsyncv1.RiskFlagStatus(1 + x.weighted(weights))
	s.flags = append(s.flags, f)
}

// LedgerSteps returns the saves that take a generated problem to its
// generated state the way the ledger's workflow allows (survey.ProblemTransition):
// raised OPEN, then RECTIFIED, then VERIFIED, each a copy of p with what that
// step knows. p is not modified.
func LedgerSteps(p *fieldsyncv1.Problem) []*fieldsyncv1.Problem {
	open := proto.Clone(p).(*fieldsyncv1.Problem)
	open.Status = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN
	open.RectifiedAt, open.RectifiedByWorkerId, open.VerifiedAt, open.VerifiedByWorkerId = nil, "", nil, ""
	steps := []*fieldsyncv1.Problem{open}
	if p.Status == fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN {
		return steps
	}
	rectified := proto.Clone(p).(*fieldsyncv1.Problem)
	rectified.Status = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED
	rectified.VerifiedAt, rectified.VerifiedByWorkerId = nil, ""
	steps = append(steps, rectified)
	if p.Status == fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED {
		steps = append(steps, proto.Clone(p).(*fieldsyncv1.Problem))
	}
	return steps
}
