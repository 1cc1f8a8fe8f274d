package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
)

// At a county, 'admin status' lists each township's phones under it, as the
// township reported them, and counts them apart; --json names the township
// that reported each.
func TestAdminStatusShowsTownshipPhones(t *testing.T) {
	cdir, tdir := t.TempDir(), t.TempDir()
	county, caddr := servertest.Start(t, server.Config{DataDir: cdir, Area: "532523", IDHashKey: make([]byte, 32)})
	town, taddr := servertest.Start(t, server.Config{DataDir: tdir, Area: "532523101"})
	code, _, err := county.IssueRelayCode([]string{"532523101"}, "township 101", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := town.EnrollUpstream(t.Context(), caddr, code, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := town.SetUpstream(t.Context(), server.Upstream{Token: token}); err != nil {
		t.Fatal(err)
	}
	townSrv := deviceServer{addr: taddr, tokenFile: filepath.Join(tdir, server.AdminTokenFile)}
	phone := townSrv.enroll(t, "532523101201")
	mustCLI(t, "device", "sync", "--replica", phone)
	if err := town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	adm := []string{"admin", "status", "--server", caddr, "--token-file", filepath.Join(cdir, server.AdminTokenFile)}
	out := mustCLI(t, adm...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], " relay ") || !strings.Contains(lines[0], "township 101") ||
		!strings.HasPrefix(lines[1], "  ") || !strings.Contains(lines[1], "532523101201") || !strings.Contains(lines[1], "0 pending") ||
		strings.Contains(lines[1], "last sync never") || !strings.Contains(lines[1], "(reported ") ||
		lines[2] != "1 devices, and 1 devices its townships reported; server log at position 0" {
		t.Errorf("admin status at the county:\n%s\nwant the township, its phone indented under it, and the counts", out)
	}
	var rows []deviceStatusJSON
	for _, l := range strings.Split(strings.TrimSpace(mustCLI(t, append(adm, "--json")...)), "\n") {
		var j deviceStatusJSON
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("admin status --json line %q: %v", l, err)
		}
		rows = append(rows, j)
	}
	if len(rows) != 2 || !rows[0].Relay || rows[1].ReportedBy != rows[0].ReplicaID || rows[1].ReportedAt == nil || rows[1].LastSync == nil || rows[1].Name != "" {
		t.Errorf("admin status --json at the county: %+v; want the township, then its phone reported by it", rows)
	}
}
