package moves_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fieldsync/fieldsync/moves"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

const (
	villageA = "530102001001"
	villageB = "530102001002"
	villageC = "530102002001" // another township
)

var (
	phone  = syncengine.ReplicaID{0xa1}
	phone2 = syncengine.ReplicaID{0xa2}
	county = syncengine.ReplicaID{0xc0}
	record = syncengine.RecordID{0x01, 0x96, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1}
)

// ch is a change of record by origin with dot counter n, stamped at wall
// ms, put in area, after the dots seen, setting fields (area_code when
// code is not empty, the notes when notes is).
func ch(origin syncengine.ReplicaID, n uint64, wall int64, area, code string, notes bool, seen ...syncengine.Dot) syncengine.Change {
	fields := map[int32][]byte{}
	if code != "" {
		fields[wire.AreaField] = protowire.AppendString(protowire.AppendTag(nil, wire.AreaField, protowire.BytesType), code)
	}
	if notes {
		fields[9] = protowire.AppendString(protowire.AppendTag(nil, 9, protowire.BytesType), "户主外出务工")
	}
	return syncengine.Change{
		ID: syncengine.ChangeID{byte(n), origin[0]}, RecordID: record, Kind: 1, Area: area, Origin: origin,
		Dot: syncengine.Dot{Replica: origin, Counter: n}, Stamp: syncengine.Stamp{WallMS: wall, Replica: origin},
		Context: syncengine.NewVersionVector(seen...), Fields: fields,
	}
}

func apply(t *testing.T, cs ...syncengine.Change) syncengine.Record {
	t.Helper()
	var r syncengine.Record
	for _, c := range cs {
		var err error
		if r, err = syncengine.Apply(r, &c); err != nil {
			t.Fatalf("apply %v: %v", c.Dot, err)
		}
	}
	return r
}

// The histories every predicate is tried on: a household created in A by
// the phone; moved by the county to B; edited in A by a second phone that
// had not seen the move, stamped before or after it; and settled.
func histories() (created, move, editBefore, editAfter, settle, notesOnly syncengine.Change) {
	created = ch(phone, 1, 1000, villageA, villageA, false)
	move = ch(county, 1, 2000, villageB, villageB, false, created.Dot)
	editBefore = ch(phone2, 1, 1500, villageA, "", true, created.Dot)
	editAfter = ch(phone2, 1, 2500, villageA, "", true, created.Dot)
	settle = ch(county, 2, 3000, villageB, "", false, created.Dot, move.Dot, editAfter.Dot)
	notesOnly = editAfter
	return
}

// deletion is the county's deletion of the record after seen.
func deletion(seen ...syncengine.Change) syncengine.Change {
	var dots []syncengine.Dot
	for _, c := range seen {
		dots = append(dots, c.Dot)
	}
	d := ch(county, 3, 4000, villageB, "", false, dots...)
	d.Delete, d.Fields = true, nil
	return d
}

func TestPredicates(t *testing.T) {
	created, move, editBefore, editAfter, settle, notesOnly := histories()
	deleted := deletion(created, move, editAfter, settle)
	for _, tc := range []struct {
		name      string
		r         syncengine.Record
		target    string // Target, "" for none
		unsettled string // Unsettled's area, "" for settled
		settleTo  string // SettleTarget's area
		fragment  bool
		misplaced bool
		awayFromA bool // Away from village A's phone
	}{
		{name: "created", r: apply(t, created), target: villageA},
		{name: "moved", r: apply(t, created, move), target: villageB},
		{name: "edit before the move", r: apply(t, created, move, editBefore), target: villageB, unsettled: villageB, settleTo: villageB},
		{name: "edit after the move", r: apply(t, created, move, editAfter), target: villageB, unsettled: villageB, settleTo: villageB,
			misplaced: true, awayFromA: true},
		{name: "settled", r: apply(t, created, move, editAfter, settle), target: villageB},
		{name: "the edit alone", r: apply(t, notesOnly), fragment: true, misplaced: true},
		{name: "the settling alone", r: apply(t, settle), fragment: true, misplaced: true},
		{name: "deleted", r: apply(t, created, move, editAfter, settle, deleted), target: villageB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := moves.Target(tc.r); got != tc.target || ok != (tc.target != "") {
				t.Errorf("Target = %q, %v; want %q", got, ok, tc.target)
			}
			if got, ok := moves.Unsettled(tc.r); got != tc.unsettled || ok != (tc.unsettled != "") {
				t.Errorf("Unsettled = %q, %v; want %q", got, ok, tc.unsettled)
			}
			if got, ok := moves.SettleTarget(tc.r); got != tc.settleTo || ok != (tc.settleTo != "") {
				t.Errorf("SettleTarget = %q, %v; want %q", got, ok, tc.settleTo)
			}
			if got := moves.Fragment(tc.r); got != tc.fragment {
				t.Errorf("Fragment = %v, want %v", got, tc.fragment)
			}
			if got := moves.Misplaced(tc.r); got != tc.misplaced {
				t.Errorf("Misplaced = %v, want %v", got, tc.misplaced)
			}
			if got := moves.Away(tc.r, []string{villageA}); got != tc.awayFromA {
				t.Errorf("Away from A = %v, want %v", got, tc.awayFromA)
			}
			if moves.Away(tc.r, []string{villageA[:9]}) {
				t.Error("Away from the township that holds both villages")
			}
		})
	}
}

func TestSettlingContext(t *testing.T) {
	created, move, _, editAfter, _, _ := histories()
	r := apply(t, created, move, editAfter)
	got := moves.SettlingContext(r)
	for _, d := range []syncengine.Dot{move.Dot, editAfter.Dot} {
		if !got.Contains(d) {
			t.Errorf("settling context %v lacks the upsert %v", got, d)
		}
	}
	settled := apply(t, created, move, editAfter, ch(county, 2, 3000, villageB, "", false, got.Dots()...))
	if _, ok := moves.Unsettled(settled); ok || settled.Area() != villageB {
		t.Errorf("after settling with it: area %s, unsettled %v", settled.Area(), ok)
	}
}

func TestConcurrentEditAndAreaCode(t *testing.T) {
	created, move, editBefore, editAfter, _, _ := histories()
	moved := apply(t, created, move)
	areasA := []string{villageA}
	sawMove := ch(phone2, 1, 2500, villageA, "", true, created.Dot, move.Dot)
	movesBack := ch(phone2, 1, 2500, villageA, villageA, true, created.Dot)
	blind := ch(phone2, 1, 2500, villageA, "", true) // never had the record
	unknown := ch(phone2, 1, 2500, villageA, "", true, created.Dot, syncengine.Dot{Replica: county, Counter: 9})
	for _, tc := range []struct {
		name  string
		c     syncengine.Change
		prev  syncengine.Record
		areas []string
		want  bool
	}{
		{"edit stamped before the move", editBefore, moved, areasA, true},
		{"edit stamped after the move", editAfter, moved, areasA, true},
		{"edit that saw the move", sawMove, moved, areasA, false},
		{"edit that sets area_code", movesBack, moved, areasA, false},
		{"edit with no context", blind, moved, areasA, false},
		{"context beyond the receiver's", unknown, moved, areasA, false},
		{"record still in the areas", editAfter, apply(t, created), areasA, false},
		{"edit of another area", editAfter, moved, []string{villageC}, false},
	} {
		if got := moves.ConcurrentEdit(tc.c, tc.prev, tc.areas); got != tc.want {
			t.Errorf("%s: ConcurrentEdit = %v, want %v", tc.name, got, tc.want)
		}
	}

	unsettled := apply(t, created, move, editAfter) // shown in A, area_code B
	later := ch(phone, 2, 2600, villageA, "", true, created.Dot, move.Dot, editAfter.Dot)
	for _, tc := range []struct {
		name             string
		c                syncengine.Change
		prev, next       syncengine.Record
		area             string
		concurrent, want bool
	}{
		{"area_code names where it is", created, syncengine.Record{}, apply(t, created), villageA, false, true},
		{"area_code names elsewhere", created, syncengine.Record{}, apply(t, created), villageB, false, false},
		{"a concurrent edit", editAfter, moved, unsettled, villageB, true, true},
		{"an unsettled move into the area_code's area", editAfter, moved, unsettled, villageB, false, true},
		{"an edit that leaves an unsettled move as it was", later, unsettled, apply(t, created, move, editAfter, later), villageB, false, true},
		{"an edit that sets another area_code", movesBack, unsettled, apply(t, created, move, editAfter, movesBack), villageC, false, false},
	} {
		if got := moves.AreaCodeAgrees(tc.c, tc.prev, tc.next, tc.area, tc.concurrent); got != tc.want {
			t.Errorf("%s: AreaCodeAgrees = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFrom(t *testing.T) {
	created, move, _, editAfter, settle, _ := histories()
	deleted := deletion(created, move, editAfter, settle)
	for _, tc := range []struct {
		name string
		prev syncengine.Record
		c    syncengine.Change
		want []string
	}{
		{"a new record", syncengine.Record{}, created, nil},
		{"an edit where it is", apply(t, created), editAfter, nil},
		{"a move", apply(t, created), move, []string{villageA}},
		{"the settling, over the upsert of A", apply(t, created, move, editAfter), settle, []string{villageA}},
		{"a deletion overwrites no area", apply(t, created, move, editAfter, settle), deleted, nil},
	} {
		if got := moves.From(tc.prev, &tc.c); !slices.Equal(got, tc.want) {
			t.Errorf("%s: From = %v, want %v", tc.name, got, tc.want)
		}
	}
}
