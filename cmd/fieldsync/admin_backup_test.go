package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/store/boltstore"
)

// 'admin backup' copies a live server's store into a file only its owner
// reads, which opens as a store holding what the server held; the copy is in
// the audit trail; an old copy is replaced only by a whole one.
func TestAdminBackup(t *testing.T) {
	dir := t.TempDir()
	_, addr := servertest.Start(t, server.Config{DataDir: dir})
	conn := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	admin := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(t.Context(), append(append([]string{"admin"}, args...), conn...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	for _, area := range []string{"532523101201", "532523101202"} {
		if out, err := admin("device", "add", "--area", area, "--name", "phone "+area); err != nil {
			t.Fatalf("device add: %v\n%s", err, out)
		}
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, []byte("an older copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admin("backup"); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("backup without --out: %v, want a refusal naming --out", err)
	}
	out, err := admin("backup", "--out", copyPath)
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	st, err := os.Stat(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+copyPath) || st.Size() < 4096 {
		t.Errorf("backup printed %q and wrote %d bytes", out, st.Size())
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("the copy's mode is %v, want 0600", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(copyPath + ".new-*"); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "backup-send-*")); len(left) != 0 {
		t.Errorf("the server left its copy behind: %v", left)
	}
	s, err := boltstore.Open(copyPath, &boltstore.Options{AcceptRollback: true})
	if err != nil {
		t.Fatalf("the copy does not open as a store: %v", err)
	}
	defer s.Close()
	entries, _, err := s.Audit(t.Context(), time.Time{}, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Action != "device_add" {
		t.Errorf("the copy holds audit entries %+v, want the 2 device additions", entries)
	}
	out, err = admin("audit")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "backup") || !strings.Contains(out, "3 entries") {
		t.Errorf("audit after the backup:\n%s\nwant a backup entry", out)
	}
}
