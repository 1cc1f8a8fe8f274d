package survey

import (
	"fmt"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The problem ledger (问题台账) is a workflow: a problem is raised OPEN, becomes
// RECTIFIED with the measure, when and by whom, and becomes VERIFIED (销号)
// only from RECTIFIED, by someone other than who rectified it and with the
// authority to verify; reopening (back to OPEN) needs a reason. Validate checks
// what each status requires of the record alone; ProblemTransition checks a
// change from one state to the next; MayVerify who may verify.

const (
	problemOpen      = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN
	problemRectified = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED
	problemVerified  = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED
	reasonTransition = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_TRANSITION
)

// derivedID checks the id of a problem or risk flag: the name-based id its
// source derives (want), or a UUIDv7 for one entered by hand.
func (c *checker) derivedID(id, want, derivation string) {
	if id == "" {
		c.recordID(id)
		return
	}
	u, ok := c.uuid("id", id)
	switch {
	case !ok:
	case u.Version() == 5 && id != want:
		c.add("id", reasonConflict, "id %s is a name-based id but not the one its source, item and person derive (%s): compute it with %s", id, want, derivation)
	case u.Version() != 5 && u.Version() != 7:
		c.add("id", reasonMalformed, "id %s is a version %d UUID, want version 7 (or the derived version 5 id)", id, u.Version())
	}
}

// problemState checks what the problem's status requires of the record.
func (c *checker) problemState(p *fieldsyncv1.Problem) {
	c.derivedID(p.GetId(), ProblemID(p.GetSourceRecordId(), p.GetItem(), p.GetPersonId()), "survey.ProblemID")
	c.ref("rectified_by_worker_id", p.GetRectifiedByWorkerId(), false)
	c.ref("verified_by_worker_id", p.GetVerifiedByWorkerId(), false)
	c.ref("reopened_by_worker_id", p.GetReopenedByWorkerId(), false)
	c.text("reopen_reason", p.GetReopenReason(), false, 1000)
	c.timestamp("reopened_at", p.GetReopenedAt(), false)
	switch p.GetStatus() {
	case problemOpen:
		if p.GetReopenedAt() != nil && p.GetReopenReason() == "" {
			c.add("reopen_reason", reasonRequired, "a reopened problem needs the reason it was reopened")
		}
	case problemRectified, problemVerified:
		if p.GetMeasure() == "" {
			c.add("measure", reasonRequired, "a rectified problem needs the rectification measure (整改措施)")
		}
		rect, okRect := c.timestamp("rectified_at", p.GetRectifiedAt(), true)
		c.ref("rectified_by_worker_id", p.GetRectifiedByWorkerId(), true)
		if p.GetStatus() != problemVerified {
			return
		}
		ver, okVer := c.timestamp("verified_at", p.GetVerifiedAt(), true)
		c.ref("verified_by_worker_id", p.GetVerifiedByWorkerId(), true)
		if okRect && okVer && ver.Before(rect) {
			c.add("verified_at", reasonConflict, "verified_at is before rectified_at")
		}
		if by := p.GetVerifiedByWorkerId(); by != "" && by == p.GetRectifiedByWorkerId() {
			c.add("verified_by_worker_id", reasonNotAllowed, "the worker who rectified a problem cannot verify it: another worker verifies (销号)")
		}
	}
}

// ProblemTransition returns the field errors of a change that takes a problem
// from prev (nil for a new problem) to next, or nil when the ledger's workflow
// allows it: a problem is raised OPEN; OPEN may become RECTIFIED; RECTIFIED may
// become VERIFIED; RECTIFIED or VERIFIED may go back to OPEN with a new reopen
// reason and time; VERIFIED never becomes RECTIFIED without being reopened.
// Within a status, and from RECTIFIED to VERIFIED, the record of how the
// problem got there (the measure, who and when it was rectified, verified)
// does not change. What each status
// requires of the record alone is Validate's.
func ProblemTransition(prev, next *fieldsyncv1.Problem) []FieldError {
	c := &checker{}
	from, to := prev.GetStatus(), next.GetStatus()
	switch {
	case prev == nil:
		if to != problemOpen {
			c.add("status", reasonTransition, "a problem is raised OPEN, not %s: save it open, then rectify it", to)
		}
	case from == to:
		c.unchanged(prev, next, to)
	case from == problemOpen && to == problemVerified:
		c.add("status", reasonTransition, "an OPEN problem cannot be verified: it must be rectified first (open → rectified → verified)")
	case from == problemVerified && to == problemRectified:
		c.add("status", reasonTransition, "a verified problem cannot go back to RECTIFIED: reopen it with a reason")
	case to == problemOpen:
		if next.GetReopenReason() == "" || next.GetReopenedAt() == nil || next.GetReopenedByWorkerId() == "" {
			c.add("reopen_reason", reasonRequired, "reopening a problem needs the reason, when and by whom (reopen_reason, reopened_at, reopened_by_worker_id)")
		} else if prev.GetReopenedAt() != nil && !next.GetReopenedAt().AsTime().After(prev.GetReopenedAt().AsTime()) {
			c.add("reopened_at", reasonTransition, "reopening again needs a new reopened_at after the last one")
		}
	case to == problemVerified:
		// RECTIFIED → VERIFIED: the rectification verified is the one
		// recorded; rewriting who rectified it would let the rectifier verify.
		c.unchanged(prev, next, problemRectified)
	case to == problemRectified:
		// OPEN → RECTIFIED; Validate checks the who, when and measure.
	default:
		c.add("status", reasonTransition, "a problem cannot go from %s to %s", from, to)
	}
	return c.errs
}

// unchanged refuses a change of the record of how the problem reached its
// current status, the status staying the same.
func (c *checker) unchanged(prev, next *fieldsyncv1.Problem, status fieldsyncv1.ProblemStatus) {
	type fact struct {
		path       string
		prev, next string
	}
	ts := func(p interface{ GetSeconds() int64 }) string {
		if p == nil {
			return ""
		}
		return fmt.Sprint(p.GetSeconds())
	}
	var facts []fact
	if status == problemRectified || status == problemVerified {
		facts = append(facts,
			fact{"rectified_by_worker_id", prev.GetRectifiedByWorkerId(), next.GetRectifiedByWorkerId()},
			fact{"rectified_at", ts(prev.GetRectifiedAt()), ts(next.GetRectifiedAt())},
			fact{"measure", prev.GetMeasure(), next.GetMeasure()})
	}
	if status == problemVerified {
		facts = append(facts,
			fact{"verified_by_worker_id", prev.GetVerifiedByWorkerId(), next.GetVerifiedByWorkerId()},
			fact{"verified_at", ts(prev.GetVerifiedAt()), ts(next.GetVerifiedAt())})
	}
	for _, f := range facts {
		if f.prev != "" && f.prev != f.next {
			c.add(f.path, reasonTransition, "%s of a %s problem cannot change: reopen it and move it on again", f.path, prev.GetStatus())
		}
	}
}

// MayVerify reports whether worker may verify (销号) a rectified problem: a
// township health centre's staff or a county inspector may; a village doctor,
// or a worker the replica does not hold (nil), may not.
func MayVerify(worker *fieldsyncv1.Worker) bool {
	switch worker.GetRole() {
	case fieldsyncv1.WorkerRole_WORKER_ROLE_TOWNSHIP_STAFF, fieldsyncv1.WorkerRole_WORKER_ROLE_COUNTY_INSPECTOR:
		return worker.GetLeftAt() == nil
	}
	return false
}

// NotAllowedToVerify is the field error of a verification by a worker who may
// not verify (MayVerify), or whom the replica does not hold.
func NotAllowedToVerify(workerID string, worker *fieldsyncv1.Worker) FieldError {
	msg := fmt.Sprintf("worker %s may not verify problems: only township staff, county inspectors or a township or county server verify (销号)", workerID)
	if worker == nil {
		msg = fmt.Sprintf("worker %s is not in the registry here: only township staff, county inspectors or a township or county server verify (销号)", workerID)
	}
	return FieldError{Path: "verified_by_worker_id", Reason: reasonNotAllowed, Message: msg}
}

// VillageNumbers counts a village's 一口清 numbers from the registry, the
// figures a doctor's stated numbers are compared with: registered poor people
// (living members of registered out-of-poverty and monitored households), the
// sick among them (a chronic condition), their chronic handbooks issued and
// 一人一策 held, and those under major-illness special treatment.
func VillageNumbers(households map[string]*fieldsyncv1.Household, people []*fieldsyncv1.Person) *fieldsyncv1.StatedNumbers {
	var poor, sick, handbooks, plans, major int32
	for _, p := range people {
		switch households[p.GetHouseholdId()].GetStatus() {
		case fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_REGISTERED_OUT_OF_POVERTY, fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_MONITORED:
		default:
			continue
		}
		if p.GetResidency() == fieldsyncv1.Residency_RESIDENCY_DECEASED {
			continue
		}
		poor++
		if !ChronicPatient(p) {
			continue
		}
		sick++
		if p.GetHasChronicHandbook() {
			handbooks++
		}
		if p.GetHasOnePersonPlan() {
			plans++
		}
		for _, c := range p.GetConditions() {
			if c.GetMajorIllness() {
				major++
				break
			}
		}
	}
	return &fieldsyncv1.StatedNumbers{
		RegisteredPoorPeople: &poor, SickPeople: &sick, ChronicHandbooksIssued: &handbooks,
		OnePersonPlansHeld: &plans, MajorIllnessTreated: &major,
	}
}

// ProblemOverdue returns whether problem p is overdue (逾期, for the daily list
// 日通报) on day asOf, and by how many calendar days: it is when it is still
// OPEN and its deadline is before asOf (the deadline day itself is not
// overdue). A RECTIFIED problem awaits verification and is not overdue for
// rectification; a VERIFIED one is closed; one without a deadline is never
// overdue.
func ProblemOverdue(p *fieldsyncv1.Problem, asOf *fieldsyncv1.Date) (int, bool) {
	d := p.GetDeadline()
	if p.GetStatus() != problemOpen || d == nil || CompareDates(d, asOf) >= 0 {
		return 0, false
	}
	return DaysBetween(d, asOf), true
}
