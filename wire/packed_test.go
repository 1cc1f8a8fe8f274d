package wire_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/wire"
)

// packSeeds are records of every kind countygen makes, the first few of
// each.
func packSeeds(tb testing.TB) []*fieldsyncv1.Record {
	tb.Helper()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 1, HouseholdsPerVillage: 4, Seed: 5})
	if err != nil {
		tb.Fatal(err)
	}
	perKind := map[any]int{}
	var out []*fieldsyncv1.Record
	err = g.Each(func(r *fieldsyncv1.Record) error {
		if k := wire.KindOf(r); perKind[k] < 3 {
			perKind[k]++
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Every generated record packs, its ids and digests as bytes, and unpacks
// to exactly its encoding.
func TestPackRecord(t *testing.T) {
	var text, packed int
	for _, rec := range packSeeds(t) {
		b, ok, err := wire.PackRecord(rec)
		if err != nil || !ok {
			t.Fatalf("PackRecord(%v) = %v, %v", rec, ok, err)
		}
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
		got, err := wire.UnpackRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		if !bytes.Equal(g, want) {
			t.Fatalf("unpacked record differs:\n got  %v\n want %v", got, rec)
		}
		id, _, err := wire.Identity(rec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, id[:]) || bytes.Contains(b, []byte(id.String())) {
			t.Errorf("packed %v does not carry its id as bytes", wire.KindOf(rec))
		}
		text, packed = text+len(want), packed+len(b)
	}
	t.Logf("records: %d B as text, %d B packed", text, packed)
	if packed >= text*3/4 {
		t.Errorf("packed records are %d B against %d B: ids not packed", packed, text)
	}
}

// A record with a value that packing could not tell from a packed one is
// not packed, and PackChange leaves it as a record; other values that are
// not canonical UUIDs or digests travel as they are.
func TestPackRecordLeavesWhatItCannotTell(t *testing.T) {
	base := &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{
		Id: "0190a6b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b", AreaCode: "532523101201", HeadName: "杨国华",
	}}}
	for _, tc := range []struct {
		name   string
		id     string
		packs  bool
		asText bool
	}{
		{"canonical", "0190a6b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b", true, false},
		{"upper case", "0190A6B2-1C3D-7E4F-8A5B-6C7D8E9F0A1B", true, true},
		{"not a uuid", "household-17", true, true},
		{"16 bytes", "0123456789abcdef", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := proto.Clone(base).(*fieldsyncv1.Record)
			rec.GetHousehold().Id = tc.id
			b, ok, err := wire.PackRecord(rec)
			if err != nil || ok != tc.packs {
				t.Fatalf("PackRecord = %v, %v; want %v", ok, err, tc.packs)
			}
			if ok {
				if got := bytes.Contains(b, []byte(tc.id)); got != tc.asText {
					t.Errorf("packed form holds the id as text: %v, want %v", got, tc.asText)
				}
				back, err := wire.UnpackRecord(b)
				if err != nil || back.GetHousehold().GetId() != tc.id {
					t.Errorf("unpacked id %q, %v; want %q", back.GetHousehold().GetId(), err, tc.id)
				}
			}
			pc := &fieldsyncv1.Change{Operation: &fieldsyncv1.Change_Upsert{Upsert: &fieldsyncv1.Upsert{Record: rec}}}
			if err := wire.PackChange(pc); err != nil || (pc.GetUpsert().GetRecord() == nil) != tc.packs {
				t.Errorf("PackChange: %v, record kept %v; want kept %v", err, pc.GetUpsert().GetRecord() != nil, !tc.packs)
			}
		})
	}
}

// Bytes from another replica are checked: what does not decode, or
// decodes to a string that is not UTF-8, is an error wrapping
// ErrBadPacking.
func TestUnpackRecordRefusesBadBytes(t *testing.T) {
	good, _, err := wire.PackRecord(packSeeds(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	notUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
		protowire.AppendString(protowire.AppendTag(nil, 4, protowire.BytesType), "\xff\xfe"))
	for name, b := range map[string][]byte{
		"truncated":   good[:len(good)-3],
		"bad tag":     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"not utf-8":   notUTF8,
		"bad varint":  {0x08, 0x80},
		"bad message": {0x0a, 0x05, 0x0a},
	} {
		if _, err := wire.UnpackRecord(b); !errors.Is(err, wire.ErrBadPacking) {
			t.Errorf("%s: UnpackRecord = %v, want ErrBadPacking", name, err)
		}
	}
}

// FuzzUnpackRecord feeds UnpackRecord any bytes: it never panics, and a
// record it accepts packs back to bytes that unpack to the same record.
func FuzzUnpackRecord(f *testing.F) {
	for _, rec := range packSeeds(f) {
		b, _, err := wire.PackRecord(rec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(strings.Repeat("\x0a\x00", 4)))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := wire.UnpackRecord(data)
		if err != nil {
			if !errors.Is(err, wire.ErrBadPacking) {
				t.Fatalf("error %v does not wrap ErrBadPacking", err)
			}
			return
		}
		b, ok, err := wire.PackRecord(rec)
		if err != nil {
			t.Fatalf("accepted record does not encode: %v", err)
		}
		if !ok {
			return
		}
		again, err := wire.UnpackRecord(b)
		if err != nil || !proto.Equal(again, rec) {
			t.Fatalf("repacked record unpacks to %v, %v; want %v", again, err, rec)
		}
	})
}
