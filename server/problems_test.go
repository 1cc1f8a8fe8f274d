package server_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// ledger is a township server holding two villages' registry and a ledger
// of problems with known deadlines around today.
type ledger struct {
	e        *env
	township string
	villages [2]string
	person   *fieldsyncv1.Person // the person the first problem is about
	asOf     *fieldsyncv1.Date   // today, China time
	doctor   string              // the worker who rectified the rectified problems
	p        map[string]*fieldsyncv1.Problem
}

// newLedger saves, as the server: the first village's households and
// people, and the problems
//
//	critOverdue  village 0, critical, OPEN, deadline 14 days ago, about a person
//	overdue      village 0, normal,   OPEN, deadline yesterday
//	dueToday     village 1, normal,   OPEN, deadline today (not overdue)
//	critRect     village 1, critical, RECTIFIED, deadline 30 days ago (awaits verification: not overdue)
//	verified     village 0, normal,   VERIFIED, deadline 5 days ago
//	noDeadline   village 1, normal,   OPEN, no deadline
func newLedger(t *testing.T) *ledger {
	t.Helper()
	now := time.Now()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 2, HouseholdsPerVillage: 2, Seed: 11, AsOf: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	l := &ledger{township: vs[0].Code[:9], villages: [2]string{vs[0].Code, vs[1].Code}, asOf: survey.Today(now), doctor: newID(t), p: map[string]*fieldsyncv1.Problem{}}
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, Area: l.township})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	l.e = &env{srv: srv, dir: dir, conn: conn, admin: fieldsyncv1.NewAdminServiceClient(conn)}
	err = g.EachInVillage(vs[0], func(r *fieldsyncv1.Record) error {
		if r.GetHousehold() == nil && r.GetPerson() == nil {
			return nil
		}
		if p := r.GetPerson(); p != nil && l.person == nil {
			l.person = p
		}
		_, err := srv.Save(t.Context(), r)
		return err
	})
	if err != nil || l.person == nil {
		t.Fatalf("saving the registry: %v (person %v)", err, l.person)
	}
	type spec struct {
		name     string
		village  int
		severity fieldsyncv1.Severity
		status   fieldsyncv1.ProblemStatus
		deadline int // days from today; 1000 means none
	}
	for _, s := range []spec{
		{"critOverdue", 0, fieldsyncv1.Severity_SEVERITY_CRITICAL, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, -14},
		{"overdue", 0, fieldsyncv1.Severity_SEVERITY_NORMAL, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, -1},
		{"dueToday", 1, fieldsyncv1.Severity_SEVERITY_NORMAL, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, 0},
		{"critRect", 1, fieldsyncv1.Severity_SEVERITY_CRITICAL, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, -30},
		{"verified", 0, fieldsyncv1.Severity_SEVERITY_NORMAL, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, -5},
		{"noDeadline", 1, fieldsyncv1.Severity_SEVERITY_NORMAL, fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, 1000},
	} {
		p := &fieldsyncv1.Problem{
			Id: newID(t), AreaCode: l.villages[s.village], SourceKind: fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT,
			SourceRecordId: newID(t), Item: "member.one_person_plan", Severity: s.severity,
			Description: "慢病患者无一人一策 (" + s.name + ")", Responsible: "王建国",
			Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, RaisedAt: timestamppb.New(now.Add(-48 * time.Hour)),
		}
		if s.deadline != 1000 {
			p.Deadline = survey.AddDays(l.asOf, s.deadline)
		}
		if s.name == "critOverdue" {
			p.PersonId = l.person.GetId()
		}
		l.save(t, p)
		if s.status != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN {
			p.Status, p.Measure = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, "乡镇卫生院为患者制定一人一策"
			p.RectifiedAt, p.RectifiedByWorkerId = timestamppb.New(now.Add(-2*time.Hour)), l.doctor
			l.save(t, p)
		}
		if s.status == fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED {
			p.Status = s.status
			p.VerifiedAt, p.VerifiedByWorkerId = timestamppb.New(now.Add(-time.Hour)), newID(t)
			l.save(t, p)
		}
		l.p[s.name] = p
	}
	return l
}

func (l *ledger) save(t *testing.T, p *fieldsyncv1.Problem) {
	t.Helper()
	if _, err := l.e.srv.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: proto.Clone(p).(*fieldsyncv1.Problem)}}); err != nil {
		t.Fatalf("save problem %s: %v", p.GetDescription(), err)
	}
}

// names returns the test names of the listed problems, in order.
func (l *ledger) names(t *testing.T, ps []*fieldsyncv1.ListedProblem) []string {
	t.Helper()
	var out []string
	for _, lp := range ps {
		name := "?"
		for n, p := range l.p {
			if p.GetId() == lp.GetProblem().GetId() {
				name = n
			}
		}
		out = append(out, name)
	}
	return out
}

// stored returns the problem id as the server's store holds it.
func (l *ledger) stored(t *testing.T, id string) *fieldsyncv1.Problem {
	t.Helper()
	rid, err := wire.RecordID(id)
	if err != nil {
		t.Fatal(err)
	}
	var rec *fieldsyncv1.Record
	err = l.e.srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		r, err := tx.Record(t.Context(), rid)
		if err != nil {
			return err
		}
		rec, err = wire.FromState(r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec.GetProblem()
}

// ListProblems filters the ledger by area, overdue, severity and status, and
// orders it critical first, then overdue, then by deadline, then by id.
func TestListProblems(t *testing.T) {
	l := newLedger(t)
	ctx := l.e.adminCtx(t)
	for _, tt := range []struct {
		name string
		req  *fieldsyncv1.ListProblemsRequest
		want []string
	}{
		{"default", &fieldsyncv1.ListProblemsRequest{}, []string{"critOverdue", "critRect", "overdue", "dueToday", "noDeadline"}},
		{"as of today", &fieldsyncv1.ListProblemsRequest{AsOf: l.asOf}, []string{"critOverdue", "critRect", "overdue", "dueToday", "noDeadline"}},
		{"township", &fieldsyncv1.ListProblemsRequest{AreaPrefix: l.township}, []string{"critOverdue", "critRect", "overdue", "dueToday", "noDeadline"}},
		{"county enclosing the township", &fieldsyncv1.ListProblemsRequest{AreaPrefix: l.township[:6]}, []string{"critOverdue", "critRect", "overdue", "dueToday", "noDeadline"}},
		{"include verified", &fieldsyncv1.ListProblemsRequest{IncludeVerified: true}, []string{"critOverdue", "critRect", "overdue", "verified", "dueToday", "noDeadline"}},
		{"overdue only", &fieldsyncv1.ListProblemsRequest{OverdueOnly: true}, []string{"critOverdue", "overdue"}},
		{"overdue only, include verified", &fieldsyncv1.ListProblemsRequest{OverdueOnly: true, IncludeVerified: true}, []string{"critOverdue", "overdue"}},
		{"critical", &fieldsyncv1.ListProblemsRequest{Severity: fieldsyncv1.Severity_SEVERITY_CRITICAL}, []string{"critOverdue", "critRect"}},
		{"normal overdue", &fieldsyncv1.ListProblemsRequest{Severity: fieldsyncv1.Severity_SEVERITY_NORMAL, OverdueOnly: true}, []string{"overdue"}},
		{"village 1", &fieldsyncv1.ListProblemsRequest{AreaPrefix: l.villages[1]}, []string{"critRect", "dueToday", "noDeadline"}},
		{"village 0 with verified", &fieldsyncv1.ListProblemsRequest{AreaPrefix: l.villages[0], IncludeVerified: true}, []string{"critOverdue", "overdue", "verified"}},
		{"10 days on", &fieldsyncv1.ListProblemsRequest{AsOf: survey.AddDays(l.asOf, 10), OverdueOnly: true}, []string{"critOverdue", "overdue", "dueToday"}},
	} {
		resp, err := l.e.admin.ListProblems(ctx, tt.req)
		if err != nil {
			t.Errorf("%s: ListProblems: %v", tt.name, err)
			continue
		}
		if got := l.names(t, resp.GetProblems()); !slices.Equal(got, tt.want) {
			t.Errorf("%s: ListProblems = %v, want %v", tt.name, got, tt.want)
		}
	}

	// Overdue, days and the person's name.
	resp, err := l.e.admin.ListProblems(ctx, &fieldsyncv1.ListProblemsRequest{IncludeVerified: true})
	if err != nil {
		t.Fatal(err)
	}
	wantDays := map[string]int32{"critOverdue": 14, "overdue": 1}
	for i, lp := range resp.GetProblems() {
		name := l.names(t, resp.GetProblems())[i]
		if lp.GetOverdue() != (wantDays[name] > 0) || lp.GetDaysOverdue() != wantDays[name] {
			t.Errorf("%s: overdue %v, %d days; want %d days", name, lp.GetOverdue(), lp.GetDaysOverdue(), wantDays[name])
		}
		wantName := ""
		if name == "critOverdue" {
			wantName = l.person.GetName()
		}
		if lp.GetPersonName() != wantName {
			t.Errorf("%s: person_name %q, want %q", name, lp.GetPersonName(), wantName)
		}
		if !proto.Equal(lp.GetProblem(), l.p[name]) {
			t.Errorf("%s: listed as %v, saved as %v", name, lp.GetProblem(), l.p[name])
		}
	}

	for _, tt := range []struct {
		req  *fieldsyncv1.ListProblemsRequest
		want string
	}{
		{&fieldsyncv1.ListProblemsRequest{AreaPrefix: l.township[:6] + "999"}, "outside this server's area"},
		{&fieldsyncv1.ListProblemsRequest{AreaPrefix: "5325"}, "not a county"},
		{&fieldsyncv1.ListProblemsRequest{Severity: fieldsyncv1.Severity(7)}, "severity"},
		{&fieldsyncv1.ListProblemsRequest{AsOf: &fieldsyncv1.Date{Year: 2026, Month: 2, Day: 30}}, "as_of"},
	} {
		_, err := l.e.admin.ListProblems(ctx, tt.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
			t.Errorf("ListProblems(%v) = %v; want InvalidArgument saying %q", tt.req, err, tt.want)
		}
	}
}

// UpdateProblem verifies a rectified problem and reopens it with a reason,
// as the server; the ledger's workflow refuses the moves it forbids, with
// its message, and nothing is stored.
func TestUpdateProblem(t *testing.T) {
	l := newLedger(t)
	ctx := l.e.adminCtx(t)
	staff := newID(t)
	critRect, open := l.p["critRect"], l.p["overdue"]
	logEnd := func() syncengine.Position {
		t.Helper()
		end, err := l.e.srv.Store().LogEnd(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return end
	}
	refused := func(name string, req *fieldsyncv1.UpdateProblemRequest, code codes.Code, reason fieldsyncv1.Reason, says ...string) {
		t.Helper()
		before := logEnd()
		_, err := l.e.admin.UpdateProblem(ctx, req)
		msg := status.Convert(err).Message()
		if status.Code(err) != code || servertest.ReasonOf(err) != reason {
			t.Errorf("%s: UpdateProblem = %v (reason %v), want %v %v", name, err, servertest.ReasonOf(err), code, reason)
		}
		for _, s := range says {
			if !strings.Contains(msg, s) {
				t.Errorf("%s: message %q does not say %q", name, msg, s)
			}
		}
		if after := logEnd(); after != before {
			t.Errorf("%s: the refused update wrote %d changes", name, after-before)
		}
	}
	verify := func(p *fieldsyncv1.Problem, worker string) *fieldsyncv1.UpdateProblemRequest {
		return &fieldsyncv1.UpdateProblemRequest{ProblemId: p.GetId(), Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, WorkerId: worker}
	}
	reopen := func(p *fieldsyncv1.Problem, worker, reason string) *fieldsyncv1.UpdateProblemRequest {
		return &fieldsyncv1.UpdateProblemRequest{ProblemId: p.GetId(), Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, WorkerId: worker, Reason: reason}
	}

	refused("verify an open problem", verify(open, staff), codes.InvalidArgument, server.ReasonProblemTransition, "OPEN problem cannot be verified", "rectified first")
	if got := l.stored(t, open.GetId()); !proto.Equal(got, open) {
		t.Errorf("the open problem after a refused verification: %v", got)
	}
	refused("verify by the rectifier", verify(critRect, l.doctor), codes.InvalidArgument, server.ReasonProblemTransition, "the worker who rectified a problem cannot verify it")
	refused("verify without worker", verify(critRect, ""), codes.InvalidArgument, server.ReasonBadRequest, "worker_id is required")
	refused("verify by a person", verify(critRect, l.person.GetId()), codes.InvalidArgument, server.ReasonBadRequest, "not a Worker")
	refused("reopen without reason", reopen(critRect, staff, " "), codes.InvalidArgument, server.ReasonBadRequest, "reopening needs --reason")
	refused("reopen an open problem", reopen(open, staff, "复查"), codes.InvalidArgument, server.ReasonProblemTransition, "OPEN already")
	refused("unknown problem", verify(&fieldsyncv1.Problem{Id: newID(t)}, staff), codes.NotFound, server.ReasonNoRecord, "no such record")
	refused("a person's id", verify(&fieldsyncv1.Problem{Id: l.person.GetId()}, staff), codes.InvalidArgument, server.ReasonBadRequest, "not a problem")
	refused("malformed id", verify(&fieldsyncv1.Problem{Id: "P-1"}, staff), codes.InvalidArgument, server.ReasonBadRequest, "UUID")
	refused("rectify", &fieldsyncv1.UpdateProblemRequest{ProblemId: open.GetId(), Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, WorkerId: staff},
		codes.InvalidArgument, server.ReasonBadRequest, "VERIFIED", "OPEN")

	// Verify the rectified problem.
	before := time.Now()
	resp, err := l.e.admin.UpdateProblem(ctx, verify(critRect, staff))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	got := l.stored(t, critRect.GetId())
	if !proto.Equal(resp.GetProblem(), got) || len(resp.GetChangeId()) != 16 {
		t.Errorf("verify answered %v (change %x), the store holds %v", resp.GetProblem(), resp.GetChangeId(), got)
	}
	if got.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED || got.GetVerifiedByWorkerId() != staff ||
		got.GetVerifiedAt().AsTime().Before(before.Add(-time.Second)) || got.GetRectifiedByWorkerId() != l.doctor || got.GetMeasure() != critRect.GetMeasure() {
		t.Errorf("verified problem stored as %v", got)
	}
	refused("verify again", verify(critRect, staff), codes.InvalidArgument, server.ReasonProblemTransition, "VERIFIED already")
	list, err := l.e.admin.ListProblems(ctx, &fieldsyncv1.ListProblemsRequest{})
	if err != nil || slices.Contains(l.names(t, list.GetProblems()), "critRect") {
		t.Errorf("ListProblems after the verification = %v, %v; want it closed", l.names(t, list.GetProblems()), err)
	}

	// Reopen it: back to OPEN, 30 days past its deadline, so first of the
	// critical overdue problems.
	resp, err = l.e.admin.UpdateProblem(ctx, reopen(critRect, staff, "复查发现仍未整改"))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	got = l.stored(t, critRect.GetId())
	if !proto.Equal(resp.GetProblem(), got) || got.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN ||
		got.GetReopenReason() != "复查发现仍未整改" || got.GetReopenedByWorkerId() != staff || got.GetReopenedAt() == nil ||
		got.GetVerifiedAt() != nil || got.GetRectifiedByWorkerId() != "" || got.GetMeasure() != critRect.GetMeasure() {
		t.Errorf("reopened problem stored as %v (answered %v)", got, resp.GetProblem())
	}
	list, err = l.e.admin.ListProblems(ctx, &fieldsyncv1.ListProblemsRequest{OverdueOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if names := l.names(t, list.GetProblems()); !slices.Equal(names, []string{"critRect", "critOverdue", "overdue"}) || list.GetProblems()[0].GetDaysOverdue() != 30 {
		t.Errorf("overdue after the reopening: %v (%v)", names, list.GetProblems())
	}

	// A verified problem reopens too.
	verified := l.p["verified"]
	if _, err := l.e.admin.UpdateProblem(ctx, reopen(verified, staff, "回头看发现问题")); err != nil {
		t.Errorf("reopen a verified problem: %v", err)
	} else if got := l.stored(t, verified.GetId()); got.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN || got.GetVerifiedByWorkerId() != "" {
		t.Errorf("reopened verified problem stored as %v", got)
	}
}
