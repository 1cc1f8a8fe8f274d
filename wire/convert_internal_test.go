package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

func rid(b byte) [16]byte {
	var id [16]byte
	for i := range id {
		id[i] = b
	}
	return id
}

// sampleChange is an upsert of a follow-up's fields, one field cleared and
// one field number this build does not know.
func sampleChange(t *testing.T) (syncengine.Change, []byte) {
	t.Helper()
	fields, err := Fields(&fieldsyncv1.FollowUp{Id: "019a9f3d-0a10-7146-9dad-726e5140304c", AreaCode: "532523101201", SystolicMmhg: proto.Int32(132), Notes: "x"})
	if err != nil {
		t.Fatal(err)
	}
	unknown := protowire.AppendTag(nil, 9999, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte{0xff, 0x00, 0x01})
	fields[9999] = unknown
	fields[4] = []byte{} // cleared
	origin, other := syncengine.ReplicaID(rid(1)), syncengine.ReplicaID(rid(2))
	return syncengine.Change{
		ID: rid(3), RecordID: rid(4), Kind: syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP),
		Area: "532523101201", Origin: origin, Dot: syncengine.Dot{Replica: origin, Counter: 7},
		Stamp:   syncengine.Stamp{WallMS: 1_790_000_000_000, Counter: 3, Replica: origin},
		Context: syncengine.NewVersionVector(syncengine.Dot{Replica: origin, Counter: 6}, syncengine.Dot{Replica: other, Counter: 2}),
		Fields:  fields,
	}, unknown
}

// roundTrip sends c through the wire encoding and back.
func roundTrip(t *testing.T, c syncengine.Change) syncengine.Change {
	t.Helper()
	pc, err := ChangeToProto(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(pc)
	if err != nil {
		t.Fatal(err)
	}
	var back fieldsyncv1.Change
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got, err := ChangeFromProto(&back)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestChangeRoundTrip(t *testing.T) {
	c, unknown := sampleChange(t)
	got := roundTrip(t, c)
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}
	if !bytes.Equal(got.Fields[9999], unknown) {
		t.Errorf("unknown field = %x, want %x byte for byte", got.Fields[9999], unknown)
	}
	if v, ok := got.Fields[4]; !ok || len(v) != 0 {
		t.Errorf("cleared field 4 = %x, %v; want listed and empty", v, ok)
	}

	del := c.Clone()
	del.Delete, del.Fields = true, nil
	if got := roundTrip(t, del); !reflect.DeepEqual(got, del) {
		t.Errorf("deletion round trip:\n got %+v\nwant %+v", got, del)
	}
}

func TestChangeFromProtoRefusesMalformed(t *testing.T) {
	c, _ := sampleChange(t)
	good, err := ChangeToProto(c)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]func(*fieldsyncv1.Change){
		"short change id": func(pc *fieldsyncv1.Change) { pc.ChangeId = pc.ChangeId[:8] },
		"no record id":    func(pc *fieldsyncv1.Change) { pc.RecordId = nil },
		"no dot":          func(pc *fieldsyncv1.Change) { pc.Dot = nil },
		"zero counter":    func(pc *fieldsyncv1.Change) { pc.Dot.Counter = 0 },
		"no operation":    func(pc *fieldsyncv1.Change) { pc.Operation = nil },
		"no kind":         func(pc *fieldsyncv1.Change) { pc.Kind = 0 },
		"bad area":        func(pc *fieldsyncv1.Change) { pc.AreaCode = "5325" },
		"field number 0":  func(pc *fieldsyncv1.Change) { pc.GetUpsert().FieldNumbers = append(pc.GetUpsert().FieldNumbers, 0) },
		"body of another kind": func(pc *fieldsyncv1.Change) {
			pc.GetUpsert().Record = &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{}}}
		},
		"context out of order": func(pc *fieldsyncv1.Change) {
			e := pc.Context.Entries
			e[0], e[1] = e[1], e[0]
		},
	}
	for name, breakIt := range tests {
		t.Run(name, func(t *testing.T) {
			pc := proto.Clone(good).(*fieldsyncv1.Change)
			breakIt(pc)
			if _, err := ChangeFromProto(pc); !errors.Is(err, ErrMalformedChange) {
				t.Errorf("ChangeFromProto = %v, want ErrMalformedChange", err)
			}
		})
	}
}

func TestOutcomeRoundTrip(t *testing.T) {
	for o := syncengine.OutcomeApplied; o <= syncengine.OutcomeMalformed; o++ {
		p := OutcomeToProto(o)
		if got, ok := OutcomeFromProto(p); !ok || got != o {
			t.Errorf("outcome %v -> %v -> %v, %v", o, p, got, ok)
		}
	}
	if got := OutcomeToProto(syncengine.Outcome(99)); got != fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_UNSPECIFIED {
		t.Errorf("OutcomeToProto(99) = %v, want UNSPECIFIED", got)
	}
	if _, ok := OutcomeFromProto(fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_UNSPECIFIED); ok {
		t.Error("OutcomeFromProto(UNSPECIFIED) ok, want not ok")
	}
}

// A snapshot's record state carries the engine's exact state, so a device
// rebuilds the same record, digest for digest, and the readable view agrees.
func TestRecordStateCarriesEngineState(t *testing.T) {
	c, unknown := sampleChange(t)
	r, err := syncengine.Apply(syncengine.Record{}, &c)
	if err != nil {
		t.Fatal(err)
	}
	if lean := RecordStateToProto(r, false); len(lean.GetFields()) != 0 || lean.GetVersion() != nil || string(lean.GetEngineState()) == "" {
		t.Errorf("without the readable view: %v, want engine_state only", lean)
	}
	rs := RecordStateToProto(r, true)
	var back syncengine.Record
	if err := back.UnmarshalBinary(rs.GetEngineState()); err != nil {
		t.Fatal(err)
	}
	if back.Digest() != r.Digest() {
		t.Error("the engine state in RecordState does not rebuild the same record")
	}
	var found bool
	for _, f := range rs.GetFields() {
		if f.GetNumber() == 9999 {
			found = string(f.GetValue()) == string(unknown)
		}
	}
	if !found || rs.GetAreaCode() != c.Area {
		t.Errorf("readable view lacks the unknown field or the area: %v", rs)
	}
}
