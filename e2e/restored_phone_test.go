package e2e

import (
	"os"
	"testing"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// A phone whose replica file is restored from a backup (a reinstall) numbers
// its next changes with dots the server holds for the changes it made after
// the backup. The server refuses the first such change (REASON_DOT_REUSED)
// without acknowledging it; the phone numbers its unsent changes again above
// the server's highest dot of it, pushes them, and takes a snapshot that
// brings back what the backup lacked. Without re-enrolment, nothing is lost:
// the work of before the backup, after it, and after the restore is on the
// server once and back on the phone. Also after the server compacted the
// entries of the reused dots away.
//
// A restored phone that syncs before it saves anything numbers its new
// changes above the server's highest dot from the start (the handshake's
// max_counter is its floor), and nothing is refused.
func TestRestoredPhoneGetsItsWorkThrough(t *testing.T) {
	for _, tc := range []struct {
		name               string
		compact, syncFirst bool
	}{{"log kept", false, false}, {"log compacted", true, false}, {"synced before saving", false, true}} {
		t.Run(tc.name, func(t *testing.T) { testRestoredPhone(t, tc.compact, tc.syncFirst) })
	}
}

func testRestoredPhone(t *testing.T, compact, syncFirst bool) {
	srv, addr := servertest.Start(t, server.Config{IDHashKey: testIDHashKey})
	cty := newCounty(t, 11, 6, householdsAndVisits)
	phone := enrolled(t, srv, addr, "phone", cty.villages[0])
	other := enrolled(t, srv, addr, "other", cty.villages[0])
	recs := cty.records[0]
	if len(recs) < 6 {
		t.Fatalf("village too small: %d records", len(recs))
	}
	save(t, phone, recs[0])
	mustSync(t, phone)
	phone.close(t)
	backup, err := os.ReadFile(phone.path)
	if err != nil {
		t.Fatal(err)
	}
	phone.reopen(t, quickRetry(3)...)
	if recs[0].GetHousehold() == nil {
		t.Fatalf("first record %v, want a household", recs[0])
	}
	save(t, phone, recs[1]) // after the backup: lost with the phone
	editNotes(t, phone, recs[0], "丢失的修改")
	save(t, phone, recs[2])
	mustSync(t, phone, other, phone)
	if compact {
		// Both phones pulled everything: the phone's three changes go.
		if _, err := srv.CompactLog(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		if cp, err := srv.Store().Compacted(t.Context()); err != nil || cp < 3 {
			t.Fatalf("log compacted through %d, %v; want past the phone's three changes", cp, err)
		}
	}

	// Restore the backup, as a reinstall would, and work on.
	phone.close(t)
	os.Remove(phone.path + "-wal")
	os.Remove(phone.path + "-shm")
	if err := os.WriteFile(phone.path, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	phone.reopen(t, quickRetry(3)...)
	if syncFirst {
		mustSync(t, phone)
	}
	save(t, phone, recs[3])
	edited := editNotes(t, phone, recs[0], "恢复后的修改")
	save(t, phone, recs[4])
	attempts := 0
	if err := phone.Sync(t.Context(), fieldsync.OnProgress(func(p fieldsync.Progress) { attempts = max(attempts, p.Attempt) })); err != nil {
		t.Fatalf("phone: Sync after the restore: %v", err)
	}
	if syncFirst && attempts != 1 {
		t.Errorf("the sync after the restore took %d attempts: a change was numbered with a reused dot", attempts)
	}
	if !syncFirst && attempts < 2 {
		t.Errorf("the sync after the restore took %d attempt: no dot was reused, so the test shows nothing", attempts)
	}
	save(t, phone, recs[5])
	mustSync(t, phone, other)

	st, err := phone.Status(t.Context())
	if err != nil || st.Pending != 0 || len(st.Rejected) != 0 {
		t.Fatalf("after the restore: Status = %+v, %v; want nothing pending or refused", st, err)
	}
	srvState := readCompactedServer(t, srv)
	// The edit made after the restore is the household's notes, with no
	// conflict: a later edit of the same device than the one the copy lost.
	want := append([]*fieldsyncv1.Record{edited}, recs[1:6]...)
	saved := make(map[syncengine.RecordID]*fieldsyncv1.Record)
	for _, r := range want {
		saved[recordID(t, r)] = r
	}
	checkSaved(t, srvState, saved)
	if cs := srvState.records[recordID(t, edited)].Conflicts(); len(cs) != 0 {
		t.Errorf("the edited household has conflicts %v", cs)
	}
	checkHas(t, phone, want...)
	checkHas(t, other, want...)
	if got := serverMaxCounter(t, srv, phone.Replica()); got < 8 {
		t.Errorf("server's highest dot of the phone is %d, want its eight changes", got)
	}
	checkLogUnique(t, srvState)
	checkSameRecords(t, srvState, readDevice(t, phone), readDevice(t, other))
}

// A restored device resends positions the server's cursor is past. The
// server's answer acknowledges no more than the device sent, nothing from a
// change refused for clock skew on, and nothing from a reused dot of the
// device's own on.
func TestPushAcknowledgesOnlyWhatItStored(t *testing.T) {
	srv, addr := servertest.Start(t, server.Config{IDHashKey: testIDHashKey})
	cty := newCounty(t, 17, 6, householdsAndVisits)
	d := enrollRaw(t, srv, addr, cty.villages[0])
	rpc := fieldsyncv1.NewSyncServiceClient(d.conn)
	recs := cty.records[0]
	push := func(first uint64, cs ...syncengine.Change) *fieldsyncv1.PushResponse {
		t.Helper()
		req := &fieldsyncv1.PushRequest{FirstPosition: first, LastPosition: first + uint64(len(cs)) - 1}
		for _, c := range cs {
			pc, err := wire.ChangeToProto(c)
			if err != nil {
				t.Fatal(err)
			}
			req.Changes = append(req.Changes, pc)
		}
		resp, err := rpc.Push(d.ctx, req)
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		return resp
	}
	// Positions 1..5 stored: the server's cursor for the device is 5.
	var first []syncengine.Change
	for _, r := range recs[:5] {
		first = append(first, d.change(t, r, syncengine.VersionVector{}))
	}
	if resp := push(1, first...); resp.GetAcknowledgedPosition() != 5 {
		t.Fatalf("first push acknowledged %d, want 5", resp.GetAcknowledgedPosition())
	}
	// Restored to after position 2: it resends positions 3..4, new changes
	// with new dots, the second stamped a day ahead.
	a := d.change(t, recs[5], syncengine.VersionVector{})
	b := d.change(t, recs[5], syncengine.VersionVector{})
	b.Stamp.WallMS += 24 * 3600 * 1000
	resp := push(3, a, b)
	if got := resp.GetAcknowledgedPosition(); got != 3 {
		t.Errorf("push of 3..4 with 4 skewed acknowledged %d, want 3", got)
	}
	if n := len(resp.GetResults()); n != 2 || resp.GetResults()[1].GetReason() != fieldsyncv1.Reason_REASON_CLOCK_SKEW {
		t.Errorf("results %v, want the second refused for clock skew", resp.GetResults())
	}
	// A change reusing dot 2 of the device: nothing from it on.
	reused := changeAs(t, syncengine.Dot{Replica: d.id, Counter: 2}, recs[0], syncengine.VersionVector{})
	resp = push(4, reused)
	if got := resp.GetAcknowledgedPosition(); got != 3 {
		t.Errorf("push of a reused dot at 4 acknowledged %d, want 3", got)
	}
	if rs := resp.GetResults(); len(rs) != 1 || rs[0].GetReason() != fieldsyncv1.Reason_REASON_DOT_REUSED {
		t.Errorf("results %v, want DOT_REUSED", rs)
	}
}
