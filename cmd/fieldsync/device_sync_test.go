package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestDeviceStatusShowsRejections re-enrols a phone for another village (the
// operator's replace code: a fresh code cannot take an enrolled replica)
// while a record of the first is waiting to be sent: the server refuses it,
// and status says which record and why.
func TestDeviceStatusShowsRejections(t *testing.T) {
	srv := startDeviceServer(t)
	v := newVillage(t)
	phone := srv.enroll(t, v.code)
	h := v.records[kindHousehold][0]
	mustCLI(t, "device", "put", "--replica", phone, "--kind", "household", "--json", writeRecords(t, h))
	if _, _, err := cli(t, "device", "enroll", "--replica", phone, "--server", srv.addr, "--code", srv.code(t, v.other)); err == nil ||
		!strings.Contains(err.Error(), "admin device replace") {
		t.Fatalf("enrolling an enrolled phone with a fresh code: %v, want a refusal naming 'admin device replace'", err)
	}
	out := mustCLI(t, "admin", "device", "replace", "--server", srv.addr, "--token-file", srv.tokenFile, "--area", v.other, readStatus(t, phone).ReplicaID)
	code := codeLine.FindStringSubmatch(out)
	if code == nil {
		t.Fatalf("admin device replace printed:\n%s", out)
	}
	mustCLI(t, "device", "enroll", "--replica", phone, "--server", srv.addr, "--code", code[1])
	out = mustCLI(t, "device", "sync", "--replica", phone, "--quiet")
	if !strings.Contains(out, "1 refused") || !strings.Contains(out, "device status") {
		t.Errorf("sync printed:\n%s", out)
	}
	st := readStatus(t, phone)
	if len(st.Rejected) != 1 || st.Rejected[0].RecordID != ids(t, []*fieldsyncv1.Record{h})[0] || st.Rejected[0].Outcome == "" || st.Rejected[0].Message == "" ||
		st.Rejected[0].Reason != "OUTSIDE_AREAS" {
		t.Fatalf("status rejected = %+v, want the household, reason OUTSIDE_AREAS", st.Rejected)
	}
	text := mustCLI(t, "device", "status", "--replica", phone)
	if !strings.Contains(text, "rejected:   1 change refused") || !strings.Contains(text, st.Rejected[0].RecordID) || !strings.Contains(text, "to fix one") ||
		!strings.Contains(text, "(OUTSIDE_AREAS)") {
		t.Errorf("status printed:\n%s", text)
	}
}

func TestDeviceSyncFailures(t *testing.T) {
	srv := startDeviceServer(t)
	v := newVillage(t)
	// A wrong code leaves a replica that is not enrolled.
	replica := filepath.Join(t.TempDir(), "new", "replica.db")
	if _, _, err := cli(t, "device", "enroll", "--replica", replica, "--server", srv.addr, "--code", "NOTACODE"); err == nil ||
		!strings.Contains(err.Error(), "ask the operator for a new one") {
		t.Fatalf("enroll with a wrong code: %v, want a refusal saying to ask for a new code", err)
	}
	if _, _, err := cli(t, "device", "sync", "--replica", replica); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("sync before enrolment: %v, want 'not enrolled'", err)
	}
	// A revoked device is refused at once, and status keeps the error.
	phone := srv.enroll(t, v.code)
	mustCLI(t, "device", "sync", "--replica", phone, "--quiet")
	var devices []deviceJSON
	out := mustCLI(t, "admin", "device", "list", "--json", "--server", srv.addr, "--token-file", srv.tokenFile)
	if err := json.Unmarshal([]byte(out), &devices); err != nil || len(devices) != 1 {
		t.Fatalf("admin device list: %v\n%s", err, out)
	}
	mustCLI(t, "admin", "device", "revoke", "--server", srv.addr, "--token-file", srv.tokenFile, devices[0].ReplicaID)
	_, _, err := cli(t, "device", "sync", "--replica", phone, "--attempts", "1")
	if err == nil || !strings.Contains(err.Error(), "next sync resumes") {
		t.Fatalf("sync of a revoked device: %v", err)
	}
	if st := readStatus(t, phone); st.LastError == "" || st.LastSuccess == nil {
		t.Errorf("status after a failed sync: last error %q, last success %v", st.LastError, st.LastSuccess)
	}
	// A server on another machine needs TLS: nothing is sent in the clear.
	other := filepath.Join(t.TempDir(), "replica.db")
	_, _, err = cli(t, "device", "enroll", "--replica", other, "--server", "192.0.2.1:7443", "--code", "X")
	if err == nil || !strings.Contains(err.Error(), "--ca FILE") {
		t.Errorf("enroll over plaintext to another machine: %v, want a hint to --ca", err)
	}
	if _, _, err := cli(t, "device", "status", "--replica", filepath.Join(t.TempDir(), "none.db")); err == nil || !strings.Contains(err.Error(), "no replica at") {
		t.Errorf("status of a missing replica: %v", err)
	}
}

func TestProgressPrinter(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	pp := &progressPrinter{w: &buf, every: time.Second, now: func() time.Time { return now }}
	steps := []struct {
		after time.Duration
		p     fieldsync.Progress
		want  string // the line printed, "" for none
	}{
		{0, fieldsync.Progress{Attempt: 1, Phase: "connect"}, "sync: attempt 1: connecting"},
		{0, fieldsync.Progress{Attempt: 1, Phase: "push", Pushed: 100}, "sync: attempt 1: push: 100 changes sent, 0 refused"},
		{100 * time.Millisecond, fieldsync.Progress{Attempt: 1, Phase: "push", Pushed: 200}, ""},
		{time.Second, fieldsync.Progress{Attempt: 1, Phase: "push", Pushed: 300, Rejected: 1}, "sync: attempt 1: push: 300 changes sent, 1 refused"},
		{0, fieldsync.Progress{Attempt: 2, Phase: "connect", Pushed: 300}, "sync: attempt 2: connecting again (pushed 300, pulled 0 so far)"},
		{0, fieldsync.Progress{Attempt: 2, Phase: "pull", Pushed: 300, Pulled: 500, Snapshot: true}, "sync: attempt 2: pull: 500 records and changes (snapshot) received"},
		{10 * time.Millisecond, fieldsync.Progress{Attempt: 2, Phase: "pull", Pulled: 600, Snapshot: true}, ""},
		{0, fieldsync.Progress{Attempt: 2, Phase: "done", Pulled: 600}, ""},
	}
	for i, s := range steps {
		buf.Reset()
		now = now.Add(s.after)
		pp.report(s.p)
		if got := strings.TrimSuffix(buf.String(), "\n"); got != s.want {
			t.Errorf("step %d: printed %q, want %q", i, got, s.want)
		}
	}
}
