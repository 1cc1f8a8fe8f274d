package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

func TestServeOnLoopback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var out, logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--area", "532523101"}, &out, &logs, ready)
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := grpc_health_v1.NewHealthClient(conn).Check(t.Context(), &grpc_health_v1.HealthCheckRequest{})
	if err != nil || h.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	actx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
	if _, err := fieldsyncv1.NewAdminServiceClient(conn).AddDevice(actx, &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{"532523101201"}}); err != nil {
		t.Errorf("AddDevice with the admin token from the data directory: %v", err)
	}
	if _, err := fieldsyncv1.NewAdminServiceClient(conn).AddDevice(actx, &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{"532523102201"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("AddDevice for another township's village = %v, want InvalidArgument", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after cancel: %v", err)
	}
	if strings.Contains(logs.String(), strings.TrimSpace(string(token))) {
		t.Error("the admin token appears in the logs")
	}
	for _, f := range []string{"admin.token", "id-hash.key"} {
		if info, err := os.Stat(filepath.Join(dir, f)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}
}

func TestRefusesPlaintextBeyondLoopback(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"serve", "--data", t.TempDir(), "--listen", "0.0.0.0:7443"}, &out, &errOut, nil)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("serve on 0.0.0.0 without TLS: %v, want a refusal naming --tls-cert", err)
	}
	for _, ok := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1"} {
		if err := requireLoopback(ok); err != nil {
			t.Errorf("requireLoopback(%s) = %v", ok, err)
		}
	}
}
