package wire_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// TestUnknownFieldsBounded: fields a newer app wrote pass a server's check
// up to wire.MaxUnknownBytes per change, and beyond it the change is
// malformed; converting a change (as a pull does) never refuses them.
func TestUnknownFieldsBounded(t *testing.T) {
	for _, tc := range []struct {
		size int
		ok   bool
	}{{100, true}, {wire.MaxUnknownBytes - 4, true}, {wire.MaxUnknownBytes + 1, false}} {
		h := &fieldsyncv1.Household{Id: "01890000-0000-7000-8000-000000000001", AreaCode: "532523101201", HeadName: "杨丙"}
		// Field 99 is unknown to Household.
		h.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte(strings.Repeat("x", tc.size))))
		rec := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: h}}
		id, area, err := wire.Identity(rec)
		if err != nil {
			t.Fatal(err)
		}
		fields, err := wire.Fields(wire.Body(rec))
		if err != nil {
			t.Fatal(err)
		}
		var r syncengine.ReplicaID
		r[0] = 1
		c := syncengine.Change{ID: syncengine.ChangeID(r), RecordID: id, Kind: wire.KindOf(rec), Area: area, Origin: r,
			Dot: syncengine.Dot{Replica: r, Counter: 1}, Stamp: syncengine.Stamp{WallMS: 1_790_000_000_000, Replica: r}, Fields: fields}
		pc, err := wire.ChangeToProto(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := wire.ChangeFromProto(pc)
		if err != nil {
			t.Fatalf("%d bytes of unknown fields: ChangeFromProto = %v, want them passed through", tc.size, err)
		}
		err = wire.CheckUnknown(back)
		if got := err == nil; got != tc.ok || (err != nil && !errors.Is(err, wire.ErrMalformedChange)) {
			t.Errorf("%d bytes of unknown fields: CheckUnknown = %v, want accepted %v", tc.size, err, tc.ok)
		}
	}
}
