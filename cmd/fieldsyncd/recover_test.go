package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/boltstore"
)

// serveIn runs 'fieldsyncd serve --data dir --listen 127.0.0.1:0' with the
// flags extra until stop, which returns what serve logged; it fails the test
// if the server does not start.
func serveIn(t *testing.T, dir string, extra ...string) (addr net.Addr, stop func() (logs string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var out, logs bytes.Buffer
	go func() {
		done <- run(ctx, append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, extra...), &out, &logs, ready)
	}()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve ended: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not start")
	}
	return addr, func() string {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
		return logs.String()
	}
}

// TestServeRefusesARolledBackStore: garbage over the newer meta page of the
// store would silently undo its last commit (a revocation, an acknowledged
// push). serve refuses to start, saying what happened and what to do;
// 'fieldsyncd recover' accepts it explicitly and logs it; serve then starts.
func TestServeRefusesARolledBackStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, stop := serveIn(t, dir, "--area", "532523101")
	stop()
	path := filepath.Join(dir, server.StoreFile)
	// Two more commits, so that both meta pages hold a whole store (the older
	// one otherwise may still be the empty file from before initialisation).
	st, err := boltstore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2"} {
		if err := st.SetMeta(t.Context(), "test", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	newer := int64(0)
	if binary.NativeEndian.Uint64(b[4096+16+48:]) > binary.NativeEndian.Uint64(b[16+48:]) {
		newer = 4096
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), newer); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var out, logs bytes.Buffer
	err = run(t.Context(), []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--area", "532523101"}, &out, &logs, nil)
	if err == nil || !strings.Contains(err.Error(), "meta page") || !strings.Contains(err.Error(), "fieldsyncd recover") {
		t.Fatalf("serve on a store with a damaged meta page: %v, want a refusal saying what happened and what to do", err)
	}
	out.Reset()
	if err := run(t.Context(), []string{"recover", "--data", dir}, &out, &logs, nil); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if !strings.Contains(out.String(), "accepted") || !strings.Contains(logs.String(), "store rollback accepted") {
		t.Errorf("recover printed %q and logged %q", out.String(), logs.String())
	}
	_, stop = serveIn(t, dir, "--area", "532523101")
	stop()
	out.Reset()
	if err := run(t.Context(), []string{"recover", "--data", dir}, &out, &logs, nil); err != nil || !strings.Contains(out.String(), "sound") {
		t.Errorf("recover of a sound store: %v, %q", err, out.String())
	}
	if _, err := os.Stat(path + boltstore.TxidFile); err != nil {
		t.Errorf("no record of the last commit beside the store: %v", err)
	}
}

// TestBackupAndRestore: serve --backup-dir writes a whole copy of the live
// store; a device added after it is not in it. Restoring the copy is a
// rollback, which serve refuses until 'fieldsyncd recover' accepts it.
func TestBackupAndRestore(t *testing.T) {
	dir, backups := filepath.Join(t.TempDir(), "data"), t.TempDir()
	addr, stop := serveIn(t, dir, "--area", "532523101", "--backup-dir", backups, "--backup-every", "1h")
	backup := filepath.Join(backups, server.BackupFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(backup); err == nil && st.Mode().Perm() == 0o600 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no backup written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	actx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
	if _, err := fieldsyncv1.NewAdminServiceClient(conn).AddDevice(actx, &fieldsyncv1.AddDeviceRequest{Name: "after the backup", AreaPrefixes: []string{"532523101201"}}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	stop()

	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, server.StoreFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, logs bytes.Buffer
	err = run(t.Context(), []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--area", "532523101"}, &out, &logs, nil)
	if err == nil || !strings.Contains(err.Error(), "older copy") {
		t.Fatalf("serve on a restored backup: %v, want a refusal until recover accepts it", err)
	}
	if err := run(t.Context(), []string{"recover", "--data", dir}, &out, &logs, nil); err != nil {
		t.Fatal(err)
	}
	_, stop = serveIn(t, dir, "--area", "532523101")
	stop()
}

// 'fieldsyncd rewrite' rewrites a stopped server's store, keeping the old
// file, and the server serves on the copy; a store in use is refused.
func TestRewriteCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, stop := serveIn(t, dir, "--area", "532523101")
	var out, logs bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"rewrite", "--data", dir}, &out, &logs, nil)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("rewrite of a store in use: %v", err)
	}
	stop()
	out.Reset()
	if err := run(ctx, []string{"rewrite", "--data", dir}, &out, &logs, nil); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	kept := filepath.Join(dir, server.StoreFile) + boltstore.BeforeRewriteSuffix
	if !strings.Contains(out.String(), "rewritten") || !strings.Contains(out.String(), kept) || !strings.Contains(out.String(), "  meta ") {
		t.Errorf("rewrite printed %q", out.String())
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the old store is not kept: %v", err)
	}
	_, stop = serveIn(t, dir, "--area", "532523101")
	stop()
}
