package sqlitestore_test

import (
	"bytes"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// A rejection keeps its reason and field errors, with the record it is
// about; on a sealed replica the field errors (which may quote a reading) are
// not in the file, whether written sealed or sealed at the first keyed open.
func TestRejections(t *testing.T) {
	const reading = "收缩压 286 超出范围"
	fields := []syncengine.FieldError{{Path: "systolic", Reason: int32(fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_OUT_OF_RANGE), Message: reading}}
	put := func(t *testing.T, s *sqlitestore.Store, srv syncengine.ReplicaID) syncengine.Rejection {
		t.Helper()
		clock := syncengine.NewClock(s.Replica(), 0)
		save(t, s, clock, household(1, forgetVillageA, "王"))
		e := wholeLog(t, s)[0]
		rej := syncengine.Rejection{Peer: srv, Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: syncengine.OutcomeInvalid,
			Detail: "invalid record: " + reading, Reason: syncengine.ReasonInvalidRecord, Fields: fields}
		if err := s.Update(t.Context(), func(tx syncengine.Tx) error { return tx.PutRejection(t.Context(), rej) }); err != nil {
			t.Fatal(err)
		}
		return rej
	}
	check := func(t *testing.T, s *sqlitestore.Store, srv syncengine.ReplicaID, want syncengine.Rejection, sealed bool) {
		t.Helper()
		got, err := s.Rejections(t.Context(), srv)
		if err != nil || len(got) != 1 {
			t.Fatalf("Rejections = %+v, %v; want one", got, err)
		}
		r := got[0]
		if r.ID != want.ID || r.Dot != want.Dot || r.Pos != want.Pos || r.Outcome != want.Outcome || r.Reason != want.Reason ||
			r.Detail != want.Detail || !slices.Equal(r.Fields, want.Fields) || r.RecordID != wholeLog(t, s)[0].Change.RecordID {
			t.Errorf("rejection = %+v, want %+v", r, want)
		}
		if other, err := s.Rejections(t.Context(), syncengine.ReplicaID{0x77}); err != nil || len(other) != 0 {
			t.Errorf("another peer's rejections = %+v, %v", other, err)
		}
		if in := bytes.Contains(fileBytes(t, s.Path()), []byte(reading)); in == sealed {
			t.Errorf("the reading in the file: %v, sealed replica: %v", in, sealed)
		}
	}
	srv := syncengine.ReplicaID{0x5e, 0x60}
	t.Run("clear, then sealed at the first keyed open", func(t *testing.T) {
		s := openTemp(t)
		want := put(t, s, srv)
		check(t, s, srv, want, false)
		if err := s.Unlock(t.Context(), testKey(t)); err != nil {
			t.Fatal(err)
		}
		check(t, s, srv, want, true)
	})
	t.Run("sealed", func(t *testing.T) {
		s := openTempSealed(t)
		want := put(t, s, srv)
		check(t, s, srv, want, true)
	})
}

// A replica sealed before rejections' details were kept its rejections in
// clear: its next Unlock seals them, and they read as before.
func TestRejectionsSealedAtUnlock(t *testing.T) {
	const reading = "舒张压 190 超出范围"
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "replica.db")
	key := testKey(t)
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx, key); err != nil {
		t.Fatal(err)
	}
	save(t, s, syncengine.NewClock(s.Replica(), 0), household(2, forgetVillageA, "李"))
	e := wholeLog(t, s)[0]
	srv := syncengine.ReplicaID{0x5e, 0x61}
	rej := syncengine.Rejection{Peer: srv, Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: syncengine.OutcomeInvalid, Detail: "x"}
	if err := s.Update(ctx, func(tx syncengine.Tx) error { return tx.PutRejection(ctx, rej) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE rejections SET detail = ?, sealed = 0", "invalid record: "+reading); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Unlock(ctx, key); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rejections(ctx, srv)
	if err != nil || len(got) != 1 || got[0].Detail != "invalid record: "+reading {
		t.Fatalf("Rejections = %+v, %v", got, err)
	}
	if bytes.Contains(fileBytes(t, path), []byte(reading)) {
		t.Error("the reading is still in the file after Unlock")
	}
}
