package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// ReasonProblemTransition is the ErrorInfo reason of UpdateProblem's
// InvalidArgument when the ledger's workflow or the problem's validation
// refuses the move (verifying an OPEN problem, verifying by the worker who
// rectified it, reopening without a reason); the status message carries the
// rules' messages.
const ReasonProblemTransition = fieldsyncv1.Reason_REASON_PROBLEM_TRANSITION_REFUSED

const (
	kindProblem = syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM)
	kindPerson  = syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_PERSON)
	kindWorker  = syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_WORKER)

	statusOpen      = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN
	statusRectified = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED
	statusVerified  = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED
)

// ListProblems lists the live problems of the ledger under the request's area
// prefix (default: the server's whole area), without the VERIFIED (closed)
// ones unless include_verified, of one severity if severity is set, and only
// the overdue ones with overdue_only. Critical problems come first, then
// overdue ones, then by deadline (none last), then by id.
//
// A problem is overdue when it is OPEN and its deadline is before as_of (by
// default today in China Standard Time): the deadline day itself is not
// overdue, and days_overdue counts the calendar days from the deadline to
// as_of. A RECTIFIED problem is never overdue: its rectification is done and
// awaits verification, which has no deadline of its own, so the daily
// overdue list (日通报) shows only the problems still to be rectified.
//
// It reads every record under the prefix: an operator's question, not a
// device's. It answers InvalidArgument for a prefix that is not a county,
// township or village code, or that lies outside the server's area, for a
// severity that is not one of the enum's values and an as_of that is not a
// calendar date.
func (a admin) ListProblems(ctx context.Context, req *fieldsyncv1.ListProblemsRequest) (*fieldsyncv1.ListProblemsResponse, error) {
	s := a.s
	prefix, err := s.listPrefix(req.GetAreaPrefix())
	if err != nil {
		return nil, fmt.Errorf("list problems: %w", err)
	}
	switch req.GetSeverity() {
	case fieldsyncv1.Severity_SEVERITY_UNSPECIFIED, fieldsyncv1.Severity_SEVERITY_NORMAL, fieldsyncv1.Severity_SEVERITY_CRITICAL:
	default:
		return nil, fmt.Errorf("list problems: %w: severity %v is not NORMAL or CRITICAL", ErrBadRequest, req.GetSeverity())
	}
	asOf := req.GetAsOf()
	if asOf == nil {
		asOf = survey.Today(s.now())
	} else if _, err := survey.DateTime(asOf); err != nil {
		return nil, fmt.Errorf("list problems: %w: as_of: %v", ErrBadRequest, err)
	}
	recs, err := s.store.RecordsUnder(ctx, prefix, kindProblem)
	if err != nil {
		return nil, fmt.Errorf("list problems: %w", err)
	}
	resp := &fieldsyncv1.ListProblemsResponse{}
	for _, r := range recs {
		if !r.Exists() {
			continue
		}
		rec, err := wire.FromState(r)
		if err != nil {
			s.log.WarnContext(ctx, "stored problem does not decode; not listed", "record", r.ID().String(), "err", err)
			continue
		}
		p := rec.GetProblem()
		if p.GetStatus() == statusVerified && !req.GetIncludeVerified() {
			continue
		}
		if sev := req.GetSeverity(); sev != fieldsyncv1.Severity_SEVERITY_UNSPECIFIED && p.GetSeverity() != sev {
			continue
		}
		lp := &fieldsyncv1.ListedProblem{Problem: p}
		if days, overdue := survey.ProblemOverdue(p, asOf); overdue {
			lp.Overdue, lp.DaysOverdue = true, int32(days)
		}
		if req.GetOverdueOnly() && !lp.Overdue {
			continue
		}
		resp.Problems = append(resp.Problems, lp)
	}
	slices.SortFunc(resp.Problems, compareListed)
	if err := s.personNames(ctx, resp.Problems); err != nil {
		return nil, fmt.Errorf("list problems: %w", err)
	}
	return resp, nil
}

// compareListed orders listed problems: critical first, then overdue, then
// by deadline (none last), then by id.
func compareListed(a, b *fieldsyncv1.ListedProblem) int {
	critical := func(lp *fieldsyncv1.ListedProblem) bool {
		return lp.GetProblem().GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL
	}
	if c := -compareBool(critical(a), critical(b)); c != 0 {
		return c
	}
	if c := -compareBool(a.GetOverdue(), b.GetOverdue()); c != 0 {
		return c
	}
	da, db := a.GetProblem().GetDeadline(), b.GetProblem().GetDeadline()
	switch {
	case da == nil && db != nil:
		return 1
	case da != nil && db == nil:
		return -1
	case da != nil:
		if c := survey.CompareDates(da, db); c != 0 {
			return c
		}
	}
	return cmp.Compare(a.GetProblem().GetId(), b.GetProblem().GetId())
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// personNames sets the person_name of each listed problem about a person the
// store holds alive.
func (s *Server) personNames(ctx context.Context, ps []*fieldsyncv1.ListedProblem) error {
	names := make(map[string]string)
	return s.store.View(ctx, func(tx syncengine.ReadTx) error {
		for _, lp := range ps {
			pid := lp.GetProblem().GetPersonId()
			if pid == "" {
				continue
			}
			name, ok := names[pid]
			if !ok {
				id, err := wire.RecordID(pid)
				if err != nil {
					continue
				}
				r, err := tx.Record(ctx, id)
				if err != nil {
					return err
				}
				if r.Exists() && r.Kind() == kindPerson {
					if rec, err := wire.FromState(r); err == nil {
						name = rec.GetPerson().GetName()
					}
				}
				names[pid] = name
			}
			lp.PersonName = name
		}
		return nil
	})
}

// listPrefix returns the area prefix to list for a request's prefix: the
// server's area for "" or for a prefix that encloses it (a county's code at
// a township server); the request's prefix within the server's area. It
// refuses, wrapping ErrBadRequest, a prefix that is not a county, township or
// village code, or one outside the server's area.
func (s *Server) listPrefix(prefix string) (string, error) {
	if prefix == "" {
		return s.cfg.Area, nil
	}
	if !survey.DivisionPrefix(prefix) {
		return "", fmt.Errorf("%w: area prefix %q is not a county (6 digits), township (9) or village (12) code", ErrBadRequest, prefix)
	}
	switch {
	case s.serves(prefix):
		return prefix, nil
	case syncengine.Overlap(prefix, s.cfg.Area):
		return s.cfg.Area, nil
	}
	return "", fmt.Errorf("%w: area prefix %s is outside this server's area %s", ErrBadRequest, prefix, s.cfg.Area)
}

// UpdateProblem moves a problem of the ledger on, as a change made by this
// server through Save (the one save path, which checks the ledger's
// workflow and validates the result): status VERIFIED verifies a RECTIFIED
// problem (verified_at now, verified_by_worker_id the worker); status OPEN
// reopens a RECTIFIED or VERIFIED one (reopen_reason, reopened_at now,
// reopened_by_worker_id the worker), clearing who rectified and verified it
// and when, which no longer holds (the log keeps them); the measure stays.
//
// worker_id must be a canonical UUID; when this server holds a live record
// with that id it must be a Worker. A worker it does not hold is accepted:
// the server is the authority that verifies, and a county inspector's Worker
// record, under the county's code, is not held by a township server.
//
// It answers NotFound for an id with no live record; InvalidArgument for a
// malformed request, a record that is not a problem or lies outside the
// server's area, and, with reason ReasonProblemTransition and the rules'
// messages, a move the workflow or validation refuses (verifying an OPEN
// problem, verifying by the worker who rectified it, reopening an OPEN one).
func (a admin) UpdateProblem(ctx context.Context, req *fieldsyncv1.UpdateProblemRequest) (*fieldsyncv1.UpdateProblemResponse, error) {
	s := a.s
	id, wid, err := problemUpdateIDs(req)
	if err != nil {
		return nil, err
	}
	to, worker, reason := req.GetStatus(), req.GetWorkerId(), strings.TrimSpace(req.GetReason())
	var cur, w syncengine.Record
	err = s.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		if cur, err = tx.Record(ctx, id); err != nil {
			return err
		}
		w, err = tx.Record(ctx, wid)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update problem %v: %w", id, err)
	}
	switch {
	case cur.IsEmpty():
		return nil, withReason(codes.NotFound, ReasonNoRecord, fmt.Sprintf("update problem %v: no such record", id))
	case !cur.Exists():
		return nil, withReason(codes.NotFound, ReasonNoRecord, fmt.Sprintf("update problem %v: the record is deleted", id))
	case cur.Kind() != kindProblem:
		return nil, fmt.Errorf("update problem %v: %w: it is a %s, not a problem", id, ErrBadRequest,
			strings.ToLower(strings.TrimPrefix(fieldsyncv1.RecordKind(cur.Kind()).String(), "RECORD_KIND_")))
	case !s.serves(cur.Area()):
		return nil, fmt.Errorf("update problem %v: %w: its area %s is outside this server's area %s", id, ErrBadRequest, cur.Area(), s.cfg.Area)
	}
	if w.Exists() && w.Kind() != kindWorker {
		return nil, fmt.Errorf("update problem %v: %w: worker_id %s names a %s, not a Worker", id, ErrBadRequest, worker,
			strings.ToLower(strings.TrimPrefix(fieldsyncv1.RecordKind(w.Kind()).String(), "RECORD_KIND_")))
	}
	rec, err := wire.FromState(cur)
	if err != nil {
		return nil, fmt.Errorf("update problem %v: stored record: %w", id, err)
	}
	prev := rec.GetProblem()
	next, errs := nextProblem(prev, to, wid.String(), reason, timestamppb.New(s.now()))
	if len(errs) > 0 {
		return nil, refusedMove(id, errs)
	}
	action := fieldsyncv1.AuditAction_AUDIT_ACTION_PROBLEM_VERIFY
	if to == statusOpen {
		action = fieldsyncv1.AuditAction_AUDIT_ACTION_PROBLEM_REOPEN
	}
	// The entry names the statuses and the worker, not the reason (free text).
	cid, err := s.save(ctx, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: next}}, func(tx syncengine.Tx) error {
		return s.audit(ctx, tx, action, id.String(), fmt.Sprintf("%s → %s by worker %v, area %s",
			statusWord(prev.GetStatus()), statusWord(to), wid, cur.Area()))
	})
	var invalid *InvalidRecordError
	if errors.As(err, &invalid) {
		return nil, refusedMove(id, invalid.FieldErrors)
	}
	if err != nil {
		return nil, fmt.Errorf("update problem %v: %w", id, err)
	}
	err = s.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		cur, err = tx.Record(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update problem %v: %w", id, err)
	}
	if rec, err = wire.FromState(cur); err != nil {
		return nil, fmt.Errorf("update problem %v: stored record: %w", id, err)
	}
	s.log.InfoContext(ctx, "problem updated", "record", id.String(), "from", prev.GetStatus().String(), "to", to.String())
	return &fieldsyncv1.UpdateProblemResponse{Problem: rec.GetProblem(), ChangeId: cid[:]}, nil
}

// statusWord is a problem status as people read it: "rectified".
func statusWord(st fieldsyncv1.ProblemStatus) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "PROBLEM_STATUS_"))
}

// nextProblem returns the state that moves prev to status to, by worker at
// at, or the field errors of a move the ledger's workflow refuses. Save
// checks the workflow again against the state its transaction reads.
func nextProblem(prev *fieldsyncv1.Problem, to fieldsyncv1.ProblemStatus, worker, reason string, at *timestamppb.Timestamp) (*fieldsyncv1.Problem, []survey.FieldError) {
	notAllowed := fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_TRANSITION
	next := proto.Clone(prev).(*fieldsyncv1.Problem)
	next.Status = to
	switch {
	case to == statusVerified && prev.GetStatus() == statusVerified:
		return nil, []survey.FieldError{{Path: "status", Reason: notAllowed,
			Message: fmt.Sprintf("the problem is VERIFIED already (by worker %s): nothing to verify", prev.GetVerifiedByWorkerId())}}
	case to == statusVerified:
		next.VerifiedAt, next.VerifiedByWorkerId = at, worker
	case prev.GetStatus() == statusOpen:
		return nil, []survey.FieldError{{Path: "status", Reason: notAllowed,
			Message: "the problem is OPEN already: only a RECTIFIED or VERIFIED problem is reopened"}}
	default:
		next.ReopenReason, next.ReopenedAt, next.ReopenedByWorkerId = reason, at, worker
		next.RectifiedAt, next.RectifiedByWorkerId = nil, ""
		next.VerifiedAt, next.VerifiedByWorkerId = nil, ""
	}
	if errs := survey.ProblemTransition(prev, next); len(errs) > 0 {
		return nil, errs
	}
	return next, nil
}

// refusedMove is the InvalidArgument status of a problem move the rules
// refuse, with their messages.
func refusedMove(id syncengine.RecordID, errs []survey.FieldError) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Message
	}
	return withReason(codes.InvalidArgument, ReasonProblemTransition,
		fmt.Sprintf("update problem %v: refused: %s", id, strings.Join(msgs, "; ")))
}

// problemUpdateIDs checks an UpdateProblemRequest and returns the ids of the
// problem and of the worker who verifies or reopens it.
func problemUpdateIDs(req *fieldsyncv1.UpdateProblemRequest) (id, worker syncengine.RecordID, err error) {
	id, err = wire.RecordID(req.GetProblemId())
	if err != nil {
		return id, worker, fmt.Errorf("update problem: %w: problem_id: %v", ErrBadRequest, err)
	}
	to := req.GetStatus()
	if to != statusVerified && to != statusOpen {
		return id, worker, fmt.Errorf("update problem %v: %w: status %v: want VERIFIED (verify) or OPEN (reopen)", id, ErrBadRequest, to)
	}
	if req.GetWorkerId() == "" {
		return id, worker, fmt.Errorf("update problem %v: %w: worker_id is required: the Worker who verifies or reopens the problem", id, ErrBadRequest)
	}
	if worker, err = wire.RecordID(req.GetWorkerId()); err != nil {
		return id, worker, fmt.Errorf("update problem %v: %w: worker_id: %v", id, ErrBadRequest, err)
	}
	if to == statusOpen && strings.TrimSpace(req.GetReason()) == "" {
		return id, worker, fmt.Errorf("update problem %v: %w: reopening needs --reason: why the problem goes back to OPEN", id, ErrBadRequest)
	}
	return id, worker, nil
}
