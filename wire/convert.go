package wire

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// This file is the one place where protobuf sync messages and the engine's
// types meet. Nothing else in the package builds a syncengine.Change from a
// fieldsyncv1.Change or the reverse.

// CapabilityVersion is the sync protocol version this build speaks.
const CapabilityVersion = 2

// ErrMalformedChange is returned (wrapped) by ChangeFromProto when a wire
// change cannot be turned into a valid engine change: a missing or
// wrong-length id, no operation, a body of another kind than the change, a
// field number out of range, or a structurally invalid change.
var ErrMalformedChange = errors.New("malformed change")

// idLen is the length of every binary id on the wire.
const idLen = 16

// ChangeToProto returns the wire form of c. An upsert carries a Record whose
// body holds c's non-empty field values and field_numbers listing every field
// c sets; a field with an empty value is listed and left out of the body, which
// means cleared. Field values are copied byte for byte into the body (fields
// this build does not know stay unknown fields of the body). A delete becomes a
// Deletion with an empty reason (the engine keeps no reason). The result does
// not share memory with c. It returns an error for a kind this build has no
// body message for or field values that are not valid protobuf encodings.
func ChangeToProto(c syncengine.Change) (*fieldsyncv1.Change, error) {
	pc := &fieldsyncv1.Change{
		ChangeId: slices.Clone(c.ID[:]),
		RecordId: slices.Clone(c.RecordID[:]),
		Kind:     fieldsyncv1.RecordKind(c.Kind),
		AreaCode: c.Area,
		Dot:      DotToProto(c.Dot),
		Hlc:      StampToProto(c.Stamp),
		Context:  VersionVectorToProto(c.Context),
	}
	if c.Delete {
		pc.Operation = &fieldsyncv1.Change_Deletion{Deletion: &fieldsyncv1.Deletion{}}
		return pc, nil
	}
	set := make(map[int32][]byte, len(c.Fields))
	for n, v := range c.Fields {
		if len(v) > 0 {
			set[n] = v
		}
	}
	body, err := NewBody(c.Kind)
	if err != nil {
		return nil, fmt.Errorf("change %v: %w", c.ID, err)
	}
	// Unmarshal copies the bytes: the body does not alias c.Fields.
	if err := proto.Unmarshal(JoinFields(set), body); err != nil {
		return nil, fmt.Errorf("change %v: decode fields: %w", c.ID, err)
	}
	rec, err := Wrap(c.Kind, body)
	if err != nil {
		return nil, fmt.Errorf("change %v: %w", c.ID, err)
	}
	pc.Operation = &fieldsyncv1.Change_Upsert{Upsert: &fieldsyncv1.Upsert{
		Record:       rec,
		FieldNumbers: c.FieldNumbers(),
	}}
	return pc, nil
}

// ChangeFromProto returns the engine form of pc, or an error wrapping
// ErrMalformedChange. Only the fields listed in field_numbers are taken from
// the upsert's body; a listed field absent from the body is cleared (an empty
// value). The result passes syncengine.Change.Validate and does not share
// memory with pc.
func ChangeFromProto(pc *fieldsyncv1.Change) (syncengine.Change, error) {
	var c syncengine.Change
	bad := func(format string, args ...any) (syncengine.Change, error) {
		return syncengine.Change{}, fmt.Errorf("%w: %s", ErrMalformedChange, fmt.Sprintf(format, args...))
	}
	if len(pc.GetChangeId()) != idLen || len(pc.GetRecordId()) != idLen {
		return bad("change_id and record_id must be %d bytes", idLen)
	}
	c.ID = syncengine.ChangeID(pc.GetChangeId())
	c.RecordID = syncengine.RecordID(pc.GetRecordId())
	c.Kind = syncengine.Kind(pc.GetKind())
	c.Area = pc.GetAreaCode()
	dot, err := DotFromProto(pc.GetDot())
	if err != nil {
		return bad("dot: %v", err)
	}
	c.Origin, c.Dot = dot.Replica, dot
	c.Stamp = StampFromProto(pc.GetHlc(), c.Origin)
	if c.Context, err = VersionVectorFromProto(pc.GetContext()); err != nil {
		return bad("context: %v", err)
	}
	switch op := pc.GetOperation().(type) {
	case *fieldsyncv1.Change_Deletion:
		c.Delete = true
	case *fieldsyncv1.Change_Upsert:
		if c.Fields, err = upsertFields(c.Kind, op.Upsert); err != nil {
			return bad("upsert: %v", err)
		}
	default:
		return bad("no operation")
	}
	if err := c.Validate(); err != nil {
		return bad("%v", err)
	}
	return c, nil
}

// upsertFields returns the fields an upsert sets: each listed field's encoding
// from the body, or an empty value when the body lacks it.
func upsertFields(kind syncengine.Kind, u *fieldsyncv1.Upsert) (map[int32][]byte, error) {
	rec := u.GetRecord()
	if packed := u.GetPackedRecord(); len(packed) > 0 {
		if rec != nil {
			return nil, errors.New("both a record and a packed record")
		}
		var err error
		if rec, err = UnpackRecord(packed); err != nil {
			return nil, err
		}
	}
	var body map[int32][]byte
	if rec != nil && KindOf(rec) != 0 {
		if got := KindOf(rec); got != kind {
			return nil, fmt.Errorf("body of kind %d in a change of kind %d", got, kind)
		}
		var err error
		if body, err = Fields(Body(rec)); err != nil {
			return nil, err
		}
	}
	fields := make(map[int32][]byte, len(u.GetFieldNumbers()))
	for _, n := range u.GetFieldNumbers() {
		if n < 1 || n > syncengine.MaxFieldNumber {
			return nil, fmt.Errorf("field number %d out of range", n)
		}
		v := body[n]
		if v == nil {
			v = []byte{}
		}
		fields[n] = v
	}
	return fields, nil
}

// MaxUnknownBytes bounds the encoded size of the fields of one pushed change
// that this build's record kind does not know (written by a newer app): they
// are kept and forwarded byte for byte, so an older server never erases what
// a newer app wrote, but a server takes no more than this per change
// (CheckUnknown). What a server sends down was taken under its own bound, and
// is not bounded again: an older phone must never stop pulling.
const MaxUnknownBytes = 4 << 10

// CheckUnknown returns an error wrapping ErrMalformedChange for a change that
// writes more than MaxUnknownBytes of fields its kind does not know, or a
// field number its kind reserves.
func CheckUnknown(c syncengine.Change) error {
	m, err := NewBody(c.Kind)
	if err != nil {
		return nil // a kind this build does not know passes whole
	}
	desc := m.ProtoReflect().Descriptor()
	unknown := 0
	for _, n := range slices.Sorted(maps.Keys(c.Fields)) {
		if desc.Fields().ByNumber(protoreflect.FieldNumber(n)) != nil || n == syncengine.ExistenceField {
			continue
		}
		if desc.ReservedRanges().Has(protoreflect.FieldNumber(n)) {
			return fmt.Errorf("%w: field number %d is reserved in %s: no version of fieldsync writes it", ErrMalformedChange, n, desc.Name())
		}
		if unknown += len(c.Fields[n]); unknown > MaxUnknownBytes {
			return fmt.Errorf("%w: fields unknown to this version carry more than %d bytes: update fieldsync, or the sending app wrote fields it should not", ErrMalformedChange, MaxUnknownBytes)
		}
	}
	return nil
}

// DotToProto returns the wire form of d.
func DotToProto(d syncengine.Dot) *fieldsyncv1.Dot {
	return &fieldsyncv1.Dot{ReplicaId: slices.Clone(d.Replica[:]), Counter: d.Counter}
}

// DotFromProto returns the engine form of d, or an error when the replica id
// is not 16 bytes or the counter is 0.
func DotFromProto(d *fieldsyncv1.Dot) (syncengine.Dot, error) {
	if len(d.GetReplicaId()) != idLen {
		return syncengine.Dot{}, fmt.Errorf("replica id of %d bytes", len(d.GetReplicaId()))
	}
	if d.GetCounter() == 0 {
		return syncengine.Dot{}, errors.New("zero counter")
	}
	return syncengine.Dot{Replica: syncengine.ReplicaID(d.GetReplicaId()), Counter: d.GetCounter()}, nil
}

// StampToProto returns the wire form of s; the replica is implied by the
// change that carries the stamp.
func StampToProto(s syncengine.Stamp) *fieldsyncv1.HlcStamp {
	return &fieldsyncv1.HlcStamp{WallMs: s.WallMS, Counter: s.Counter}
}

// StampFromProto returns the engine stamp of h made by replica; nil is the
// zero time.
func StampFromProto(h *fieldsyncv1.HlcStamp, replica syncengine.ReplicaID) syncengine.Stamp {
	return syncengine.Stamp{WallMS: h.GetWallMs(), Counter: h.GetCounter(), Replica: replica}
}

// VersionVectorToProto returns the wire form of v, entries in ascending
// replica order.
func VersionVectorToProto(v syncengine.VersionVector) *fieldsyncv1.VersionVector {
	dots := v.Dots()
	out := &fieldsyncv1.VersionVector{Entries: make([]*fieldsyncv1.Dot, len(dots))}
	for i, d := range dots {
		out.Entries[i] = DotToProto(d)
	}
	return out
}

// VersionVectorFromProto returns the engine form of v. It refuses entries
// that are not valid dots and a replica listed twice or out of order, so
// that one vector has one wire form.
func VersionVectorFromProto(v *fieldsyncv1.VersionVector) (syncengine.VersionVector, error) {
	dots := make([]syncengine.Dot, len(v.GetEntries()))
	for i, e := range v.GetEntries() {
		d, err := DotFromProto(e)
		if err != nil {
			return syncengine.VersionVector{}, fmt.Errorf("entry %d: %w", i, err)
		}
		if i > 0 && dots[i-1].Replica.Compare(d.Replica) >= 0 {
			return syncengine.VersionVector{}, fmt.Errorf("entry %d: replicas not in ascending order", i)
		}
		dots[i] = d
	}
	return syncengine.NewVersionVector(dots...), nil
}

// OutcomeToProto returns the wire outcome of o; the values match one to one,
// and an outcome this build does not know becomes UNSPECIFIED.
func OutcomeToProto(o syncengine.Outcome) fieldsyncv1.ChangeOutcome {
	if o < syncengine.OutcomeApplied || o > syncengine.OutcomeMalformed {
		return fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_UNSPECIFIED
	}
	return fieldsyncv1.ChangeOutcome(o)
}

// OutcomeFromProto returns the engine outcome of o, with ok false for
// UNSPECIFIED and values this build does not know.
func OutcomeFromProto(o fieldsyncv1.ChangeOutcome) (out syncengine.Outcome, ok bool) {
	if o < fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED || o > fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_MALFORMED {
		return 0, false
	}
	return syncengine.Outcome(o), true
}

// RecordStateToProto returns the snapshot form of r: its identity and the
// engine's exact encoding, and with readable also the readable view: per
// field the shown value with the write that set it, open conflicts with every
// concurrent write, and the version vector. The view is lossy (the per-field
// causal contexts are not carried); receivers rebuild r from engine_state.
func RecordStateToProto(r syncengine.Record, readable bool) *fieldsyncv1.RecordState {
	id := r.ID()
	rs := &fieldsyncv1.RecordState{
		RecordId: slices.Clone(id[:]),
		Kind:     fieldsyncv1.RecordKind(r.Kind()),
		AreaCode: r.Area(),
		Deleted:  r.Deleted(),
	}
	rs.EngineState, _ = r.MarshalBinary() // never fails (see syncengine.Record.AppendBinary)
	if !readable {
		return rs
	}
	rs.Version = VersionVectorToProto(r.Version())
	values := r.Values()
	for _, n := range slices.Sorted(maps.Keys(values)) {
		if ws := r.Writes(n); len(ws) > 0 {
			rs.Fields = append(rs.Fields, fieldStateToProto(n, ws[0]))
		}
	}
	for _, c := range r.Conflicts() {
		fc := &fieldsyncv1.FieldConflict{Number: c.ID.Field}
		for _, w := range c.Writes {
			fc.Values = append(fc.Values, fieldStateToProto(c.ID.Field, w))
		}
		rs.Conflicts = append(rs.Conflicts, fc)
	}
	return rs
}

func fieldStateToProto(n int32, w syncengine.Write) *fieldsyncv1.FieldState {
	return &fieldsyncv1.FieldState{
		Number: n,
		Value:  slices.Clone(w.Value),
		Dot:    DotToProto(w.Dot),
		Hlc:    StampToProto(w.Stamp),
	}
}
