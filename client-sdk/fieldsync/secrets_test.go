package fieldsync

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey"
)

// TestSecretsEncryptedAtRest: with a key, the device token and the ID-hash
// key never reach the replica file in clear (the file and its WAL are
// grepped for the ID-hash key); without the key the phone cannot sync as the
// device; with another key it cannot open; a replica enrolled without a key
// has its secrets encrypted when it is first opened with one.
func TestSecretsEncryptedAtRest(t *testing.T) {
	s := startServer(t)
	const village1 = "532523101201"
	idKey := []byte("test id hash key") // startServer's
	key := bytes.Repeat([]byte{7}, 32)
	path := filepath.Join(t.TempDir(), "replica.db")
	c, err := Open(t.Context(), path, WithSecretKey(key))
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := s.srv.IssueEnrolmentCode([]string{village1}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), s.addr, code); err != nil {
		t.Fatal(err)
	}
	if got, err := c.IDHashKey(t.Context()); err != nil || !bytes.Equal(got, idKey) {
		t.Errorf("IDHashKey = %q, %v", got, err)
	}
	mustSync(t, c)
	for _, f := range []string{path, path + "-wal"} {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, idKey) {
			t.Errorf("%s holds the ID-hash key in clear", filepath.Base(f))
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Without the key, or with another: refused.
	if _, err := Open(t.Context(), path); !errors.Is(err, ErrSecretsLocked) {
		t.Errorf("Open without the key: %v, want ErrSecretsLocked", err)
	}
	if _, err := Open(t.Context(), path, WithSecretKey(bytes.Repeat([]byte{8}, 32))); !errors.Is(err, ErrSecretsLocked) {
		t.Errorf("Open with another key: %v, want ErrSecretsLocked", err)
	}
	// Enrolled in clear, then opened with a passphrase: encrypted at open.
	plain := s.device(t, village1)
	ppath := plain.store.Path()
	plain.Close()
	clear, _ := os.ReadFile(ppath)
	wal, _ := os.ReadFile(ppath + "-wal")
	if !bytes.Contains(append(clear, wal...), idKey) {
		t.Fatal("a replica enrolled without a key does not show the ID-hash key to the grep: the check above proves nothing")
	}
	c, err = Open(t.Context(), ppath, WithPassphrase("春兰的口令"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, _ := c.store.Meta(t.Context(), metaIDHashKey); !bytes.HasPrefix(v, secretPrefix) {
		t.Errorf("the ID-hash key after opening with a passphrase: %q, want encrypted", v)
	}
	mustSync(t, c)
}

// TestPeopleEncryptedAtRest: a phone opened with a passphrase keeps nobody's
// name, address, masked ID number, birth date or ID digits in clear, whether
// the people arrived by the first sync (the snapshot), by a later pull, or
// were saved on the phone, and whether the replica was sealed at enrolment or
// held people in clear before (sealed when first opened with a key). The
// files are grepped, and dumped with the stock sqlite3 tool. Without the
// passphrase the replica does not open; with it, the doctor's lists show the
// names.
func TestPeopleEncryptedAtRest(t *testing.T) {
	ctx := t.Context()
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"))
	v := newExportVillage(t)
	const pass = "春兰的口令"
	// A doctor's phone without a key saves half the village and syncs it.
	a := s.enrol(t, v.code, fastRetry)
	half := len(v.persons) / 2
	for _, r := range append(slices.Clone(v.households), v.persons[:half]...) {
		mustSave(t, a, r)
	}
	mustSync(t, a)
	// A second phone, with a passphrase, bootstraps that, then pulls the
	// rest, and saves visits of its own.
	b := s.enrol(t, v.code, fastRetry, WithPassphrase(pass))
	mustSync(t, b)
	for _, r := range v.persons[half:] {
		mustSave(t, a, r)
	}
	mustSync(t, a)
	mustSync(t, b)
	for _, r := range v.visits {
		mustSave(t, b, r)
	}
	mustSync(t, b)
	if got, err := b.Persons(ctx); err != nil || len(got) != len(v.persons) {
		t.Fatalf("the sealed phone holds %d persons, %v; want %d", len(got), err, len(v.persons))
	}
	secrets := personalStrings(v)
	pathA, pathB := a.store.Path(), b.store.Path()
	a.Close()
	b.Close()
	if found := countIn(replicaBytes(t, pathA), secrets); found < len(secrets)/2 {
		t.Fatalf("the clear phone shows only %d of %d personal strings: the grep proves nothing", found, len(secrets))
	}
	checkSealedFile(t, pathB, secrets)

	// The clear phone opened with a passphrase: sealed at open.
	a, err := Open(ctx, pathA, WithPassphrase(pass))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	checkSealedFile(t, pathA, secrets)

	if _, err := Open(ctx, pathB); !errors.Is(err, ErrSecretsLocked) {
		t.Errorf("Open without the passphrase: %v, want ErrSecretsLocked", err)
	}
	if _, err := Open(ctx, pathB, WithPassphrase("another")); !errors.Is(err, ErrSecretsLocked) {
		t.Errorf("Open with another passphrase: %v, want ErrSecretsLocked", err)
	}
	b, err = Open(ctx, pathB, WithPassphrase(pass))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	people, err := b.Persons(ctx)
	if err != nil || len(people) != len(v.persons) {
		t.Fatalf("Persons after reopening: %d, %v", len(people), err)
	}
	names := map[string]bool{}
	for _, p := range people {
		names[p.GetName()] = true
	}
	for _, r := range v.persons {
		if !names[r.GetPerson().GetName()] {
			t.Errorf("%s is not among the persons read back", r.GetPerson().GetName())
		}
	}
	if left, err := b.UnvisitedHouseholds(ctx, "2027-春季"); err != nil || len(left) != len(v.households) || left[0].GetHeadName() == "" {
		t.Errorf("UnvisitedHouseholds after reopening: %d, %v", len(left), err)
	}
	mustSync(t, b)
}

// personalStrings are what a sealed phone must not show of v's people:
// names, heads of household, addresses, masked ID numbers, clear ID numbers
// and their last digits with the birth date (which, with the county code,
// rebuild an ID number).
func personalStrings(v exportVillage) [][]byte {
	var out [][]byte
	for _, r := range v.persons {
		p := r.GetPerson()
		out = append(out, []byte(p.GetName()), []byte(p.GetIdNumber().GetMasked()))
		if d, err := survey.DateTime(p.GetBirthDate()); err == nil && d.Year() < 2024 {
			out = append(out, []byte(d.Format(time.DateOnly)), []byte(d.Format("20060102")))
		}
	}
	for _, r := range v.households {
		out = append(out, []byte(r.GetHousehold().GetHeadName()), []byte(r.GetHousehold().GetAddress()))
	}
	for _, id := range v.clearIDs {
		out = append(out, []byte(id), []byte(id[6:14]))
	}
	return out
}

// replicaBytes are a replica's file, write-ahead log and shared memory, as
// someone who copies them off the phone would have them.
func replicaBytes(t *testing.T, path string) []byte {
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

// countIn is how many of secrets b contains.
func countIn(b []byte, secrets [][]byte) int {
	n := 0
	for _, s := range secrets {
		if bytes.Contains(b, s) {
			n++
		}
	}
	return n
}

// checkSealedFile fails for each of secrets found in the replica's files or
// in what the stock sqlite3 tool dumps of it.
func checkSealedFile(t *testing.T, path string, secrets [][]byte) {
	t.Helper()
	raw := replicaBytes(t, path)
	dump, err := exec.Command("sqlite3", path, ".dump").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 .dump: %v\n%s", err, dump)
	}
	if !bytes.Contains(dump, []byte("INSERT INTO persons")) {
		t.Fatalf("the dump shows no persons row: %.300s", dump)
	}
	for _, s := range secrets {
		if bytes.Contains(raw, s) {
			t.Errorf("%s: the files contain %q", filepath.Base(path), s)
		}
		if bytes.Contains(dump, s) {
			t.Errorf("%s: sqlite3 .dump shows %q", filepath.Base(path), s)
		}
	}
}
