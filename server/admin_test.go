package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
)

func (e *env) adminCtx(t *testing.T) context.Context {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(e.dir, server.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
}

// The operator adds a device, the phone enrols with the code and syncs, the
// operator lists and revokes it, and the phone is refused from then on.
func TestAdminDeviceLifecycle(t *testing.T) {
	e := newEnv(t)
	info, err := os.Stat(filepath.Join(e.dir, server.AdminTokenFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, info.Mode())
	}
	hash, _ := os.ReadFile(filepath.Join(e.dir, server.AdminTokenHashFile))
	token, _ := os.ReadFile(filepath.Join(e.dir, server.AdminTokenFile))
	if strings.Contains(string(hash), strings.TrimSpace(string(token))) {
		t.Fatal("the hash file holds the clear token")
	}
	added, err := e.admin.AddDevice(e.adminCtx(t), &fieldsyncv1.AddDeviceRequest{Name: "李春兰的手机", AreaPrefixes: []string{villageA}})
	if err != nil || added.GetCode() == "" {
		t.Fatalf("AddDevice = %v, %v", added, err)
	}
	d := e.enrolWithCode(t, added.GetCode())
	if _, err := e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{}); err != nil {
		t.Fatalf("Hello after enrolment: %v", err)
	}
	list, err := e.admin.ListDevices(e.adminCtx(t), &fieldsyncv1.ListDevicesRequest{})
	if err != nil || len(list.GetDevices()) != 1 || list.GetDevices()[0].GetRevoked() {
		t.Fatalf("ListDevices = %v, %v; want the one live device", list, err)
	}
	id := list.GetDevices()[0].GetReplicaId()
	if _, err := e.admin.RevokeDevice(e.adminCtx(t), &fieldsyncv1.RevokeDeviceRequest{ReplicaId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{})
	if status.Code(err) != codes.Unauthenticated || servertest.ReasonOf(err) != server.ReasonDeviceRevoked {
		t.Errorf("Hello of a revoked device = %v, want Unauthenticated %s", err, server.ReasonDeviceRevoked)
	}
	list, _ = e.admin.ListDevices(e.adminCtx(t), &fieldsyncv1.ListDevicesRequest{})
	if !list.GetDevices()[0].GetRevoked() || list.GetDevices()[0].GetRevokedAt() == nil {
		t.Errorf("after revocation the list shows %v", list.GetDevices()[0])
	}
}

// Only the admin token opens AdminService: no token, a device token or a
// wrong token are refused.
func TestAdminNeedsTheAdminToken(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	wrong := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer not-the-admin-token")
	for name, ctx := range map[string]context.Context{"no token": t.Context(), "device token": d.ctx(t), "wrong token": wrong} {
		_, err := e.admin.AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{villageA}})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: AddDevice = %v, want Unauthenticated", name, err)
		}
	}
	// The admin token is not a device token either.
	if _, err := e.sync.Hello(e.adminCtx(t), &fieldsyncv1.HelloRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Hello with the admin token = %v, want Unauthenticated", err)
	}
	if _, err := e.admin.AddDevice(e.adminCtx(t), &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{"53"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("AddDevice with a 2-digit prefix = %v, want InvalidArgument", err)
	}
}

// An enrolment code issued before a restart still enrols a device after it.
func TestEnrolmentCodeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := server.New(server.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := srv.IssueEnrolmentCode([]string{villageA}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv2, addr := servertest.Start(t, server.Config{DataDir: dir})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id := syncengine.ReplicaID{7}
	resp, err := fieldsyncv1.NewEnrolmentServiceClient(conn).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: id[:]})
	if err != nil || len(resp.GetAreaPrefixes()) != 1 || resp.GetAreaPrefixes()[0] != villageA {
		t.Fatalf("enrol after restart: %v, %v", resp, err)
	}
	if d, err := srv2.Store().Registry().Device(t.Context(), id); err != nil || d.Name != "phone" {
		t.Errorf("device after enrolment: %+v, %v", d, err)
	}
}

// A township server enrols devices only within its township, and its data
// directory stays bound to that township.
func TestServerArea(t *testing.T) {
	dir := t.TempDir()
	const township = "532523101"
	srv, err := server.New(server.Config{DataDir: dir, Area: township})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.IssueEnrolmentCode([]string{township + "201"}, "in", time.Hour); err != nil {
		t.Errorf("code for a village of the township: %v", err)
	}
	for _, area := range []string{"532523102201", "532523"} {
		if _, _, err := srv.IssueEnrolmentCode([]string{area}, "out", time.Hour); !errors.Is(err, server.ErrBadRequest) || !strings.Contains(err.Error(), "outside") {
			t.Errorf("code for %s: %v, want ErrBadRequest saying it is outside the area", area, err)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Restarting without --area keeps the recorded one; another is refused.
	srv, err = server.New(server.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Area() != township {
		t.Errorf("area after restart = %q, want %s", srv.Area(), township)
	}
	srv.Close()
	if _, err := server.New(server.Config{DataDir: dir, Area: "532523102"}); err == nil || !strings.Contains(err.Error(), "serves area "+township) {
		t.Errorf("restart with another area: %v, want a refusal naming %s", err, township)
	}
	if _, err := server.New(server.Config{DataDir: t.TempDir(), Area: "5325231"}); err == nil || !strings.Contains(err.Error(), "not a county") {
		t.Errorf("7-digit area: %v, want a refusal", err)
	}
}
