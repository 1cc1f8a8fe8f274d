package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/survey"
)

// 'admin audit' lists the actions the admin commands took, with the operator
// $FIELDSYNC_OPERATOR names, as a table or JSON, and --since keeps the recent
// ones; no line holds the enrolment codes or the device's name.
func TestAdminAudit(t *testing.T) {
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.Add(-72 * time.Hour).UnixNano())
	dir := t.TempDir()
	_, addr := servertest.Start(t, server.Config{DataDir: dir, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	conn := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	admin := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(t.Context(), append(append([]string{"admin"}, args...), conn...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	t.Setenv("FIELDSYNC_OPERATOR", "王 operator")
	var secrets []string
	for i, area := range []string{"532523101201", "532523101202"} {
		if i == 1 {
			clock.Store(now.UnixNano())
		}
		out, err := admin("device", "add", "--area", area, "--name", "李春兰的手机")
		if err != nil {
			t.Fatalf("device add: %v\n%s", err, out)
		}
		secrets = append(secrets, regexp.MustCompile(`enrolment code: (\S+)`).FindStringSubmatch(out)[1])
	}
	secrets = append(secrets, "李春兰")

	out, err := admin("audit")
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[2] != "2 entries" {
		t.Fatalf("audit printed:\n%s\nwant two entries and a count", out)
	}
	for i, area := range []string{"532523101201", "532523101202"} {
		for _, want := range []string{"+08:00", "device_add", "王 operator", "127.0.0.1:", area, "enrolment code for a phone"} {
			if !strings.Contains(lines[i], want) {
				t.Errorf("audit line %d %q does not show %q", i, lines[i], want)
			}
		}
	}
	if !strings.HasPrefix(lines[0], now.Add(-72*time.Hour).In(survey.ChinaTime).Format(time.RFC3339)) {
		t.Errorf("audit line %q does not start with the action's time in China Standard Time", lines[0])
	}

	out, err = admin("audit", "--json")
	var entries []auditJSON
	if err != nil || json.Unmarshal([]byte(out), &entries) != nil || len(entries) != 2 {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	if e := entries[1]; e.Action != "device_add" || e.Who != "王 operator" || !e.AdminToken || e.Target != "532523101202" || e.Sequence != 2 || len(e.RecordedBy) != 36 {
		t.Errorf("audit --json entry: %+v", e)
	}
	all := out

	for _, since := range []string{"24h", now.Add(-48 * time.Hour).In(survey.ChinaTime).Format(time.DateOnly), now.Add(-time.Hour).Format(time.RFC3339)} {
		out, err = admin("audit", "--since", since, "--json")
		if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 1 || entries[0].Target != "532523101202" {
			t.Errorf("audit --since %s: %v\n%s\nwant the recent entry only", since, err, out)
		}
	}
	if out, err = admin("audit", "--since", "last week"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Errorf("audit --since 'last week' = %v\n%s; want an error naming --since", err, out)
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("the audit trail shows %q", s)
		}
	}
}
