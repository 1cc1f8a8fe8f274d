// Package save is fieldsync's one save path: validate, derive, diff and write
// a record, and raise what the survey's rules derive from it, in one
// transaction of the caller's store. The device SDK (and so the CLI) and the
// servers' own changes (corrections, problem verification) save through it,
// so every tier derives the same thing:
//
//   - a follow-up gets the classification floor, urgent referral and next due
//     date survey.DeriveFollowUp derives from its measurements;
//   - a household visit raises its problems (survey.Rules.HouseholdVisitProblems,
//     against the household and people the replica holds) and return-to-poverty
//     flags (survey.Rules.RiskFlags); a clinic audit raises its problems
//     (survey.Rules.ClinicAuditProblems, with the 一口清 comparison against the
//     village's registry the replica holds). Each is an ordinary record with its
//     name-based id, written only if the replica does not hold it yet, so a
//     finding raised twice, or raised again by a later save, is one record and
//     its ledger status is never reset;
//   - a problem moves only as the ledger's workflow allows
//     (survey.ProblemTransition), and is verified only by a server or a worker
//     who may verify (survey.MayVerify).
package save

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Author is who saves and with what.
type Author struct {
	// Clock stamps the changes; its replica is their origin.
	Clock *syncengine.Clock
	// Now is the time of the save: changes' wall clock and what Validate
	// judges future times against.
	Now time.Time
	// Rules are the thresholds in force (the county's).
	Rules survey.Rules
	// Server is set when a township or county server saves: it may verify
	// problems whoever the verifying worker is.
	Server bool
	// Areas, if set, are the area prefixes the author may save in (a
	// device's); a record outside them is refused with ErrOutOfScope.
	Areas []string
}

// ErrOutOfScope is returned by Record for a record outside Author.Areas;
// nothing is stored.
var ErrOutOfScope = syncengine.ErrOutOfScope

// InvalidError is returned for a record that fails the rules; nothing is
// stored.
type InvalidError struct {
	Fields []survey.FieldError
}

func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		msgs[i] = f.Error()
	}
	return "invalid record: " + strings.Join(msgs, "; ")
}

// Result is what a save wrote.
type Result struct {
	// Changes are the changes written: the record's first (absent when the
	// record showed nothing new), then the problems and flags raised.
	Changes []syncengine.Change
	// Saved is set when the record itself changed.
	Saved bool
	// Problems and Flags count the problems and risk flags newly raised.
	Problems, Flags int
}

// Record saves rec in tx as a change by a.Clock's replica: it derives what
// the rules derive (a follow-up's schedule), validates the result, checks a
// problem's move in the ledger against the stored state, writes the fields
// that differ from the stored record, and raises the problems and flags of a
// visit or audit. It returns an error wrapping ErrOutOfScope for a record
// outside a.Areas, an *InvalidError for a record the rules refuse, and
// storage errors; on any error the caller must roll tx back. rec is not
// modified.
func Record(ctx context.Context, tx syncengine.Tx, a Author, rec *fieldsyncv1.Record) (Result, error) {
	rec = derive(rec)
	id, area, idErr := wire.Identity(rec)
	if idErr == nil && len(a.Areas) > 0 && !syncengine.InAreas(area, a.Areas) {
		return Result{}, fmt.Errorf("area %s: %w", area, ErrOutOfScope)
	}
	if errs := a.Rules.Validate(rec, a.Now); len(errs) > 0 {
		return Result{}, &InvalidError{Fields: errs}
	}
	if idErr != nil {
		return Result{}, idErr
	}
	cur, err := tx.Record(ctx, id)
	if err != nil {
		return Result{}, err
	}
	if p := rec.GetProblem(); p != nil {
		if errs, err := problemMove(ctx, tx, a, cur, p); err != nil {
			return Result{}, err
		} else if len(errs) > 0 {
			return Result{}, &InvalidError{Fields: errs}
		}
	}
	var res Result
	c, ok, err := write(ctx, tx, a, cur, rec)
	if err != nil {
		return Result{}, err
	}
	if ok {
		res.Changes, res.Saved = append(res.Changes, c), true
	}
	if err := raise(ctx, tx, a, rec, &res); err != nil {
		return Result{}, err
	}
	return res, nil
}

// ErrNoRecord is returned by Delete for an id with no live record.
var ErrNoRecord = errors.New("no such record")

// Delete deletes record id in tx as a change by a.Clock's replica, made
// against base, the version of the record its author saw (zero: the stored
// one). A deletion concurrent with an edit keeps the record with a conflict
// on its existence, which a person settles (keep the deletion or the
// record). The problems and flags a deleted visit or audit raised stay:
// they are records of their own. It returns ErrNoRecord for an id with no
// live record, and storage errors; on any error the caller must roll tx
// back.
func Delete(ctx context.Context, tx syncengine.Tx, a Author, id syncengine.RecordID, base syncengine.VersionVector) (syncengine.Change, error) {
	cur, err := tx.Record(ctx, id)
	if err != nil {
		return syncengine.Change{}, err
	}
	if !cur.Exists() {
		return syncengine.Change{}, fmt.Errorf("delete %v: %w", id, ErrNoRecord)
	}
	return syncengine.WriteLocalTx(ctx, tx, a.Clock, a.Now.UnixMilli(), syncengine.Edit{ID: NewChangeID(), Record: id, Base: base, Delete: true}, nil)
}

// derive returns rec with what the rules derive applied: a follow-up's
// schedule (survey.DeriveFollowUp). Other kinds are returned as they are. rec
// is not modified.
func derive(rec *fieldsyncv1.Record) *fieldsyncv1.Record {
	if f := rec.GetFollowUp(); f != nil {
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: survey.DeriveFollowUp(f)}}
	}
	return rec
}

// write stores the fields of rec that differ from cur, the stored state.
func write(ctx context.Context, tx syncengine.Tx, a Author, cur syncengine.Record, rec *fieldsyncv1.Record) (syncengine.Change, bool, error) {
	e, ok, err := wire.EditOf(cur, rec)
	if err != nil || !ok {
		return syncengine.Change{}, false, err
	}
	e.ID = NewChangeID()
	c, err := syncengine.WriteLocalTx(ctx, tx, a.Clock, a.Now.UnixMilli(), e, nil)
	if err != nil {
		return syncengine.Change{}, false, err
	}
	return c, true, nil
}

// NewChangeID returns a new change id, a UUIDv7 as the engine documents.
func NewChangeID() syncengine.ChangeID {
	return syncengine.ChangeID(uuid.Must(uuid.NewV7()))
}

// problemMove checks a problem's move from its stored state cur: the ledger's
// workflow, and who may verify.
func problemMove(ctx context.Context, tx syncengine.Tx, a Author, cur syncengine.Record, next *fieldsyncv1.Problem) ([]survey.FieldError, error) {
	var prev *fieldsyncv1.Problem
	if cur.Exists() {
		r, err := wire.FromState(cur)
		if err != nil {
			return nil, fmt.Errorf("stored problem %v: %w", cur.ID(), err)
		}
		prev = r.GetProblem()
	}
	errs := survey.ProblemTransition(prev, next)
	if len(errs) > 0 || a.Server || !Verifies(prev, next) {
		return errs, nil
	}
	w, err := Worker(ctx, tx, next.GetVerifiedByWorkerId())
	if err != nil {
		return nil, err
	}
	if !survey.MayVerify(w) {
		errs = append(errs, survey.NotAllowedToVerify(next.GetVerifiedByWorkerId(), w))
	}
	return errs, nil
}

// Verifies reports whether a problem going from prev (nil if new) to next is
// being verified.
func Verifies(prev, next *fieldsyncv1.Problem) bool {
	v := fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED
	return next.GetStatus() == v && prev.GetStatus() != v
}

// Worker returns the live Worker record id as tx holds it, or nil.
func Worker(ctx context.Context, tx syncengine.ReadTx, id string) (*fieldsyncv1.Worker, error) {
	r, err := live(ctx, tx, id)
	if err != nil || r == nil {
		return nil, err
	}
	return r.GetWorker(), nil
}

// live returns the live record id as tx holds it, or nil for an id that is
// not a record id or names no live record.
func live(ctx context.Context, tx syncengine.ReadTx, id string) (*fieldsyncv1.Record, error) {
	rid, err := wire.RecordID(id)
	if err != nil {
		return nil, nil
	}
	st, err := tx.Record(ctx, rid)
	if err != nil || !st.Exists() {
		return nil, err
	}
	r, err := wire.FromState(st)
	if err != nil {
		return nil, nil // undecodable: as if absent
	}
	return r, nil
}

// raise writes the problems and risk flags the rules raise for rec that tx
// does not hold yet.
func raise(ctx context.Context, tx syncengine.Tx, a Author, rec *fieldsyncv1.Record, res *Result) error {
	var problems []*fieldsyncv1.Problem
	var flags []*fieldsyncv1.RiskFlag
	switch b := rec.GetBody().(type) {
	case *fieldsyncv1.Record_HouseholdVisit:
		v := b.HouseholdVisit
		var household *fieldsyncv1.Household
		if r, err := live(ctx, tx, v.GetHouseholdId()); err != nil {
			return err
		} else if r != nil {
			household = r.GetHousehold()
		}
		people := make(map[string]*fieldsyncv1.Person)
		for _, f := range v.GetFindings() {
			r, err := live(ctx, tx, f.GetPersonId())
			if err != nil {
				return err
			}
			if p := r.GetPerson(); p != nil {
				people[f.GetPersonId()] = p
			}
		}
		problems = a.Rules.HouseholdVisitProblems(v, household, people)
		flags = a.Rules.RiskFlags(v)
	case *fieldsyncv1.Record_ClinicAudit:
		registry, err := villageNumbers(ctx, tx, b.ClinicAudit.GetAreaCode())
		if err != nil {
			return err
		}
		problems = a.Rules.ClinicAuditProblems(b.ClinicAudit, registry)
	default:
		return nil
	}
	for _, p := range problems {
		ok, err := raiseOne(ctx, tx, a, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: p}}, res)
		if err != nil {
			return err
		}
		if ok {
			res.Problems++
		}
	}
	for _, f := range flags {
		ok, err := raiseOne(ctx, tx, a, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_RiskFlag{RiskFlag: f}}, res)
		if err != nil {
			return err
		}
		if ok {
			res.Flags++
		}
	}
	return nil
}

// errRaised is wrapped around a derived record the rules refuse: a bug in
// the rules, never the user's input.
var errRaised = errors.New("a problem or flag the rules raised is invalid")

// raiseOne writes rec, a derived problem or flag, unless tx holds its record
// already (open, moved on in the ledger, or deleted by someone).
func raiseOne(ctx context.Context, tx syncengine.Tx, a Author, rec *fieldsyncv1.Record, res *Result) (bool, error) {
	id, _, err := wire.Identity(rec)
	if err != nil {
		return false, err
	}
	cur, err := tx.Record(ctx, id)
	if err != nil || !cur.IsEmpty() {
		return false, err
	}
	if errs := a.Rules.Validate(rec, a.Now); len(errs) > 0 {
		return false, fmt.Errorf("%w: %v", errRaised, &InvalidError{Fields: errs})
	}
	c, ok, err := write(ctx, tx, a, cur, rec)
	if ok {
		res.Changes = append(res.Changes, c)
	}
	return ok, err
}

// villageNumbers counts the 一口清 numbers of village from the registry tx
// holds, or returns nil when tx holds none of the village's people (a
// comparison with nothing would raise a problem for every number).
func villageNumbers(ctx context.Context, tx syncengine.ReadTx, village string) (*fieldsyncv1.StatedNumbers, error) {
	rs, err := tx.RecordsInArea(ctx, village, syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD), syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_PERSON))
	if err != nil {
		return nil, err
	}
	households := make(map[string]*fieldsyncv1.Household)
	var people []*fieldsyncv1.Person
	for _, st := range rs {
		if !st.Exists() {
			continue
		}
		r, err := wire.FromState(st)
		if err != nil {
			continue
		}
		if h := r.GetHousehold(); h != nil {
			households[h.GetId()] = h
		} else if p := r.GetPerson(); p != nil {
			people = append(people, p)
		}
	}
	if len(people) == 0 {
		return nil, nil
	}
	return survey.VillageNumbers(households, people), nil
}
