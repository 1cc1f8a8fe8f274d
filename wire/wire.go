// Package wire translates between the fieldsync.v1 protobuf messages and the
// sync engine's types. It is the one place where the two meet: the engine sees
// a record as field number → encoded bytes, and every edge (stores' read
// models, the server, the device SDK) goes through here to get typed records.
//
// A field's encoded bytes are its protobuf wire encoding within the record's
// body message, tags included; a repeated field's occurrences are
// concatenated. Joining the fields of a record in field-number order therefore
// gives a valid encoding of the body message, and fields this build does not
// know pass through byte for byte.
package wire

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// ErrUnknownKind is returned when a record kind has no body message in this
// build's Record envelope.
var ErrUnknownKind = errors.New("unknown record kind")

// bodyOneof is the Record envelope's oneof; its field numbers are the kinds.
var bodyOneof = (&fieldsyncv1.Record{}).ProtoReflect().Descriptor().Oneofs().ByName("body")

// bodyField returns the envelope field that carries kind.
func bodyField(kind syncengine.Kind) (protoreflect.FieldDescriptor, error) {
	fd := bodyOneof.Fields().ByNumber(protoreflect.FieldNumber(kind))
	if fd == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownKind, kind)
	}
	return fd, nil
}

// KindOf returns the kind of rec (its body's field number in the envelope), or
// 0 when no body is set.
func KindOf(rec *fieldsyncv1.Record) syncengine.Kind {
	fd := rec.ProtoReflect().WhichOneof(bodyOneof)
	if fd == nil {
		return 0
	}
	return syncengine.Kind(fd.Number())
}

// Body returns rec's body message, or nil when none is set.
func Body(rec *fieldsyncv1.Record) proto.Message {
	m := rec.ProtoReflect()
	fd := m.WhichOneof(bodyOneof)
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message().Interface()
}

// NewBody returns a new, empty body message for kind.
func NewBody(kind syncengine.Kind) (proto.Message, error) {
	fd, err := bodyField(kind)
	if err != nil {
		return nil, err
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(fd.Message().FullName())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownKind, err)
	}
	return mt.New().Interface(), nil
}

// Wrap puts body, which must be the body message of kind, into a Record envelope.
func Wrap(kind syncengine.Kind, body proto.Message) (*fieldsyncv1.Record, error) {
	fd, err := bodyField(kind)
	if err != nil {
		return nil, err
	}
	if body.ProtoReflect().Descriptor() != fd.Message() {
		return nil, fmt.Errorf("a %s is not the body of record kind %d", body.ProtoReflect().Descriptor().Name(), kind)
	}
	rec := &fieldsyncv1.Record{}
	rec.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(body.ProtoReflect()))
	return rec, nil
}

// Fields splits a body message into its top-level fields: field number → the
// field's wire encoding. Unknown fields kept in the message are split too.
func Fields(body proto.Message) (map[int32][]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", body.ProtoReflect().Descriptor().Name(), err)
	}
	return SplitFields(b)
}

// SplitFields splits an encoded message into its top-level fields.
func SplitFields(b []byte) (map[int32][]byte, error) {
	out := make(map[int32][]byte)
	for len(b) > 0 {
		num, _, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, fmt.Errorf("malformed message: %w", protowire.ParseError(n))
		}
		out[int32(num)] = append(out[int32(num)], b[:n]...)
		b = b[n:]
	}
	return out, nil
}

// JoinFields concatenates fields in field-number order: the encoding of the
// message they were split from (up to field order).
func JoinFields(fields map[int32][]byte) []byte {
	var buf bytes.Buffer
	for _, num := range slices.Sorted(maps.Keys(fields)) {
		buf.Write(fields[num])
	}
	return buf.Bytes()
}

// FromState builds the typed record that a merged record state shows.
func FromState(r syncengine.Record) (*fieldsyncv1.Record, error) {
	rec, _, err := Shown(r)
	return rec, err
}

// Shown returns the typed record that a merged record state shows and the
// encoding of its body (the shown fields joined, as JoinFields).
func Shown(r syncengine.Record) (*fieldsyncv1.Record, []byte, error) {
	body, err := NewBody(r.Kind())
	if err != nil {
		return nil, nil, err
	}
	raw := r.AppendShown(nil)
	if err := proto.Unmarshal(raw, body); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", body.ProtoReflect().Descriptor().Name(), err)
	}
	rec, err := Wrap(r.Kind(), body)
	return rec, raw, err
}

// Diff returns the fields of next that differ from prev, with an empty value
// for each field prev has and next lacks (a cleared field): the Fields of the
// change that turns prev into next.
func Diff(prev, next map[int32][]byte) map[int32][]byte {
	out := make(map[int32][]byte)
	for num, v := range next {
		if old, ok := prev[num]; !ok || !bytes.Equal(old, v) {
			out[num] = v
		}
	}
	for num := range prev {
		if _, ok := next[num]; !ok {
			out[num] = []byte{}
		}
	}
	return out
}

// RecordID parses a record's canonical UUID text id into the engine's form.
func RecordID(id string) (syncengine.RecordID, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return syncengine.RecordID{}, fmt.Errorf("record id %q is not a canonical UUID", id)
	}
	return syncengine.RecordID(u), nil
}

// Field numbers every body message shares: its id and its area code.
const (
	idField   = 1
	areaField = 2
	// AreaField is the field number of area_code in every record kind's
	// body: the field a move sets.
	AreaField = areaField
)

// BodyArea returns the area_code r's state shows (the field's value, the
// last occurrence winning as in protobuf), which is not always the area the
// engine files the record under (Record.Area) while a move settles; false
// when r shows none or it does not decode.
func BodyArea(r syncengine.Record) (string, bool) {
	v, ok := r.Value(areaField)
	if !ok {
		return "", false
	}
	var area string
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 || num != areaField || typ != protowire.BytesType {
			return "", false
		}
		s, m := protowire.ConsumeBytes(v[n:])
		if m < 0 {
			return "", false
		}
		area, v = string(s), v[n+m:]
	}
	return area, true
}

// Identity returns the id and area code of rec's body (fields 1 and 2 of every
// record kind), with an error when no body is set or the id is not a
// canonical UUID.
func Identity(rec *fieldsyncv1.Record) (syncengine.RecordID, string, error) {
	body := Body(rec)
	if body == nil {
		return syncengine.RecordID{}, "", errors.New("record has no body")
	}
	m := body.ProtoReflect()
	fields := m.Descriptor().Fields()
	id, err := RecordID(m.Get(fields.ByNumber(idField)).String())
	if err != nil {
		return syncengine.RecordID{}, "", err
	}
	return id, m.Get(fields.ByNumber(areaField)).String(), nil
}

// EditOf returns the edit that makes cur, the stored state of rec's record,
// show rec: the fields that differ (Diff), rec's kind and area, and cur's
// whole version as the base, so that a concurrent write the writer has not
// seen stays concurrent instead of being overwritten. The edit has no change
// id yet. It reports false when rec shows nothing new (same fields, same
// area, the record alive), and returns an error for a record without a valid
// identity or of another kind than cur.
func EditOf(cur syncengine.Record, rec *fieldsyncv1.Record) (syncengine.Edit, bool, error) {
	id, area, err := Identity(rec)
	if err != nil {
		return syncengine.Edit{}, false, err
	}
	kind := KindOf(rec)
	if !cur.IsEmpty() && cur.Kind() != kind {
		return syncengine.Edit{}, false, fmt.Errorf("record %v is of kind %d, not %d", id, cur.Kind(), kind)
	}
	next, err := Fields(Body(rec))
	if err != nil {
		return syncengine.Edit{}, false, err
	}
	fields := Diff(cur.Values(), next)
	if len(fields) == 0 && cur.Exists() && cur.Area() == area {
		return syncengine.Edit{}, false, nil
	}
	return syncengine.Edit{Record: id, Kind: kind, Area: area, Base: cur.Version(), Fields: fields}, true, nil
}
