package sqlitestore_test

import (
	"bytes"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/store/sqlitestore"
)

func TestReopenKeepsReplicaID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	s, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	id := s.Replica()
	if err := s.SetMeta(t.Context(), "server", []byte("127.0.0.1:7443")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Replica() != id || id.IsZero() {
		t.Errorf("replica id %v after reopen, want %v", s.Replica(), id)
	}
	if v, err := s.Meta(t.Context(), "server"); string(v) != "127.0.0.1:7443" || err != nil {
		t.Errorf("Meta(server) = %q, %v", v, err)
	}
}

// TestBadFiles opens files that are not healthy replicas: each must get an
// error naming the file and what to do, and the file must be left as it was.
func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := sqlitestore.Open(t.Context(), good)
	if err != nil {
		t.Fatal(err)
	}
	openTempFill(t, s)
	s.Close()
	whole, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		want    error
	}{
		{"text file", []byte("visits to do today:\n张德明\n"), sqlitestore.ErrNotReplica},
		{"random bytes", bytes.Repeat([]byte{0x9e, 0x37, 0x79, 0xb9}, 2048), sqlitestore.ErrNotReplica},
		{"zero filled", make([]byte, 8192), sqlitestore.ErrNotReplica},
		{"header only", []byte("SQLite format 3\x00"), nil},
		{"truncated copy", whole[:len(whole)/2], nil},
		{"scribbled pages", scribble(whole), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".db")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := sqlitestore.Open(t.Context(), path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded on a damaged file", tc.name)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open: %v, want %v", err, tc.want)
			}
			if !errors.Is(err, sqlitestore.ErrNotReplica) && !errors.Is(err, sqlitestore.ErrCorrupt) {
				t.Errorf("Open: %v, want ErrNotReplica or ErrCorrupt", err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "backup") {
				t.Errorf("error %q does not name the file and what to do", msg)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, tc.content) {
				t.Error("Open changed the damaged file")
			}
		})
	}
}

// scribble overwrites the middle of every page after the first.
func scribble(db []byte) []byte {
	out := bytes.Clone(db)
	for off := 4096 + 1000; off+200 < len(out); off += 4096 {
		copy(out[off:off+200], bytes.Repeat([]byte{0xa5}, 200))
	}
	return out
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	s, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = sqlitestore.Open(t.Context(), path)
	if !errors.Is(err, sqlitestore.ErrNewerSchema) || !strings.Contains(err.Error(), "update the app") {
		t.Errorf("Open of a schema-999 file: %v, want ErrNewerSchema saying to update the app", err)
	}
}

// TestReplicaFilesArePrivate: a new replica, its WAL and its shared-memory
// file are readable by their owner only, and a replica an older version left
// readable by others is made private when it is opened.
func TestReplicaFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "replica.db")
	s, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", filepath.Base(p), st.Mode().Perm(), err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a 0644 replica after Open: %v, %v; want 0600", st.Mode().Perm(), err)
	}
}
