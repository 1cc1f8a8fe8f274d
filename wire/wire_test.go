package wire_test

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

func household() *fieldsyncv1.Household {
	return &fieldsyncv1.Household{
		Id: "019a9f3c-1b2e-7c41-8a5e-2f1d0c9b8a71", AreaCode: "532523101201", HeadName: "张德明",
		Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_MONITORED, RegisteredMembers: proto.Int32(4),
	}
}

// decode builds the typed record of kind from its fields, as a record
// state of them shows it.
func decode(kind syncengine.Kind, fields map[int32][]byte) (*fieldsyncv1.Record, error) {
	body, err := wire.NewBody(kind)
	if err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(wire.JoinFields(fields), body); err != nil {
		return nil, err
	}
	return wire.Wrap(kind, body)
}

func TestFieldsRoundTripKeepsUnknownFields(t *testing.T) {
	h := household()
	// A field a newer app added, unknown to this build.
	h.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "新字段"))
	fields, err := wire.Fields(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fields[99]; !ok || len(fields) != 6 {
		t.Fatalf("Fields = %v, want the 5 set fields and unknown field 99", fields)
	}
	kind := syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD)
	rec, err := decode(kind, fields)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.GetHousehold(); !proto.Equal(got, h) {
		t.Errorf("Decode = %v, want %v", got, h)
	}
	if got := wire.KindOf(rec); got != kind {
		t.Errorf("KindOf = %d, want %d", got, kind)
	}
	again, _ := wire.Fields(rec.GetHousehold())
	if string(again[99]) != string(fields[99]) {
		t.Error("the unknown field did not survive decode and re-encode byte for byte")
	}
}

func TestDiff(t *testing.T) {
	before, _ := wire.Fields(household())
	h := household()
	h.HeadName = "张德华"
	h.RegisteredMembers = nil
	after, _ := wire.Fields(h)
	d := wire.Diff(before, after)
	if len(d) != 2 || len(d[4]) == 0 || d[8] == nil || len(d[8]) != 0 {
		t.Fatalf("Diff = %v, want head_name (4) changed and registered_members (8) cleared", d)
	}
	merged := before
	for n, v := range d {
		merged[n] = v
	}
	rec, err := decode(syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD), merged)
	if err != nil || !proto.Equal(rec.GetHousehold(), h) {
		t.Errorf("applying the diff gives %v, %v; want %v", rec.GetHousehold(), err, h)
	}
}

func TestUnknownKind(t *testing.T) {
	if _, err := wire.NewBody(42); err == nil {
		t.Error("NewBody(42) succeeded, want ErrUnknownKind")
	}
	if _, err := wire.Wrap(syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_PERSON), household()); err == nil {
		t.Error("Wrap accepted a household as a person")
	}
	if _, err := wire.SplitFields([]byte{0xff}); err == nil {
		t.Error("SplitFields accepted a malformed message")
	}
}

// EditOf writes only what changed, based on the whole stored version, and
// nothing when nothing changed.
func TestEditOf(t *testing.T) {
	rec := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: household()}}
	e, ok, err := wire.EditOf(syncengine.Record{}, rec)
	if err != nil || !ok || len(e.Fields) != 5 || e.Area != "532523101201" || e.Kind != wire.KindOf(rec) {
		t.Fatalf("EditOf(new record) = %+v, %v, %v; want all 5 fields in its area", e, ok, err)
	}
	self := syncengine.ReplicaID{1}
	c := syncengine.Change{ID: syncengine.ChangeID{1}, RecordID: e.Record, Kind: e.Kind, Area: e.Area, Origin: self,
		Dot: syncengine.Dot{Replica: self, Counter: 1}, Stamp: syncengine.NewClock(self, 0).Now(1), Fields: e.Fields}
	cur, err := syncengine.Apply(syncengine.Record{}, &c)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := wire.EditOf(cur, rec); ok || err != nil {
		t.Errorf("EditOf(unchanged) = %v, %v; want nothing to write", ok, err)
	}
	rec.GetHousehold().HeadName = "张德亮"
	e, ok, err = wire.EditOf(cur, rec)
	if err != nil || !ok || len(e.Fields) != 1 || !e.Base.Contains(c.Dot) {
		t.Errorf("EditOf(new head) = %+v, %v, %v; want the one field, based on the stored version", e, ok, err)
	}
	visit := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: &fieldsyncv1.HouseholdVisit{Id: household().GetId(), AreaCode: "532523101201"}}}
	if _, _, err := wire.EditOf(cur, visit); err == nil {
		t.Error("EditOf with another kind under the same id succeeded")
	}
}

// BodyArea reads the area_code a record's state shows: the last occurrence
// of the field, none when the state shows none or the bytes are not a
// length-delimited area_code.
func TestBodyArea(t *testing.T) {
	state := func(area []byte) syncengine.Record {
		t.Helper()
		c := syncengine.Change{
			ID: syncengine.ChangeID{1}, RecordID: syncengine.RecordID{2}, Kind: syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD),
			Area: "532523101201", Origin: syncengine.ReplicaID{3}, Dot: syncengine.Dot{Replica: syncengine.ReplicaID{3}, Counter: 1},
			Stamp: syncengine.Stamp{WallMS: 1, Replica: syncengine.ReplicaID{3}}, Context: syncengine.NewVersionVector(),
			Fields: map[int32][]byte{1: protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "id")},
		}
		if area != nil {
			c.Fields[wire.AreaField] = area
		}
		r, err := syncengine.Apply(syncengine.Record{}, &c)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	field := func(s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, wire.AreaField, protowire.BytesType), s)
	}
	for _, tc := range []struct {
		name  string
		value []byte
		want  string
		ok    bool
	}{
		{"one", field("532523101202"), "532523101202", true},
		{"the last of two", append(field("532523101201"), field("532523101202")...), "532523101202", true},
		{"none", nil, "", false},
		{"another field's tag", protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), "x"), "", false},
		{"a varint", protowire.AppendVarint(protowire.AppendTag(nil, wire.AreaField, protowire.VarintType), 7), "", false},
		{"cut short", field("532523101202")[:5], "", false},
	} {
		got, ok := wire.BodyArea(state(tc.value))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: BodyArea = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// Shown gives the record a state shows, unknown fields too, and its body's
// encoding: the shown fields joined in field-number order, which the read
// model keeps as the record.
func TestShown(t *testing.T) {
	h := household()
	h.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "新字段"))
	fields, err := wire.Fields(h)
	if err != nil {
		t.Fatal(err)
	}
	kind := syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD)
	c := syncengine.Change{
		ID: syncengine.ChangeID{1}, RecordID: syncengine.RecordID{2}, Kind: kind,
		Area: h.GetAreaCode(), Origin: syncengine.ReplicaID{3}, Dot: syncengine.Dot{Replica: syncengine.ReplicaID{3}, Counter: 1},
		Stamp: syncengine.Stamp{WallMS: 1, Replica: syncengine.ReplicaID{3}}, Context: syncengine.NewVersionVector(), Fields: fields,
	}
	r, err := syncengine.Apply(syncengine.Record{}, &c)
	if err != nil {
		t.Fatal(err)
	}
	rec, raw, err := wire.Shown(r)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(rec.GetHousehold(), h) {
		t.Errorf("Shown = %v, want %v", rec.GetHousehold(), h)
	}
	if want := wire.JoinFields(fields); string(raw) != string(want) {
		t.Errorf("Shown's encoding = %x, want the fields joined %x", raw, want)
	}
	back := &fieldsyncv1.Household{}
	if err := proto.Unmarshal(raw, back); err != nil || !proto.Equal(back, h) {
		t.Errorf("the encoding decodes as %v, %v; want %v", back, err, h)
	}
}
