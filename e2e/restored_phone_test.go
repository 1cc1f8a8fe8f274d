package e2e

import (
	"os"
	"testing"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
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
func TestRestoredPhoneGetsItsWorkThrough(t *testing.T) {
	for _, compact := range []bool{false, true} {
		name := "log kept"
		if compact {
			name = "log compacted"
		}
		t.Run(name, func(t *testing.T) { testRestoredPhone(t, compact) })
	}
}

func testRestoredPhone(t *testing.T, compact bool) {
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
	save(t, phone, recs[3])
	edited := editNotes(t, phone, recs[0], "恢复后的修改")
	save(t, phone, recs[4])
	mustSync(t, phone)
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
