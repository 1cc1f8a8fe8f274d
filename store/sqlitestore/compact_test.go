package sqlitestore_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// A replica of schema 5 holds record states in the first encoding: they read
// as before once it is upgraded, and a record written again is stored in the
// keyed compact encoding.
func TestOpenReadsStatesOfSchema5(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	s, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	srv := syncengine.ReplicaID{0x5e, 0x50}
	h := household(1, forgetVillageA, "张三")
	c := serverChange(t, srv, 1, h, syncengine.VersionVector{})
	put := func(c syncengine.Change) syncengine.Record {
		t.Helper()
		next, err := syncengine.Apply(stateOf(t, s, h), &c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(t.Context(), func(tx syncengine.Tx) error { return tx.PutRecord(t.Context(), next) }); err != nil {
			t.Fatal(err)
		}
		return next
	}
	first := put(c)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := first.MarshalBinary()
	id := first.ID()
	if _, err := db.Exec("UPDATE records SET state = ? WHERE record_id = ?", old, id[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 5"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	if s, err = sqlitestore.Open(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := stateOf(t, s, h); got.Digest() != first.Digest() {
		t.Fatalf("a state of schema 5 reads %v, want %v", got, first)
	}
	h.GetHousehold().HeadName = "张四"
	second := put(serverChange(t, srv, 2, h, first.Version()))
	if got := stateOf(t, s, h); got.Digest() != second.Digest() {
		t.Fatalf("after the upgrade and an edit the state reads %v", got)
	}
	if n := count(t, s, "SELECT count(*) FROM records WHERE record_id = ? AND substr(state, 1, 1) = x'03'", id[:]); n != 1 {
		t.Error("the state written again is not in the keyed compact encoding")
	}
}
