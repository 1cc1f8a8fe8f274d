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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// startServe runs 'fieldsyncd serve args...' until the test ends and
// returns its address.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var out, logs bytes.Buffer
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), &out, &logs, ready)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve %v: %v", args, err)
		}
	})
	select {
	case addr := <-ready:
		return addr.String()
	case err := <-done:
		t.Fatalf("serve %v ended: %v\n%s", args, err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	return ""
}

func adminOf(t *testing.T, addr, dir string) (fieldsyncv1.AdminServiceClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return fieldsyncv1.NewAdminServiceClient(conn), metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
}

// enrolTownship has the county issue a relay code for township 532523101
// and runs 'fieldsyncd enroll-upstream' with it into townDir, the token to
// tokenFile; it returns what enroll-upstream logged.
func enrolTownship(t *testing.T, countyAddr, countyDir, townDir, tokenFile string) (logs string) {
	t.Helper()
	cadmin, cctx := adminOf(t, countyAddr, countyDir)
	resp, err := cadmin.AddDevice(cctx, &fieldsyncv1.AddDeviceRequest{Name: "township", AreaPrefixes: []string{"532523101"}, Relay: true})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	enroll := []string{"enroll-upstream", "--data", townDir, "--area", "532523101", "--upstream", countyAddr, "--code", resp.GetCode(), "--token-file", tokenFile}
	if err := run(t.Context(), enroll, &out, &errOut, nil); err != nil {
		t.Fatalf("enroll-upstream: %v\n%s", err, errOut.String())
	}
	return errOut.String()
}

// enrolPhone has the server at addr, of data directory dir, issue a code for
// village 532523101201 and enrols a new phone replica, in file, with it. The
// phone is closed when the test ends.
func enrolPhone(t *testing.T, addr, dir, file string) *fieldsync.Client {
	t.Helper()
	admin, actx := adminOf(t, addr, dir)
	code, err := admin.AddDevice(actx, &fieldsyncv1.AddDeviceRequest{Name: "phone", AreaPrefixes: []string{"532523101201"}})
	if err != nil {
		t.Fatal(err)
	}
	phone, err := fieldsync.Open(t.Context(), file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { phone.Close() })
	if err := phone.Enroll(t.Context(), addr, code.GetCode()); err != nil {
		t.Fatal(err)
	}
	return phone
}

// pushHousehold saves a household of village 532523101201 on phone and
// syncs.
func pushHousehold(t *testing.T, phone *fieldsync.Client) {
	t.Helper()
	hh := &fieldsyncv1.Household{}
	if err := protojson.Unmarshal([]byte(`{"id": "017ee8ff-94f8-7abd-a788-65b7516dce05", "area_code": "532523101201",
		"head_person_id": "017ee92e-2ea8-7086-87b9-b20163b8699e", "head_name": "郭波超", "address": "一组1号",
		"status": "HOUSEHOLD_STATUS_ORDINARY", "registered_members": 2}`), hh); err != nil {
		t.Fatal(err)
	}
	if err := phone.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: hh}}); err != nil {
		t.Fatal(err)
	}
	if err := phone.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// waitCountyLog waits until the log of the county at addr, of data directory
// dir, ends at want: a phone's push nudges its township's relay, so within
// seconds, not the hour of --upstream-every.
func waitCountyLog(t *testing.T, addr, dir string, want uint64) {
	t.Helper()
	cadmin, cctx := adminOf(t, addr, dir)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := cadmin.SyncStatus(cctx, &fieldsyncv1.SyncStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetLogEnd() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the county's log is at %d 30 s after the phone's push, want %d", st.GetLogEnd(), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A township enrolled with enroll-upstream and served with --upstream relays
// a phone's push to the county on its own, and the county's ID-hash key
// replaces the township's.
func TestServeWithUpstream(t *testing.T) {
	root := t.TempDir()
	countyDir, townDir := filepath.Join(root, "county"), filepath.Join(root, "township")
	countyAddr := startServe(t, "--data", countyDir, "--area", "532523")
	tokenFile := filepath.Join(root, "upstream.token")
	enrolTownship(t, countyAddr, countyDir, townDir, tokenFile)
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v; want mode 0600", fi, err)
	}
	countyKey, err := os.ReadFile(filepath.Join(countyDir, idHashKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if townKey, err := os.ReadFile(filepath.Join(townDir, idHashKeyFile)); err != nil || !bytes.Equal(townKey, countyKey) {
		t.Errorf("township ID-hash key differs from the county's (%v)", err)
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"serve", "--data", townDir, "--upstream", countyAddr}, &out, &errOut, nil); err == nil || !strings.Contains(err.Error(), "--upstream-token-file") {
		t.Errorf("serve --upstream without a token file = %v, want an error naming --upstream-token-file", err)
	}
	townAddr := startServe(t, "--data", townDir, "--upstream", countyAddr, "--upstream-token-file", tokenFile, "--upstream-every", "1h")

	phone := enrolPhone(t, townAddr, townDir, filepath.Join(root, "phone.db"))
	if key, err := phone.IDHashKey(t.Context()); err != nil || !bytes.Equal(key, countyKey) {
		t.Errorf("the phone got another ID-hash key than the county's (%v)", err)
	}
	pushHousehold(t, phone)
	waitCountyLog(t, countyAddr, countyDir, 1)
	tadmin, tctx := adminOf(t, townAddr, townDir)
	tst, err := tadmin.SyncStatus(tctx, &fieldsyncv1.SyncStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if tst.GetUpstream().GetAddress() != countyAddr {
		t.Errorf("township status upstream = %v, want %s", tst.GetUpstream(), countyAddr)
	}
}
