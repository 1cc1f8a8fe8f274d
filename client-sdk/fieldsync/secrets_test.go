package fieldsync

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	// Without the key: opens (the records are the doctor's), cannot sync.
	c, err = Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(t.Context()); !errors.Is(err, ErrSecretsLocked) {
		t.Errorf("Sync without the key: %v, want ErrSecretsLocked", err)
	}
	c.Close()
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
