package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
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
	if status.Code(err) != codes.Unauthenticated || server.ReasonOf(err) != server.ReasonDeviceRevoked {
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
