package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/moves"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// InvalidRecordError is the batch validator's error for a record that fails
// survey validation; it carries the field errors for the change's result.
type InvalidRecordError struct {
	FieldErrors []survey.FieldError
}

func (e *InvalidRecordError) Error() string {
	msgs := make([]string, len(e.FieldErrors))
	for i, fe := range e.FieldErrors {
		msgs[i] = fe.Error()
	}
	return "invalid record: " + strings.Join(msgs, "; ")
}

// validator is the ReceiveOptions.Validate of one push. ReceiveBatch calls it
// sequentially; its refusals carry their field errors into the engine's
// results (syncengine.RefusalError).
type validator struct {
	peer  Peer
	areas []string
	now   time.Time
}

// validate refuses, wrapping syncengine.ErrOutOfScope, a change whose record
// lies outside the device's areas before or after it, and with an
// *InvalidRecordError a live record that fails survey validation or whose
// body's id and area disagree with the change. An edit made in the device's
// area concurrently with a move of the record out of it is accepted, whatever
// the area_code it leaves, which the move set; and an area_code that names
// where a concurrent move took the record is consistent (moves.go).
func (v *validator) validate(ctx context.Context, tx syncengine.ReadTx, c syncengine.Change, prev, next syncengine.Record) error {
	moved := moves.ConcurrentEdit(c, prev, v.areas)
	for _, area := range []string{prev.Area(), c.Area, next.Area()} {
		if area != "" && !syncengine.InAreas(area, v.areas) && !moved {
			return fmt.Errorf("%w: record %v in area %s", syncengine.ErrOutOfScope, c.RecordID, area)
		}
	}
	if !next.Exists() {
		return nil
	}
	rec, err := wire.FromState(next)
	if err != nil {
		return v.refuse([]survey.FieldError{{Path: "body", Reason: fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_MALFORMED, Message: err.Error()}})
	}
	errs := survey.Validate(rec, v.now)
	if !c.Context.Covers(prev.Version()) {
		// The change was made without seeing all the receiver holds of the
		// record: the merged state is not what its author saved, and tiers
		// holding different concurrent writes would judge it differently.
		// The rules that relate a record's fields to each other (a follow-up's
		// schedule and its readings) were applied where it was saved.
		errs = slices.DeleteFunc(errs, func(e survey.FieldError) bool {
			return e.Reason == fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_RULE
		})
	}
	if p := rec.GetProblem(); p != nil && len(errs) == 0 {
		more, err := v.problemMove(ctx, tx, c, prev, p)
		if err != nil {
			return err
		}
		errs = append(errs, more...)
	}
	if id, area, err := wire.Identity(rec); err == nil {
		if id != c.RecordID {
			errs = append(errs, survey.FieldError{Path: "id", Reason: fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_INCONSISTENT, Message: "id differs from the change's record id"})
		}
		if !moves.AreaCodeAgrees(c, prev, next, area, moved) {
			errs = append(errs, survey.FieldError{Path: "area_code", Reason: fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_INCONSISTENT, Message: "area_code differs from the change's area"})
		}
	}
	if len(errs) > 0 {
		return v.refuse(errs)
	}
	return nil
}

// problemMove checks a pushed change of a problem against the ledger's
// workflow (survey.ProblemTransition) and who may verify, as the save path
// does where the change was made.
//
// The move is judged from the state its author saw. When the change's context
// does not cover the stored status (it was made concurrently with another
// move), the receiver's state is not what the author moved from: a
// verification is then refused at the first server it reaches (the phone
// syncs and verifies again), and any other move is left to Validate's checks
// of the record alone, so that every tier decides the same whatever order
// changes arrive in.
//
// Who may verify is judged once, at the first server: there, a verification
// needs a worker who may verify (survey.MayVerify) in this store. A relayed
// change was judged by the township that took it from its device, whose
// registry may be ahead of or behind the county's; judging it again could make
// the tiers disagree.
func (v *validator) problemMove(ctx context.Context, tx syncengine.ReadTx, c syncengine.Change, prev syncengine.Record, next *fieldsyncv1.Problem) ([]survey.FieldError, error) {
	touches := false
	for _, f := range problemWorkflowFields {
		if _, ok := c.Fields[f]; ok {
			touches = true
		}
	}
	if !touches {
		return nil, nil
	}
	var before *fieldsyncv1.Problem
	if prev.Exists() {
		r, err := wire.FromState(prev)
		if err != nil {
			return nil, nil // the stored state does not decode: judge the record alone
		}
		before = r.GetProblem()
	}
	// Whether this change verifies is read from its own write of the status,
	// not the merged state, where a concurrent write may have won.
	var own fieldsyncv1.Problem
	if b, ok := c.Fields[problemStatusField]; ok {
		_ = proto.Unmarshal(b, &own) // a malformed value leaves the status unset
	}
	verifies := save.Verifies(before, &own)
	for _, w := range prev.Writes(problemStatusField) {
		if c.Context.Contains(w.Dot) {
			continue
		}
		if verifies && !v.peer.Relay {
			return []survey.FieldError{{Path: "status", Reason: fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_TRANSITION,
				Message: "the problem moved on since this device saw it: sync, check it and verify it again"}}, nil
		}
		return nil, nil
	}
	errs := survey.ProblemTransition(before, next)
	if len(errs) > 0 || !verifies || v.peer.Relay {
		return errs, nil
	}
	w, err := save.Worker(ctx, tx, next.GetVerifiedByWorkerId())
	if err != nil {
		return nil, err
	}
	if !survey.MayVerify(w) {
		errs = append(errs, survey.NotAllowedToVerify(next.GetVerifiedByWorkerId(), w))
	}
	return errs, nil
}

func (v *validator) refuse(errs []survey.FieldError) error {
	fields := make([]syncengine.FieldError, len(errs))
	for i, e := range errs {
		fields[i] = syncengine.FieldError{Path: e.Path, Reason: int32(e.Reason), Message: e.Message}
	}
	return &syncengine.RefusalError{Reason: syncengine.ReasonInvalidRecord, Fields: fields, Err: &InvalidRecordError{FieldErrors: errs}}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
