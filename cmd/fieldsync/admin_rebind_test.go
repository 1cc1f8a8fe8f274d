package main

import (
	"bytes"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
)

// 'admin device rebind' hands a phone to another township at the county and
// records it; a replica id that is not a relay's is refused with the reason.
func TestAdminDeviceRebind(t *testing.T) {
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, Area: "532523"})
	code, _, err := srv.IssueRelayCode([]string{"532523101"}, "township 101", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var relay, phone syncengine.ReplicaID
	rand.Read(relay[:])
	rand.Read(phone[:])
	if _, err := fieldsyncv1.NewEnrolmentServiceClient(conn).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: relay[:]}); err != nil {
		t.Fatal(err)
	}
	conn2 := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	admin := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append(append([]string{"admin", "device"}, args...), conn2...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := admin("rebind", phone.String(), "--to", relay.String())
	if err != nil || !strings.Contains(out, "now speaks for "+phone.String()) {
		t.Fatalf("rebind: %v\n%s", err, out)
	}
	if _, err := admin("rebind", relay.String(), "--to", phone.String()); err == nil || !strings.Contains(err.Error(), "not enrolled here") {
		t.Errorf("rebind to a replica that is no relay: %v", err)
	}
	if _, err := admin("rebind", phone.String()); err == nil || !strings.Contains(err.Error(), "--to") {
		t.Errorf("rebind without --to: %v", err)
	}
	var audit bytes.Buffer
	if err := run(t.Context(), append([]string{"admin", "audit"}, conn2...), &audit, &audit); err != nil || !strings.Contains(audit.String(), "device_rebind") {
		t.Errorf("audit after the rebind: %v\n%s", err, audit.String())
	}
}
