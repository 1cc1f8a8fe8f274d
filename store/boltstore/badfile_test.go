package boltstore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// realStore writes a closed store with some records, log entries, devices
// and a compaction into dir and returns its path.
func realStore(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "real.db")
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	appendRandom(t, s, rng, 3000)
	fillVillages(t, s, 50)
	if err := s.Registry().PutDevice(t.Context(), boltstore.Device{ID: replicaID("p"), Areas: []string{townA}, TokenHash: [32]byte{1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Compact(t.Context(), 1000); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantOpenError opens path, which must fail with an error wrapping want that
// names the file and says what to do, and leave the file as it was.
func wantOpenError(t *testing.T, path string, want error) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := boltstore.Open(path, &testOptions)
	if err == nil {
		s.Close()
		t.Fatalf("open %s succeeded, want %v", filepath.Base(path), want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("open: %v, want an error wrapping %v", err, want)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "restore") {
		t.Errorf("error %q does not name the file and say what to do", msg)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("the file was modified by the failed open")
	}
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"random bytes", random},
		{"zeros", make([]byte, 64<<10)},
		{"one zero page", make([]byte, 4096)},
		{"text", []byte("district,village,households\n530102001001,Xiaozhai,212\n")},
		{"sqlite", append([]byte("SQLite format 3\x00"), make([]byte, 8192)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOpenError(t, writeFile(t, "s.db", tt.data), boltstore.ErrNotStore)
		})
	}
}

func TestOpenRefusesTruncatedCopies(t *testing.T) {
	path := realStore(t, t.TempDir())
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The file may extend past the data (bbolt grows it ahead); only a cut
	// into the data, below the high-water mark, loses anything.
	var used int
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bbolt.Tx) error { used = int(tx.Size()); return nil })
	db.Close()
	if err != nil || used > len(orig) {
		t.Fatalf("data size %d of a %d byte file: %v", used, len(orig), err)
	}
	for _, size := range []int{100, 4096, 3 * 4096, used / 2, used - 4096} {
		path := writeFile(t, "cut.db", orig[:size])
		wantOpenError(t, path, boltstore.ErrCorrupt)
	}
}

func TestOpenEmptyFileCreatesStore(t *testing.T) {
	path := writeFile(t, "s.db", nil)
	s := openAt(t, path)
	if s.Replica().IsZero() {
		t.Error("no replica id")
	}
	apply(t, s, change(replicaID("p"), 1, recordID(1), villageA, syncengine.VersionVector{}, nil))
	if fi, _ := os.Stat(path); fi.Size() == 0 {
		t.Error("the store was not written to the file")
	}
	if left, _ := filepath.Glob(path + ".new-*"); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := realStore(t, t.TempDir())
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 99))
	})
	_, err := boltstore.Open(path, &testOptions)
	if !errors.Is(err, boltstore.ErrNewerSchema) || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "99") {
		t.Fatalf("open: %v, want ErrNewerSchema saying so", err)
	}
}

func TestOpenRefusesOtherBboltFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("widgets"))
		return err
	})
	wantOpenError(t, path, boltstore.ErrNotStore)
}

func TestOpenRefusesMissingBucket(t *testing.T) {
	path := realStore(t, t.TempDir())
	rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("dots")) })
	wantOpenError(t, path, boltstore.ErrCorrupt)
}

// TestDamagedPagesNeverPanic overwrites, one at a time, each page of a real
// store that holds data with random bytes, or only the part after its
// header: Open or else Check must report ErrCorrupt, and nothing may panic.
func TestDamagedPagesNeverPanic(t *testing.T) {
	dir := t.TempDir()
	path := realStore(t, dir)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pages := dataPages(t, path)
	if len(pages) < 10 {
		t.Fatalf("only %d data pages", len(pages))
	}
	rng := rand.New(rand.NewPCG(9, 9))
	const pageSize = 4096
	for i, id := range pages {
		if testing.Short() && i%4 != 0 {
			continue
		}
		for _, from := range []int{0, 16} { // the whole page, or keep the header
			b := bytes.Clone(orig)
			for j := id*pageSize + from; j < (id+1)*pageSize; j++ {
				b[j] = byte(rng.Uint32())
			}
			damagedPath := filepath.Join(dir, "damaged.db")
			if err := os.WriteFile(damagedPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := openAndCheck(t, damagedPath); !errors.Is(err, boltstore.ErrCorrupt) {
				t.Errorf("page %d from byte %d damaged: %v, want ErrCorrupt", id, from, err)
			}
		}
	}
}

// openAndCheck opens path and checks it, returning the first error.
func openAndCheck(t *testing.T, path string) error {
	t.Helper()
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Check(t.Context())
}

// dataPages lists the leaf and branch pages of the bbolt file at path.
func dataPages(t *testing.T, path string) []int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []int
	err = db.View(func(tx *bbolt.Tx) error {
		for id := 2; ; {
			info, err := tx.Page(id)
			if err != nil || info == nil {
				return err
			}
			if info.Type == "leaf" || info.Type == "branch" {
				out = append(out, id)
			}
			if info.Type == "free" {
				id++
			} else {
				id += 1 + info.OverflowCount
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckFindsInconsistentIndexes(t *testing.T) {
	tests := []struct {
		name string
		fn   func(tx *bbolt.Tx) error
	}{
		{"log area key removed", func(tx *bbolt.Tx) error {
			k, _ := tx.Bucket([]byte("logarea")).Cursor().Last()
			return tx.Bucket([]byte("logarea")).Delete(k)
		}},
		{"record area key removed", func(tx *bbolt.Tx) error {
			k, _ := tx.Bucket([]byte("recarea")).Cursor().First()
			return tx.Bucket([]byte("recarea")).Delete(k)
		}},
		{"dot removed", func(tx *bbolt.Tx) error {
			k, _ := tx.Bucket([]byte("dots")).Cursor().Last()
			return tx.Bucket([]byte("dots")).Delete(k)
		}},
		{"log entry garbled", func(tx *bbolt.Tx) error {
			k, _ := tx.Bucket([]byte("log")).Cursor().Last()
			return tx.Bucket([]byte("log")).Put(k, []byte{12, 'x'})
		}},
		{"token index removed", func(tx *bbolt.Tx) error {
			k, _ := tx.Bucket([]byte("devtokens")).Cursor().First()
			return tx.Bucket([]byte("devtokens")).Delete(k)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := realStore(t, t.TempDir())
			if err := openAndCheck(t, path); err != nil {
				t.Fatalf("before: %v", err)
			}
			rawUpdate(t, path, tt.fn)
			err := openAndCheck(t, path)
			if !errors.Is(err, boltstore.ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Errorf("Check: %v, want ErrCorrupt naming the file", err)
			}
		})
	}
}

// rawUpdate changes the bbolt file at path behind the store's back.
func rawUpdate(t *testing.T, path string, fn func(*bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}
