package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevicePassphrase: with FIELDSYNC_PASSPHRASE_FILE, the device commands
// keep the replica's token, ID-hash key and people encrypted; without it the
// replica does not open, and the command says which variable to set.
func TestDevicePassphrase(t *testing.T) {
	pass := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(pass, []byte("春兰的口令\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envPassphraseFile, pass)
	srv := startDeviceServer(t)
	v := newVillage(t)
	phone := srv.enroll(t, v.code)
	mustCLI(t, "device", "put", "--replica", phone, "--kind", "household", "--json", writeRecords(t, v.records[kindHousehold][0]))
	if out := mustCLI(t, "device", "sync", "--replica", phone, "--quiet"); !strings.Contains(out, "pushed 1 change") {
		t.Errorf("sync with the passphrase printed:\n%s", out)
	}
	t.Setenv(envPassphraseFile, "")
	if _, _, err := cli(t, "device", "sync", "--replica", phone, "--quiet"); err == nil || !strings.Contains(err.Error(), "encrypted") || !strings.Contains(err.Error(), envPassphraseFile) {
		t.Errorf("sync without the passphrase: %v, want a refusal saying the replica is encrypted and what to set", err)
	}
	head := []byte(v.records[kindHousehold][0].GetHousehold().GetHeadName())
	for _, f := range []string{phone, phone + "-wal"} {
		if b, _ := os.ReadFile(f); bytes.Contains(b, head) {
			t.Errorf("%s shows the head of household %s in clear", filepath.Base(f), head)
		}
	}
	t.Setenv(envPassphrase, "another")
	if _, _, err := cli(t, "device", "status", "--replica", phone); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("status with another passphrase: %v, want a refusal", err)
	}
}
