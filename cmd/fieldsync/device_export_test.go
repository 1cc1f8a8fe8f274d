package main

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// exportJSON is the part of 'device export' output the test reads.
type exportJSON struct {
	Format    string `json:"format"`
	ReplicaID string `json:"replica_id"`
	Server    string `json:"server"`
	Changes   []struct {
		ChangeID string                     `json:"change_id"`
		RecordID string                     `json:"record_id"`
		Kind     string                     `json:"kind"`
		State    string                     `json:"state"`
		Fields   map[string]json.RawMessage `json:"fields"`
	} `json:"changes"`
	Records []struct {
		RecordID string          `json:"record_id"`
		Kind     string          `json:"kind"`
		Record   json.RawMessage `json:"record"`
	} `json:"records"`
}

func parseExport(t *testing.T, out string) exportJSON {
	t.Helper()
	var e exportJSON
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, out)
	}
	return e
}

// TestDeviceExportAfterRevocation: a phone syncs a household, records a
// second one and a visit offline, and is revoked. Its sync fails, status
// says to export, and 'device export' writes the two unsent records, to
// standard output or to a new file, and refuses to overwrite one.
func TestDeviceExportAfterRevocation(t *testing.T) {
	srv := startDeviceServer(t)
	v := newVillage(t)
	phone := srv.enroll(t, v.code)
	households, visits := v.records[kindHousehold], v.records[kindVisit]
	mustCLI(t, "device", "put", "--replica", phone, "--kind", "household", "--json", writeRecords(t, households[0]))
	mustCLI(t, "device", "sync", "--replica", phone, "--quiet")
	unsent := []*fieldsyncv1.Record{households[1], visits[0]}
	mustCLI(t, "device", "put", "--replica", phone, "--kind", "household", "--json", writeRecords(t, households[1]))
	mustCLI(t, "device", "put", "--replica", phone, "--kind", "visit", "--json", writeRecords(t, visits[0]))

	var devices []deviceJSON
	out := mustCLI(t, "admin", "device", "list", "--json", "--server", srv.addr, "--token-file", srv.tokenFile)
	if err := json.Unmarshal([]byte(out), &devices); err != nil || len(devices) != 1 {
		t.Fatalf("admin device list: %v\n%s", err, out)
	}
	mustCLI(t, "admin", "device", "revoke", "--server", srv.addr, "--token-file", srv.tokenFile, devices[0].ReplicaID)
	if _, _, err := cli(t, "device", "sync", "--replica", phone, "--attempts", "1"); err == nil {
		t.Fatal("sync of a revoked device succeeded")
	}
	text := mustCLI(t, "device", "status", "--replica", phone)
	if !strings.Contains(text, "refuses this device") || !strings.Contains(text, "fieldsync device export --replica "+phone) {
		t.Errorf("status of a revoked device does not say to export:\n%s", text)
	}

	// To standard output, the summary on standard error.
	out, errOut, err := cli(t, "device", "export", "--replica", phone)
	if err != nil {
		t.Fatalf("device export: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "exported 2 changes the server does not hold (2 pending, 0 refused) and 2 records") {
		t.Errorf("export summary:\n%s", errOut)
	}
	e := parseExport(t, out)
	st := readStatus(t, phone)
	if e.Format != "fieldsync-export/1" || e.ReplicaID != st.ReplicaID || e.Server != srv.addr {
		t.Errorf("export header: %q %q %q", e.Format, e.ReplicaID, e.Server)
	}
	var changeIDs, pendingIDs, recordIDs []string
	for _, c := range e.Changes {
		changeIDs = append(changeIDs, c.ChangeID)
		if c.State != "pending" || len(c.Fields) == 0 {
			t.Errorf("change %s: state %q, %d fields; want pending with its fields", c.ChangeID, c.State, len(c.Fields))
		}
	}
	for _, p := range st.PendingList {
		pendingIDs = append(pendingIDs, p.ChangeID)
	}
	if !slices.Equal(changeIDs, pendingIDs) {
		t.Errorf("exported changes %v, want the pending %v", changeIDs, pendingIDs)
	}
	for _, r := range e.Records {
		recordIDs = append(recordIDs, r.RecordID)
	}
	slices.Sort(recordIDs)
	if !slices.Equal(recordIDs, ids(t, unsent)) {
		t.Errorf("exported records %v, want %v", recordIDs, ids(t, unsent))
	}
	// Each record is in the form 'device put' reads.
	for _, r := range e.Records {
		kind := kindHousehold
		if r.Kind == "household_visit" {
			kind = kindVisit
		}
		parseBodies(t, kind, "["+string(r.Record)+"]")
	}

	// To a new file, private, the same content.
	file := filepath.Join(t.TempDir(), "phone-export.json")
	out, errOut, err = cli(t, "device", "export", "--replica", phone, "--out", file)
	if err != nil || out != "" || !strings.Contains(errOut, "to "+file) {
		t.Fatalf("device export --out: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if fe := parseExport(t, string(b)); len(fe.Changes) != len(e.Changes) || len(fe.Records) != len(e.Records) {
		t.Errorf("export file holds %d changes and %d records, want %d and %d", len(fe.Changes), len(fe.Records), len(e.Changes), len(e.Records))
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, _, err := cli(t, "device", "export", "--replica", phone, "--out", file); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("export over an existing file: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(file); string(after) != string(b) {
		t.Error("a refused export changed the existing file")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	// Exporting changed nothing: the work is still pending.
	if again := readStatus(t, phone); again.Pending != st.Pending {
		t.Errorf("pending after export = %d, want %d", again.Pending, st.Pending)
	}
	_, errOut, err = cli(t, "device", "export", "--help")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut, "fieldsync device export --replica FILE [--out FILE]") {
		t.Errorf("device export --help: %v\n%s", err, errOut)
	}
	if _, _, err := cli(t, "device", "export", "--replica", filepath.Join(t.TempDir(), "none.db")); err == nil || !strings.Contains(err.Error(), "no replica at") {
		t.Errorf("export of a missing replica: %v", err)
	}
}
