package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestServeWithRules: a county started with --rules hands its thresholds to
// a phone in the sync handshake; the phone applies them and says where they
// came from. A rules file with an unknown key or a value out of range, or
// --rules on a township that relays to a county, is refused at start.
func TestServeWithRules(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(`{"self_pay_threshold_bp": 950, "rectify_days": 15}`), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr, stop := serveIn(t, dir, "--area", "532523", "--rules", rules)
	defer stop()
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	actx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
	code, err := fieldsyncv1.NewAdminServiceClient(conn).AddDevice(actx, &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{"532523101201"}})
	if err != nil {
		t.Fatal(err)
	}
	phone, err := fieldsync.Open(t.Context(), filepath.Join(t.TempDir(), "phone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	if r, _ := phone.Rules(t.Context()); r.SelfPayThresholdBP != 1000 {
		t.Errorf("rules before the first sync: %+v, want the defaults", r)
	}
	if err := phone.Enroll(t.Context(), addr.String(), code.GetCode()); err != nil {
		t.Fatal(err)
	}
	if err := phone.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	r, err := phone.Rules(t.Context())
	src, _ := phone.RulesSource(t.Context())
	if err != nil || r.SelfPayThresholdBP != 950 || r.RectifyDays != 15 || r.MinEssentialDrugKinds != 80 || src != "532523 rules.json" {
		t.Errorf("phone's rules after a sync: %+v from %q, %v; want 950 bp, 15 days, the default 80 kinds, from 532523 rules.json", r, src, err)
	}

	for _, tc := range []struct {
		name, file string
		extra      []string
		want       string
	}{
		{"unknown key", `{"selfpay": 950}`, nil, "selfpay"},
		{"out of range", `{"self_pay_threshold_bp": 20000}`, nil, "self_pay_threshold_bp is 20000"},
		{"township with an upstream", `{}`, []string{"--upstream", "127.0.0.1:1", "--upstream-token-file", rules}, "set at the county"},
	} {
		f := filepath.Join(t.TempDir(), "rules.json")
		if err := os.WriteFile(f, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--rules", f}, tc.extra...)
		var o, e bytes.Buffer
		if err := run(t.Context(), args, &o, &e, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: serve = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
