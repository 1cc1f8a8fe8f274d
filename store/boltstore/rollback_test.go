package boltstore_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/store/boltstore"
)

// newerMetaPage returns the offset of the bbolt meta page with the higher
// transaction id in the file at path (page size 4096).
func newerMetaPage(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	txid := func(page int) uint64 { return binary.NativeEndian.Uint64(b[page*4096+16+48:]) }
	if txid(1) > txid(0) {
		return 4096
	}
	return 0
}

// TestDamagedNewerMetaPageIsLoud: 4 KiB of garbage over the newer meta page
// would make bbolt open the store at the commit before, without a word. Open
// refuses it, naming the damage and what to do; AcceptRollback (fieldsyncd
// recover) opens it, says what was accepted, and the next commit repairs the
// page so that the store opens normally again.
func TestDamagedNewerMetaPageIsLoud(t *testing.T) {
	path := realStore(t, t.TempDir())
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), newerMetaPage(t, path)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	wantOpenError(t, path, boltstore.ErrRolledBack)
	_, err = boltstore.Open(path, &testOptions)
	if msg := err.Error(); !strings.Contains(msg, "meta page") || !strings.Contains(msg, "fieldsyncd recover") {
		t.Errorf("error %q does not say what happened and what to do", msg)
	}
	o := testOptions
	o.AcceptRollback = true
	s, err := boltstore.Open(path, &o)
	if err != nil {
		t.Fatalf("open accepting the rollback: %v", err)
	}
	if !strings.Contains(s.AcceptedRollback(), "meta page") {
		t.Errorf("AcceptedRollback = %q, want what was accepted", s.AcceptedRollback())
	}
	if err := s.SetMeta(t.Context(), "after", []byte("recover")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if s.AcceptedRollback() != "" {
		t.Errorf("a sound store reports an accepted rollback: %q", s.AcceptedRollback())
	}
}

// TestOlderCopyIsRefused: a store file replaced by an older copy of itself
// (a careless restore, a snapshot rolled back) has a last transaction older
// than the one recorded beside it, and is refused; accepted, it records the
// older copy's point as its last.
func TestOlderCopyIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.db")
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(t.Context(), "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.SetMeta(t.Context(), "k", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, path, boltstore.ErrRolledBack)
	o := testOptions
	o.AcceptRollback = true
	s, err = boltstore.Open(path, &o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.AcceptedRollback(), "older copy") {
		t.Errorf("AcceptedRollback = %q", s.AcceptedRollback())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openAt(t, path) // the older copy's point is now the last
}

// TestTornCommitOpens: a meta page torn by a power cut while its commit was
// written (so the commit was never acknowledged, nor recorded beside the
// store) is not a loss: bbolt's fallback to the page before is right, and the
// store opens without an operator.
func TestTornCommitOpens(t *testing.T) {
	path := realStore(t, t.TempDir())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	newer := newerMetaPage(t, path)
	older := 4096 - newer
	olderTxid := binary.NativeEndian.Uint64(b[older+16+48:])
	// The record says the older page's commit was the last acknowledged one.
	rec := binary.BigEndian.AppendUint64([]byte("fstxid01"), olderTxid)
	if err := os.WriteFile(path+boltstore.TxidFile, rec, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x3c}, 4096), newer); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s := openAt(t, path)
	if s.AcceptedRollback() != "" {
		t.Errorf("a torn commit reported as an accepted rollback: %q", s.AcceptedRollback())
	}
	// The next commit rewrites the torn page (the cleanup's Check reads it).
	if err := s.SetMeta(t.Context(), "after", []byte("torn")); err != nil {
		t.Fatal(err)
	}
}
