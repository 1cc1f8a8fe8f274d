package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
)

// startServer runs a real server on 127.0.0.1 with its data in a temp dir and
// returns its address and data directory.
func startServer(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	_, addr := servertest.Start(t, server.Config{DataDir: dir})
	return addr, dir
}

func TestAdminDeviceCommands(t *testing.T) {
	addr, dir := startServer(t)
	conn := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		// Flags go before positional arguments: admin device CMD [flags] [ID].
		full := append(append(append([]string{}, args[:3]...), conn...), args[3:]...)
		err := run(t.Context(), full, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := cli("admin", "device", "add", "--area", "532523101201", "--name", "李春兰的手机")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	code := regexp.MustCompile(`enrolment code: (\S+)`).FindStringSubmatch(out)
	if code == nil {
		t.Fatalf("add printed no code:\n%s", out)
	}
	// A phone enrols with the printed code.
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(mustInsecure()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := bytes.Repeat([]byte{7}, 16)
	if _, err := fieldsyncv1.NewEnrolmentServiceClient(c).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code[1], ReplicaId: id}); err != nil {
		t.Fatalf("enrol with the printed code: %v", err)
	}
	out, err = cli("admin", "device", "list", "--json")
	var devices []deviceJSON
	if err != nil || json.Unmarshal([]byte(out), &devices) != nil || len(devices) != 1 || devices[0].Revoked {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if out, err = cli("admin", "device", "revoke", devices[0].ReplicaID); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if out, _ = cli("admin", "device", "list"); !strings.Contains(out, "revoked") {
		t.Errorf("list after revoke:\n%s", out)
	}
	if _, err := cli("admin", "device", "add", "--area", "532523101201", "--name", "x", "--token-file", filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("add without a readable token file succeeded")
	}
}

func mustInsecure() credentials.TransportCredentials { c, _ := transport("127.0.0.1:1", ""); return c }
