package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// ReasonNoRecord is the ErrorInfo reason of MoveRecord's NotFound: no live
// record has the id.
const ReasonNoRecord = fieldsyncv1.Reason_REASON_RECORD_NOT_FOUND

// movePage is how many records MoveRecord reads per snapshot page when it
// looks for a household's people.
const movePage = 500

// MoveRecord moves a household and its people (the persons of its village
// whose household_id names it) to another village of this server's area: one
// change of this server per record, setting area_code, all in one
// transaction, so a move is made whole or not at all. The changes are
// ordinary, audited log entries: the new village's devices receive the
// records whole at their next pull, the old village's receive the moves and
// forget the records. Visits, follow-ups, problems and risk flags stay where
// they were made.
//
// It answers InvalidArgument for a malformed id, a target that is not a
// 12-digit village code within the server's area, the household's own
// village, or a record that is not a household; NotFound for an id with no
// live record.
func (a admin) MoveRecord(ctx context.Context, req *fieldsyncv1.MoveRecordRequest) (*fieldsyncv1.MoveRecordResponse, error) {
	s := a.s
	if len(req.GetRecordId()) != len(syncengine.RecordID{}) {
		return nil, fmt.Errorf("move record: %w: record_id has %d bytes, want 16", ErrBadRequest, len(req.GetRecordId()))
	}
	id := syncengine.RecordID(req.GetRecordId())
	to := req.GetAreaCode()
	if level, err := survey.ParseAreaCode(to); level != survey.AreaVillage {
		msg := fmt.Sprintf("it is a %s code", level)
		if err != nil {
			msg = err.Error()
		}
		return nil, fmt.Errorf("move household %v: %w: area_code %q is not a 12-digit village code: %s", id, ErrBadRequest, to, msg)
	}
	if !s.serves(to) {
		return nil, fmt.Errorf("move household %v: %w: village %s is outside this server's area %s", id, ErrBadRequest, to, s.cfg.Area)
	}
	var h syncengine.Record
	err := s.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		h, err = tx.Record(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("move household %v: %w", id, err)
	}
	from, err := checkMovable(h, id, to)
	if err != nil {
		return nil, err
	}
	people, err := s.householdPeople(ctx, id, from)
	if err != nil {
		return nil, fmt.Errorf("move household %v: %w", id, err)
	}
	resp := &fieldsyncv1.MoveRecordResponse{}
	err = s.store.Update(ctx, func(tx syncengine.Tx) error {
		resp.RecordIds, resp.ChangeIds = nil, nil
		for i, rid := range slices.Concat([]syncengine.RecordID{id}, people) {
			c, err := s.writeInTx(ctx, tx, moveEdit(rid, to), func(prev, next syncengine.Record) error {
				if i == 0 {
					if now, err := checkMovable(prev, id, to); err != nil {
						return err
					} else if now != from {
						return fmt.Errorf("%w: it moved to village %s meanwhile: try again", ErrBadRequest, now)
					}
				} else if !memberOf(prev, id) || prev.Area() != from {
					return errSkip // left the household or its village meanwhile
				}
				return s.checkMoved(rid, next)
			})
			if errors.Is(err, errSkip) {
				continue
			}
			if err != nil {
				return err
			}
			resp.RecordIds = append(resp.RecordIds, slices.Clone(rid[:]))
			resp.ChangeIds = append(resp.ChangeIds, slices.Clone(c.ID[:]))
		}
		return s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_RECORD_MOVE, id.String(),
			fmt.Sprintf("household from village %s to %s, with %d people", from, to, len(resp.RecordIds)-1))
	})
	if _, isStatus := status.FromError(err); err != nil && isStatus {
		return nil, err // NotFound: the household went away meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("move household %v: %w", id, err)
	}
	s.log.InfoContext(ctx, "household moved", "record", id.String(), "from", from, "to", to, "people", len(resp.RecordIds)-1)
	return resp, nil
}

// errSkip tells MoveRecord's transaction to leave a person out.
var errSkip = errors.New("skip")

// checkMovable returns h's village, or the error for a record id that cannot
// move to village to: NotFound (a status) for no live record, ErrBadRequest
// for a record that is not a household or is in to already.
func checkMovable(h syncengine.Record, id syncengine.RecordID, to string) (string, error) {
	switch {
	case h.IsEmpty():
		return "", withReason(codes.NotFound, ReasonNoRecord, fmt.Sprintf("move household %v: no such record", id))
	case !h.Exists():
		return "", withReason(codes.NotFound, ReasonNoRecord, fmt.Sprintf("move household %v: the record is deleted", id))
	case h.Kind() != syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD):
		return "", fmt.Errorf("move record %v: %w: it is a %s, not a household: move its household, and its people move with it",
			id, ErrBadRequest, strings.ToLower(strings.TrimPrefix(fieldsyncv1.RecordKind(h.Kind()).String(), "RECORD_KIND_")))
	case h.Area() == to:
		return "", fmt.Errorf("move household %v: %w: it is in village %s already", id, ErrBadRequest, to)
	}
	return h.Area(), nil
}

// moveEdit is the edit that moves record id to village to: area_code set,
// in to's area, over the record's current version.
func moveEdit(id syncengine.RecordID, to string) syncengine.Edit {
	cid := save.NewChangeID()
	field := protowire.AppendTag(nil, wire.AreaField, protowire.BytesType)
	field = protowire.AppendString(field, to)
	return syncengine.Edit{ID: cid, Record: id, Area: to, Fields: map[int32][]byte{wire.AreaField: field}}
}

// checkMoved refuses, wrapping ErrBadRequest, a moved record that would fail
// survey validation or whose area_code would not be its area.
func (s *Server) checkMoved(id syncengine.RecordID, next syncengine.Record) error {
	rec, err := wire.FromState(next)
	if err != nil {
		return fmt.Errorf("record %v: %w", id, err)
	}
	errs := survey.Validate(rec, s.now())
	if _, area, err := wire.Identity(rec); err != nil || area != next.Area() {
		errs = append(errs, survey.FieldError{Path: "area_code", Message: fmt.Sprintf("area_code %q differs from the record's area %s", area, next.Area())})
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%w: record %v would be invalid after the move: %s", ErrBadRequest, id, strings.Join(msgs, "; "))
	}
	return nil
}

// memberOf reports whether r is a live person of household.
func memberOf(r syncengine.Record, household syncengine.RecordID) bool {
	if !r.Exists() || r.Kind() != syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_PERSON) {
		return false
	}
	rec, err := wire.FromState(r)
	return err == nil && rec.GetPerson().GetHouseholdId() == household.String()
}

// householdPeople returns the ids of the live persons of village whose
// household_id is household, in id order. It reads the village's records.
func (s *Server) householdPeople(ctx context.Context, household syncengine.RecordID, village string) ([]syncengine.RecordID, error) {
	var out []syncengine.RecordID
	var token []byte
	for {
		page, err := s.store.Snapshot(ctx, village, token, movePage)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Records {
			if r.Area() == village && memberOf(r, household) {
				out = append(out, r.ID())
			}
		}
		if page.Next == nil {
			slices.SortFunc(out, syncengine.RecordID.Compare)
			return out, nil
		}
		token = page.Next
	}
}
