package sqlitestore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
)

// testKey is a random replica key.
func testKey(t testing.TB) []byte {
	key := make([]byte, 32)
	rand.Read(key)
	return key
}

// personalStrings are what a sealed replica's file must not show of recs:
// names, heads of household, addresses, masked ID numbers with the birth
// date (which together rebuild most of an ID number).
func personalStrings(recs []*fieldsyncv1.Record) [][]byte {
	var out [][]byte
	add := func(v string) {
		if len(v) >= 4 { // a two-character Chinese name is 6 bytes
			out = append(out, []byte(v))
		}
	}
	for _, r := range recs {
		if p := r.GetPerson(); p != nil {
			add(p.GetName())
			add(p.GetIdNumber().GetMasked())
			// Birth dates before the survey years: the dates of visits and
			// follow-ups stay in clear and may fall on a child's birthday.
			if d, err := survey.DateTime(p.GetBirthDate()); err == nil && d.Year() < 2024 {
				add(d.Format(time.DateOnly))
			}
		}
		if h := r.GetHousehold(); h != nil {
			add(h.GetHeadName())
			add(h.GetAddress())
		}
	}
	return out
}

// fileBytes returns the replica file and its write-ahead log and shared
// memory, as someone who copies them off the phone would have them.
func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestSealedReplica seals a replica holding a village in clear and checks
// that its files show nobody's name, address or ID digits, that it opens only
// with its key, and that everything reads back with it.
func TestSealedReplica(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "replica.db")
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	recs := openTempFill(t, s)
	secrets := personalStrings(recs)
	if len(secrets) < 100 {
		t.Fatalf("only %d personal strings in the village", len(secrets))
	}
	clear := fileBytes(t, path)
	found := 0
	for _, v := range secrets {
		if bytes.Contains(clear, v) {
			found++
		}
	}
	if found < len(secrets)/2 {
		t.Fatalf("the clear replica shows only %d of %d personal strings: the check below would prove nothing", found, len(secrets))
	}
	villages := []string{recs[0].GetHousehold().GetAreaCode()}
	asOf := time.Date(2026, 11, 1, 0, 0, 0, 0, survey.ChinaTime)
	dueClear, err := s.DuePatients(ctx, villages, asOf)
	if err != nil || len(dueClear) == 0 {
		t.Fatalf("DuePatients on the clear replica: %d, %v", len(dueClear), err)
	}

	key := testKey(t)
	if err := s.Unlock(ctx, key); err != nil {
		t.Fatal(err)
	}
	if !s.Sealed() {
		t.Error("Sealed() = false after Unlock")
	}
	// A visit saved after sealing is sealed too.
	clock := syncengine.NewClock(s.Replica(), 0)
	later := recs[len(recs)-1]
	save(t, s, clock, later)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sealed := fileBytes(t, path)
	for _, v := range secrets {
		if bytes.Contains(sealed, v) {
			t.Errorf("the sealed replica's files contain %q", v)
		}
	}
	// Stock sqlite3, as anyone with the file would read it.
	dump, err := exec.Command("sqlite3", path, ".dump").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 .dump: %v\n%s", err, dump)
	}
	if !bytes.Contains(dump, []byte("INSERT INTO persons")) {
		t.Fatalf("sqlite3 .dump shows no persons row: %.500s", dump)
	}
	for _, v := range secrets {
		if bytes.Contains(dump, v) {
			t.Errorf("sqlite3 .dump of the sealed replica shows %q", v)
		}
	}

	// Without the key: locked. With another: refused.
	s, err = sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Sealed() {
		t.Error("a sealed replica reopened says it is not sealed")
	}
	if _, err := s.DuePatients(ctx, villages, asOf); !errors.Is(err, sqlitestore.ErrLocked) {
		t.Errorf("DuePatients without the key: %v, want ErrLocked", err)
	}
	if _, err := s.Records(ctx, syncengine.Kind(fieldsyncv1.RecordKind_RECORD_KIND_PERSON), syncengine.RecordID{}, 10); !errors.Is(err, sqlitestore.ErrLocked) {
		t.Errorf("Records without the key: %v, want ErrLocked", err)
	}
	if err := s.Unlock(ctx, testKey(t)); !errors.Is(err, sqlitestore.ErrWrongKey) {
		t.Errorf("Unlock with another key: %v, want ErrWrongKey", err)
	}
	if err := s.Unlock(ctx, key); err != nil {
		t.Fatal(err)
	}
	dueSealed, err := s.DuePatients(ctx, villages, asOf)
	if err != nil {
		t.Fatal(err)
	}
	if len(dueSealed) != len(dueClear) {
		t.Fatalf("DuePatients sealed: %d rows, clear: %d", len(dueSealed), len(dueClear))
	}
	for i := range dueClear {
		a, b := dueClear[i], dueSealed[i]
		if a.PersonID != b.PersonID || a.Name != b.Name || a.HeadName != b.HeadName || a.Address != b.Address || !a.DueOn.Equal(b.DueOn) {
			t.Errorf("due row %d sealed %+v, clear %+v", i, b, a)
		}
	}
	if dueSealed[0].Name == "" {
		t.Error("a due patient's name is empty on the sealed replica")
	}
	if err := s.Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestSealedValueBoundToRow: a sealed state copied over another record's
// (by someone editing the file) does not open: the read fails as damage
// instead of showing one person's record as another's.
func TestSealedValueBoundToRow(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "replica.db")
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	if err := s.Unlock(ctx, key); err != nil {
		t.Fatal(err)
	}
	openTempFill(t, s)
	s.Close()
	out, err := exec.Command("sqlite3", path,
		"UPDATE records SET state = (SELECT state FROM records ORDER BY record_id LIMIT 1) WHERE record_id = (SELECT record_id FROM records ORDER BY record_id DESC LIMIT 1)").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	s, err = sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Unlock(ctx, key); err != nil {
		t.Fatal(err)
	}
	for kind := range syncengine.Kind(16) {
		if _, err := s.Records(ctx, kind, syncengine.RecordID{}, 100000); err != nil {
			if !errors.Is(err, sqlitestore.ErrCorrupt) {
				t.Errorf("Records(%d): %v, want ErrCorrupt", kind, err)
			}
			return
		}
	}
	t.Fatal("every record read back after a state was copied over another")
}

// TestSealScrubRetried: when the scrub after sealing cannot finish (here a
// reader holds the write-ahead log, so the checkpoint is busy), Unlock says
// so and the next Unlock finishes it: the clear pages never stay for good.
func TestSealScrubRetried(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "replica.db")
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	recs := openTempFill(t, s)
	secrets := personalStrings(recs)
	reading, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.View(ctx, func(tx syncengine.ReadTx) error {
			if _, err := tx.Cursor(ctx, syncengine.ReplicaID{}); err != nil { // takes the snapshot
				return err
			}
			close(reading)
			<-release
			return nil
		})
	}()
	<-reading
	key := testKey(t)
	err = s.Unlock(ctx, key)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, sqlitestore.ErrScrubPending) {
		t.Fatalf("Unlock with a reader holding the log: %v, want ErrScrubPending", err)
	}
	if _, err := s.Records(ctx, 1, syncengine.RecordID{}, 10); err != nil {
		t.Errorf("the sealed replica with its scrub pending does not read: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx, key); err != nil {
		t.Fatalf("the second Unlock: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := fileBytes(t, path)
	for _, v := range secrets {
		if bytes.Contains(raw, v) {
			t.Errorf("after the scrub the files still contain %q", v)
		}
	}
}
