package sqlitestore_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
	"github.com/fieldsync/fieldsync/wire"
)

const (
	forgetVillageA = "530102001001"
	forgetVillageB = "530102001002"
	forgetVillageC = "530102002001"
)

// household returns a household record of area with a recognisable id.
func household(n byte, area, head string) *fieldsyncv1.Record {
	id := syncengine.RecordID{0x01, 0x96, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, n}
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{
		Id: id.String(), AreaCode: area, HeadName: head, Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY,
	}}}
}

// serverChange is a change of rec made by the server replica srv with dot
// counter n, after context.
func serverChange(t *testing.T, srv syncengine.ReplicaID, n uint64, rec *fieldsyncv1.Record, context syncengine.VersionVector, only ...int32) syncengine.Change {
	t.Helper()
	fields, err := wire.Fields(wire.Body(rec))
	if err != nil {
		t.Fatal(err)
	}
	if len(only) > 0 {
		for k := range fields {
			if !slices.Contains(only, k) {
				delete(fields, k)
			}
		}
	}
	id, area, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	var cid syncengine.ChangeID
	binary.BigEndian.PutUint64(cid[8:], n)
	cid[0] = 0x5e
	return syncengine.Change{
		ID: cid, RecordID: id, Kind: wire.KindOf(rec), Area: area, Origin: srv,
		Dot: syncengine.Dot{Replica: srv, Counter: n}, Stamp: syncengine.Stamp{WallMS: time.Now().UnixMilli(), Replica: srv},
		Context: context, Fields: fields,
	}
}

// receive stores changes as a batch from srv, as a pull does.
func receive(t *testing.T, s *sqlitestore.Store, srv syncengine.ReplicaID, cs ...syncengine.Change) {
	t.Helper()
	var cur syncengine.Cursor
	err := s.View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		cur, err = tx.Cursor(t.Context(), srv)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b := syncengine.Batch{Sender: srv, After: cur.Received, Through: cur.Received + syncengine.Position(len(cs))}
	for i, c := range cs {
		b.Changes = append(b.Changes, syncengine.Entry{Pos: cur.Received + syncengine.Position(i+1), Change: c})
	}
	if _, err := syncengine.ReceiveBatch(t.Context(), s, b, syncengine.ReceiveOptions{}); err != nil {
		t.Fatal(err)
	}
}

func setAcked(t *testing.T, s *sqlitestore.Store, srv syncengine.ReplicaID, acked syncengine.Position) {
	t.Helper()
	err := s.Update(t.Context(), func(tx syncengine.Tx) error {
		cur, err := tx.Cursor(t.Context(), srv)
		if err != nil {
			return err
		}
		cur.Acked = acked
		return tx.SetCursor(t.Context(), srv, cur)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func stateOf(t *testing.T, s *sqlitestore.Store, rec *fieldsyncv1.Record) syncengine.Record {
	t.Helper()
	id, _, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	var r syncengine.Record
	err = s.View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wholeLog(t *testing.T, s *sqlitestore.Store) []syncengine.Entry {
	t.Helper()
	var out []syncengine.Entry
	err := s.View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		out, err = tx.ReadLog(t.Context(), 0, 1<<20)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// count runs a count query on the replica file behind the store's back.
func count(t *testing.T, s *sqlitestore.Store, q string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// A household moved from village A to village B leaves the phone of A: its
// state, conflict, read-model row and the server's changes to it go; the
// phone's own changes stay in the log, and a household with a change the
// server has not acknowledged stays until it has.
func TestForgetOutside(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	clock := syncengine.NewClock(s.Replica(), 0)
	srv := syncengine.ReplicaID{0x5e, 0x4e}
	hA, hMoved, hPending := household(1, forgetVillageA, "王"), household(2, forgetVillageA, "李"), household(3, forgetVillageA, "张")
	hOther := household(4, forgetVillageA, "赵")
	save(t, s, clock, hA)
	ownMoved := save(t, s, clock, hMoved)
	save(t, s, clock, hPending)
	receive(t, s, srv, serverChange(t, srv, 1, hOther, syncengine.VersionVector{}))

	// The server edits the household's head concurrently with nothing the
	// phone saw (a conflict with the phone's own write), then moves it to B.
	edited := proto.Clone(hMoved).(*fieldsyncv1.Record)
	edited.GetHousehold().HeadName = "李四"
	moved := proto.Clone(edited).(*fieldsyncv1.Record)
	moved.GetHousehold().AreaCode = forgetVillageB
	receive(t, s, srv, serverChange(t, srv, 2, edited, syncengine.VersionVector{}, 4))
	if len(stateOf(t, s, hMoved).Conflicts()) == 0 {
		t.Fatal("no conflict on the household before the move")
	}
	receive(t, s, srv, serverChange(t, srv, 3, moved, stateOf(t, s, hMoved).Version(), 2))
	// The pending household moves too, but the phone changed it since its
	// last push.
	movedPending := proto.Clone(hPending).(*fieldsyncv1.Record)
	movedPending.GetHousehold().AreaCode = forgetVillageB
	receive(t, s, srv, serverChange(t, srv, 4, movedPending, stateOf(t, s, hPending).Version(), 2))
	acked := wholeLog(t, s)[len(wholeLog(t, s))-1].Pos
	notes := proto.Clone(movedPending).(*fieldsyncv1.Record)
	notes.GetHousehold().Notes = "户主外出务工"
	save(t, s, clock, notes)
	setAcked(t, s, srv, acked)
	before := wholeLog(t, s)
	if got := stateOf(t, s, hMoved).Area(); got != forgetVillageB {
		t.Fatalf("moved household in %s, want %s", got, forgetVillageB)
	}

	for _, prefixes := range [][]string{nil, {""}, {"5301", ""}} {
		if f, err := s.ForgetOutside(ctx, prefixes, srv); err != nil || f != (sqlitestore.Forgotten{}) {
			t.Errorf("ForgetOutside(%q) = %+v, %v; want nothing", prefixes, f, err)
		}
	}
	if _, err := s.ForgetOutside(ctx, []string{"53x"}, srv); err == nil {
		t.Error("ForgetOutside with a bad prefix succeeded")
	}

	f, err := s.ForgetOutside(ctx, []string{forgetVillageA}, srv)
	if err != nil {
		t.Fatal(err)
	}
	if want := (sqlitestore.Forgotten{Records: 1, Changes: 2}); f != want {
		t.Errorf("ForgetOutside = %+v, want %+v", f, want)
	}
	if r := stateOf(t, s, hMoved); !r.IsEmpty() {
		t.Errorf("moved household kept: %v", r)
	}
	for _, rec := range []*fieldsyncv1.Record{hA, hOther, hPending} {
		if stateOf(t, s, rec).IsEmpty() {
			t.Errorf("household %s forgotten", rec.GetHousehold().GetId())
		}
	}
	id := hMoved.GetHousehold().GetId()
	if n := count(t, s, "SELECT count(*) FROM households WHERE id = ?", id); n != 0 {
		t.Errorf("read model keeps the moved household (%d rows)", n)
	}
	if n := count(t, s, "SELECT count(*) FROM households"); n != 3 {
		t.Errorf("read model has %d households, want 3", n)
	}
	if n := count(t, s, "SELECT count(*) FROM conflicts WHERE record_id = ?", ownMoved.RecordID[:]); n != 0 {
		t.Errorf("the moved household's conflict kept (%d rows)", n)
	}
	after := wholeLog(t, s)
	var want []syncengine.Entry
	for _, e := range before {
		if e.Change.RecordID != ownMoved.RecordID || e.Change.Origin == s.Replica() {
			want = append(want, e)
		}
	}
	if !slices.EqualFunc(after, want, func(a, b syncengine.Entry) bool { return a.Pos == b.Pos }) {
		t.Errorf("log after forgetting: %d entries, want the %d of before less the server's changes of the moved household", len(after), len(want))
	}
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		for n := uint64(2); n <= 3; n++ {
			if seen, err := tx.Seen(ctx, syncengine.Dot{Replica: srv, Counter: n}); err != nil || !seen {
				t.Errorf("server change %d: seen %v, %v; want still seen", n, seen, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Once the server has the phone's change, the other household goes.
	setAcked(t, s, srv, after[len(after)-1].Pos)
	if f, err := s.ForgetOutside(ctx, []string{forgetVillageA}, srv); err != nil || f != (sqlitestore.Forgotten{Records: 1, Changes: 1}) {
		t.Errorf("second ForgetOutside = %+v, %v; want the pending household and the server's move of it", f, err)
	}
	if !stateOf(t, s, hPending).IsEmpty() {
		t.Error("pending household kept after its change was acknowledged")
	}
	own := 0
	for _, e := range wholeLog(t, s) {
		if e.Change.Origin == s.Replica() {
			own++
		}
	}
	if own != 4 {
		t.Errorf("%d own changes in the log, want all 4", own)
	}
}

// The areas kept are ranges of the area index: records before, between and
// after them are forgotten, those under any of them kept.
func TestForgetOutsideRanges(t *testing.T) {
	s := openTemp(t)
	clock := syncengine.NewClock(s.Replica(), 0)
	srv := syncengine.ReplicaID{0x5e}
	areas := []string{"110101001001", forgetVillageA, forgetVillageB, "530102001999", forgetVillageC, "530102002002", "630102001001"}
	for i, a := range areas {
		save(t, s, clock, household(byte(i), a, "户主"))
	}
	setAcked(t, s, srv, syncengine.Position(len(areas)))
	f, err := s.ForgetOutside(t.Context(), []string{forgetVillageC, forgetVillageA, "5301020010"}, srv)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{forgetVillageA: true, forgetVillageB: true, forgetVillageC: true}
	if f.Records != len(areas)-len(keep) {
		t.Errorf("forgot %d records, want %d", f.Records, len(areas)-len(keep))
	}
	for i, a := range areas {
		if got := !stateOf(t, s, household(byte(i), a, "")).IsEmpty(); got != keep[a] {
			t.Errorf("household in %s kept = %v, want %v", a, got, keep[a])
		}
	}
}

// The phone edits a household that the server, meanwhile, moved to another
// village; the move, stamped before the edit, arrives after it. The phone
// shows the household in its village (its own edit wins the area) with the
// new village's area_code: once the server has the edit, the phone forgets
// the household, which its server keeps in the new village.
func TestForgetOutsideMovedAwayUnderOwnEdit(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	clock := syncengine.NewClock(s.Replica(), 0)
	srv := syncengine.ReplicaID{0x5e, 0x4f}
	h := household(7, forgetVillageA, "王")
	save(t, s, clock, h)
	before := stateOf(t, s, h).Version()
	moved := proto.Clone(h).(*fieldsyncv1.Record)
	moved.GetHousehold().AreaCode = forgetVillageB
	move := serverChange(t, srv, 1, moved, before, 2)
	move.Stamp.WallMS -= 60_000 // made before the phone's edit
	// The phone's edit sets the notes alone, as the SDK saves a diff.
	notes := proto.Clone(h).(*fieldsyncv1.Record)
	notes.GetHousehold().Notes = "户主外出务工"
	fields, err := wire.Fields(wire.Body(notes))
	if err != nil {
		t.Fatal(err)
	}
	var cid syncengine.ChangeID
	cid[0] = 0xed
	if _, err := syncenginetest.WriteLocal(ctx, s, clock, time.Now().UnixMilli(), syncengine.Edit{
		ID: cid, Record: stateOf(t, s, h).ID(), Fields: map[int32][]byte{9: fields[9]},
	}); err != nil {
		t.Fatal(err)
	}
	receive(t, s, srv, move)
	if got := stateOf(t, s, h); got.Area() != forgetVillageA {
		t.Fatalf("household shows in %s, want %s (the edit wins the area)", got.Area(), forgetVillageA)
	}
	if f, err := s.ForgetOutside(ctx, []string{forgetVillageA}, srv); err != nil || f.Records != 0 {
		t.Errorf("ForgetOutside with the edit unacknowledged = %+v, %v; want the household kept", f, err)
	}
	log := wholeLog(t, s)
	setAcked(t, s, srv, log[len(log)-1].Pos)
	f, err := s.ForgetOutside(ctx, []string{forgetVillageA}, srv)
	if err != nil || f != (sqlitestore.Forgotten{Records: 1, Changes: 1}) {
		t.Errorf("ForgetOutside = %+v, %v; want the household and the server's move", f, err)
	}
	if !stateOf(t, s, h).IsEmpty() {
		t.Error("household kept")
	}
}

// The new village's phone receives an edit made in the old village of a
// household that moved to it: the household stays, the change of the old
// village leaves the log (the household's state has it).
func TestForgetOutsideDropsChangesOfOtherAreas(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	srv, doctor := syncengine.ReplicaID{0x5e, 0x50}, syncengine.ReplicaID{0xd0}
	h := household(8, forgetVillageA, "李")
	receive(t, s, srv, serverChange(t, srv, 1, h, syncengine.VersionVector{}))
	base := stateOf(t, s, h).Version()
	moved := proto.Clone(h).(*fieldsyncv1.Record)
	moved.GetHousehold().AreaCode = forgetVillageB
	receive(t, s, srv, serverChange(t, srv, 2, moved, base, 2))
	// The old village's doctor edited the household before the move, not
	// knowing of it.
	edited := proto.Clone(h).(*fieldsyncv1.Record)
	edited.GetHousehold().Notes = "户主外出务工"
	edit := serverChange(t, doctor, 1, edited, base, 9)
	edit.Stamp.WallMS -= 60_000
	receive(t, s, srv, edit)
	if got := stateOf(t, s, h); got.Area() != forgetVillageB {
		t.Fatalf("household in %s, want %s", got.Area(), forgetVillageB)
	}
	f, err := s.ForgetOutside(ctx, []string{forgetVillageB}, srv)
	if err != nil || f != (sqlitestore.Forgotten{Records: 0, Changes: 2}) {
		t.Errorf("ForgetOutside = %+v, %v; want the old village's changes (its registration and the edit)", f, err)
	}
	got, err := wire.FromState(stateOf(t, s, h))
	if err != nil || got.GetHousehold().GetNotes() != "户主外出务工" {
		t.Errorf("household after forgetting: %v, %v; want the edit kept", got, err)
	}
	for _, e := range wholeLog(t, s) {
		if e.Change.Area != forgetVillageB {
			t.Errorf("log keeps change %v of %s", e.Change.Dot, e.Change.Area)
		}
	}
}

// A phone of village A that forgot a household moved to village B receives
// an edit another phone of A made before it knew of the move: the edit
// alone (the notes, no id, no area code) is a fragment, forgotten with its
// change. The household's state put whole (as a pull merges a record it
// sends whole), shown in A only because a later edit of A raced the move,
// is forgotten too; a household moved between two of the phone's villages,
// not settled yet, is kept.
func TestForgetOutsideFragmentsAndRacedMoves(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	srv, doctor := syncengine.ReplicaID{0x5e, 0x51}, syncengine.ReplicaID{0xd1}
	h := household(9, forgetVillageA, "赵")
	created := serverChange(t, srv, 1, h, syncengine.VersionVector{})
	edited := proto.Clone(h).(*fieldsyncv1.Record)
	edited.GetHousehold().Notes = "户主外出务工"
	edit := serverChange(t, doctor, 1, edited, syncengine.NewVersionVector(created.Dot), 9)
	receive(t, s, srv, edit)
	if r := stateOf(t, s, h); !r.Exists() || r.Area() != forgetVillageA {
		t.Fatalf("fragment shows in %q (exists %v), want %s: the test no longer makes one", r.Area(), r.Exists(), forgetVillageA)
	}
	f, err := s.ForgetOutside(ctx, []string{forgetVillageA}, srv)
	if err != nil || f != (sqlitestore.Forgotten{Records: 1, Changes: 1}) {
		t.Errorf("ForgetOutside = %+v, %v; want the fragment and its change", f, err)
	}
	if !stateOf(t, s, h).IsEmpty() {
		t.Error("fragment kept")
	}

	// The household whole, as the server holds it: created in A, moved to
	// B, edited in A concurrently and stamped after the move.
	moved := proto.Clone(h).(*fieldsyncv1.Record)
	moved.GetHousehold().AreaCode = forgetVillageB
	move := serverChange(t, srv, 2, moved, syncengine.NewVersionVector(created.Dot), 2)
	move.Stamp.WallMS -= 60_000
	whole := syncengine.Record{}
	for _, c := range []syncengine.Change{created, move, edit} {
		if whole, err = syncengine.Apply(whole, &c); err != nil {
			t.Fatal(err)
		}
	}
	if whole.Area() != forgetVillageA {
		t.Fatalf("raced move shows in %s, want %s", whole.Area(), forgetVillageA)
	}
	// Moved instead to village C, another village of the phone's.
	inC := proto.Clone(h).(*fieldsyncv1.Record)
	inC.GetHousehold().Id = household(10, "", "").GetHousehold().GetId()
	cCreated := serverChange(t, srv, 3, inC, syncengine.VersionVector{})
	inC.GetHousehold().AreaCode = forgetVillageC
	cMove := serverChange(t, srv, 4, inC, syncengine.NewVersionVector(cCreated.Dot), 2)
	cMove.Stamp.WallMS -= 60_000
	cEdit := serverChange(t, doctor, 2, edited, syncengine.NewVersionVector(cCreated.Dot), 9)
	cEdit.RecordID = cCreated.RecordID
	kept := syncengine.Record{}
	for _, c := range []syncengine.Change{cCreated, cMove, cEdit} {
		if kept, err = syncengine.Apply(kept, &c); err != nil {
			t.Fatal(err)
		}
	}
	err = s.Update(ctx, func(tx syncengine.Tx) error {
		if err := tx.PutRecord(ctx, whole); err != nil {
			return err
		}
		return tx.PutRecord(ctx, kept)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count(*) FROM records WHERE misplaced = 1"); n != 2 {
		t.Errorf("%d records marked misplaced, want 2", n)
	}
	f, err = s.ForgetOutside(ctx, []string{forgetVillageA, forgetVillageC}, srv)
	if err != nil || f.Records != 1 {
		t.Errorf("ForgetOutside = %+v, %v; want the household moved away", f, err)
	}
	if !stateOf(t, s, h).IsEmpty() {
		t.Error("household moved to B kept")
	}
	if r := stateOf(t, s, inC); !r.Exists() {
		t.Error("household moved within the phone's villages forgotten")
	}
}

// A fresh snapshot's sweep drops what the snapshot did not bring, but keeps
// a record with a change of the device's own not acknowledged when the round
// began, and one whose change the server refused (for the doctor to fix), and
// one written since the snapshot began.
func TestUnseenSweep(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	clock := syncengine.NewClock(s.Replica(), 0)
	srv := syncengine.ReplicaID{0x5e, 0x70}
	refused, pending, gone, later := household(21, forgetVillageA, "甲"), household(22, forgetVillageA, "乙"), household(23, forgetVillageA, "丙"), household(24, forgetVillageA, "丁")
	save(t, s, clock, refused)
	receive(t, s, srv, serverChange(t, srv, 1, gone, syncengine.VersionVector{}))
	log := wholeLog(t, s)
	setAcked(t, s, srv, log[len(log)-1].Pos)
	e := log[0]
	if err := s.Update(ctx, func(tx syncengine.Tx) error {
		return tx.PutRejection(ctx, syncengine.Rejection{Peer: srv, Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: syncengine.OutcomeInvalid, Detail: "x"})
	}); err != nil {
		t.Fatal(err)
	}
	keep := log[len(log)-1].Pos
	save(t, s, clock, pending) // not acknowledged when the round began
	type sweeper interface {
		MarkUnseen(context.Context, syncengine.ReplicaID, syncengine.Position) error
		DropUnseen(context.Context, syncengine.ReplicaID) (int, error)
	}
	if err := s.Update(ctx, func(tx syncengine.Tx) error { return tx.(sweeper).MarkUnseen(ctx, s.Replica(), keep) }); err != nil {
		t.Fatal(err)
	}
	save(t, s, clock, later) // during the snapshot
	var n int
	if err := s.Update(ctx, func(tx syncengine.Tx) error {
		var err error
		n, err = tx.(sweeper).DropUnseen(ctx, s.Replica())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 || !stateOf(t, s, gone).IsEmpty() {
		t.Errorf("DropUnseen dropped %d; the record the snapshot lacked: %v", n, stateOf(t, s, gone))
	}
	for _, r := range []*fieldsyncv1.Record{refused, pending, later} {
		if stateOf(t, s, r).IsEmpty() {
			t.Errorf("record %s dropped", r.GetHousehold().GetHeadName())
		}
	}
}
