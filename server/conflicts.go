package server

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// conflictPage is how many records ListConflicts reads per snapshot page.
const conflictPage = 500

// ListConflicts lists the records of the area with open conflicts. It reads
// every record of the area: an operator's question, not a device's.
func (a admin) ListConflicts(ctx context.Context, req *fieldsyncv1.ListConflictsRequest) (*fieldsyncv1.ListConflictsResponse, error) {
	prefix := req.GetAreaPrefix()
	if prefix == "" {
		prefix = a.s.cfg.Area
	}
	if prefix != "" && !survey.DivisionPrefix(prefix) {
		return nil, fmt.Errorf("list conflicts: %w: area prefix %q is not a county (6 digits), township (9) or village (12) code", ErrBadRequest, prefix)
	}
	resp := &fieldsyncv1.ListConflictsResponse{}
	var token []byte
	for {
		page, err := a.s.store.Snapshot(ctx, prefix, token, conflictPage)
		if err != nil {
			return nil, fmt.Errorf("list conflicts: %w", err)
		}
		for _, r := range page.Records {
			cs := r.Conflicts()
			if len(cs) == 0 {
				continue
			}
			id := r.ID()
			rc := &fieldsyncv1.RecordConflicts{RecordId: id[:], Kind: fieldsyncv1.RecordKind(r.Kind()), AreaCode: r.Area()}
			for _, c := range cs {
				fc := &fieldsyncv1.FieldConflict{Number: c.ID.Field}
				for _, w := range c.Writes {
					fc.Values = append(fc.Values, &fieldsyncv1.FieldState{
						Number: c.ID.Field, Value: w.Value, Dot: wire.DotToProto(w.Dot), Hlc: wire.StampToProto(w.Stamp), Deleted: w.Delete,
					})
				}
				rc.Conflicts = append(rc.Conflicts, fc)
			}
			resp.Records = append(resp.Records, rc)
		}
		if page.Next == nil {
			return resp, nil
		}
		token = page.Next
	}
}

// ResolveConflict writes, as this server, the chosen value of a conflicting
// field over every value the conflict holds. The record must stay valid.
func (a admin) ResolveConflict(ctx context.Context, req *fieldsyncv1.ResolveConflictRequest) (*fieldsyncv1.ResolveConflictResponse, error) {
	s := a.s
	if len(req.GetRecordId()) != len(syncengine.RecordID{}) {
		return nil, fmt.Errorf("resolve conflict: %w: record_id has %d bytes, want 16", ErrBadRequest, len(req.GetRecordId()))
	}
	id := syncengine.RecordID(req.GetRecordId())
	field := req.GetFieldNumber()
	var r syncengine.Record
	err := s.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("resolve conflict: %w", err)
	}
	var conflict *syncengine.Conflict
	for _, c := range r.Conflicts() {
		if c.ID.Field == field {
			conflict = &c
			break
		}
	}
	if conflict == nil {
		return nil, fmt.Errorf("resolve conflict %v/%d: %w on that field: list the open ones with ListConflicts", id, field, ErrNoConflict)
	}
	if field == syncengine.ExistenceField {
		return a.resolveExistence(ctx, r, conflict, req)
	}
	var value []byte
	var chosen string // for the audit trail: whose value, never the value
	switch ch := req.GetChoice().(type) {
	case *fieldsyncv1.ResolveConflictRequest_Keep:
		if ch.Keep < 0 || int(ch.Keep) >= len(conflict.Writes) {
			return nil, fmt.Errorf("resolve conflict %v/%d: %w: keep %d, the conflict has values 0 to %d", id, field, ErrBadRequest, ch.Keep, len(conflict.Writes)-1)
		}
		value = conflict.Writes[ch.Keep].Value
		chosen = fmt.Sprintf("kept value %d of %d, written by replica %v", ch.Keep, len(conflict.Writes), conflict.Writes[ch.Keep].Dot.Replica)
	case *fieldsyncv1.ResolveConflictRequest_Value:
		value = ch.Value
		chosen = fmt.Sprintf("a new value over the %d values", len(conflict.Writes))
	default:
		return nil, fmt.Errorf("resolve conflict %v/%d: %w: say which value to keep (keep) or give a new one (value)", id, field, ErrBadRequest)
	}
	if err := s.checkResolution(r, field, value); err != nil {
		return nil, fmt.Errorf("resolve conflict %v/%d: %w", id, field, err)
	}
	cid := save.NewChangeID()
	// The change and its audit entry commit together.
	kind := strings.ToLower(strings.TrimPrefix(fieldsyncv1.RecordKind(r.Kind()).String(), "RECORD_KIND_"))
	err = s.store.Update(ctx, func(tx syncengine.Tx) error {
		if _, err := s.writeInTx(ctx, tx, syncengine.Edit{ID: cid, Record: id, Base: r.Version(), Fields: map[int32][]byte{field: value}}, nil); err != nil {
			return err
		}
		return s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_CONFLICT_RESOLVE, fmt.Sprintf("%v/%d", id, field),
			fmt.Sprintf("%s field %d: %s", kind, field, chosen))
	})
	if err != nil {
		return nil, fmt.Errorf("resolve conflict: %w", err)
	}
	s.log.InfoContext(ctx, "conflict resolved", "record", id.String(), "field", field)
	s.nudgeUpstream()
	return &fieldsyncv1.ResolveConflictResponse{ChangeId: cid[:]}, nil
}

// checkResolution refuses, wrapping ErrBadRequest, a value that is not an
// encoding of field or that leaves the record invalid.
func (s *Server) checkResolution(r syncengine.Record, field int32, value []byte) error {
	if !r.Exists() {
		return nil
	}
	rec, err := wire.FromState(r)
	if err != nil {
		return err
	}
	body := wire.Body(rec)
	fields, err := wire.Fields(body)
	if err != nil {
		return err
	}
	if len(value) > 0 {
		if got, err := wire.SplitFields(value); err != nil || len(got) != 1 || got[field] == nil {
			return fmt.Errorf("%w: the value is not an encoding of field %d alone", ErrBadRequest, field)
		}
		fields[field] = value
	} else {
		delete(fields, field)
	}
	next := proto.Clone(body)
	proto.Reset(next)
	if err := proto.Unmarshal(wire.JoinFields(fields), next); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	nrec, err := wire.Wrap(r.Kind(), next)
	if err != nil {
		return err
	}
	if errs := survey.Validate(nrec, s.now()); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%w: the record would be invalid: %s", ErrBadRequest, strings.Join(msgs, "; "))
	}
	return nil
}

// resolveExistence settles a conflict between a deletion and an edit of
// record r: req keeps one of the conflict's writes (a new value means
// nothing here), and the server writes over all of them a deletion, or a
// change that keeps the record where the kept write put it. A record kept
// must pass the rules, as any saved record.
func (a admin) resolveExistence(ctx context.Context, r syncengine.Record, conflict *syncengine.Conflict, req *fieldsyncv1.ResolveConflictRequest) (*fieldsyncv1.ResolveConflictResponse, error) {
	s, id := a.s, r.ID()
	keep, ok := req.GetChoice().(*fieldsyncv1.ResolveConflictRequest_Keep)
	if !ok || keep.Keep < 0 || int(keep.Keep) >= len(conflict.Writes) {
		return nil, fmt.Errorf("resolve conflict %v/0: %w: a deletion and an edit: keep one of the values 0 to %d (the deletion, or the record)", id, ErrBadRequest, len(conflict.Writes)-1)
	}
	deletes := false
	for _, x := range conflict.Writes {
		deletes = deletes || x.Delete
	}
	if !deletes {
		return nil, fmt.Errorf("resolve conflict %v/0: %w: none of its values deletes the record (a move raced another: the server settles it)", id, ErrBadRequest)
	}
	w := conflict.Writes[keep.Keep]
	e := syncengine.Edit{ID: save.NewChangeID(), Record: id, Base: r.Version(), Delete: w.Delete, Area: string(w.Value)}
	chosen := fmt.Sprintf("kept the deletion by replica %v", w.Dot.Replica)
	if !w.Delete {
		chosen = fmt.Sprintf("kept the record, as replica %v did", w.Dot.Replica)
		if err := s.checkKept(r); err != nil {
			return nil, fmt.Errorf("resolve conflict %v/0: %w", id, err)
		}
	}
	kind := strings.ToLower(strings.TrimPrefix(fieldsyncv1.RecordKind(r.Kind()).String(), "RECORD_KIND_"))
	err := s.store.Update(ctx, func(tx syncengine.Tx) error {
		if _, err := s.writeInTx(ctx, tx, e, nil); err != nil {
			return err
		}
		return s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_CONFLICT_RESOLVE, fmt.Sprintf("%v/0", id), fmt.Sprintf("%s existence: %s", kind, chosen))
	})
	if err != nil {
		return nil, fmt.Errorf("resolve conflict: %w", err)
	}
	s.log.InfoContext(ctx, "conflict resolved", "record", id.String(), "field", 0, "deleted", w.Delete)
	s.nudgeUpstream()
	return &fieldsyncv1.ResolveConflictResponse{ChangeId: e.ID[:]}, nil
}

// checkKept refuses, wrapping ErrBadRequest, keeping record r when its
// fields fail the rules.
func (s *Server) checkKept(r syncengine.Record) error {
	rec, err := wire.FromState(r)
	if err != nil {
		return fmt.Errorf("%w: the record's fields do not decode: %v", ErrBadRequest, err)
	}
	if errs := survey.Validate(rec, s.now()); len(errs) > 0 {
		return fmt.Errorf("%w: the record kept would be invalid: %v", ErrBadRequest, &InvalidRecordError{FieldErrors: errs})
	}
	return nil
}
