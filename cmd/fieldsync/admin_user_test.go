package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
)

// 'admin user add' prints a one-time password once, 'list' shows the staff
// without it, 'remove' deletes them; a role that does not fit the area and a
// second member of one name are refused.
func TestAdminUser(t *testing.T) {
	dir := t.TempDir()
	_, addr := servertest.Start(t, server.Config{DataDir: dir, Area: "532523"})
	conn := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	admin := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(t.Context(), append(append([]string{"admin", "user"}, args...), conn...), &out, &errOut)
		return out.String(), err
	}
	out, err := admin("add", "--name", "李春兰", "--area", "532523100", "--role", "township")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`password \(shown once\): (\S+)`).FindStringSubmatch(out)
	if m == nil || len(m[1]) < 12 {
		t.Fatalf("add printed %q, want a password of 12 characters or more", out)
	}
	if _, err := admin("add", "--name", "李春兰", "--area", "532523"); err == nil {
		t.Error("a second member named 李春兰 was added")
	}
	if _, err := admin("add", "--name", "x", "--area", "532523", "--role", "township"); err == nil {
		t.Error("township staff of a county was added")
	}
	out, err = admin("add", "--name", "county", "--area", "532523", "--json")
	var js staffJSON
	if err != nil || json.Unmarshal([]byte(out), &js) != nil || js.Role != "county" || len(js.Password) < 12 {
		t.Fatalf("add --json: %q, %v", out, err)
	}
	out, err = admin("list")
	if err != nil || !strings.Contains(out, "李春兰") || !strings.Contains(out, "township") || strings.Contains(out, m[1]) {
		t.Errorf("list: %q, %v", out, err)
	}
	if _, err := admin("remove", "李春兰"); err != nil {
		t.Fatal(err)
	}
	if out, err = admin("list", "--json"); err != nil || strings.Contains(out, "李春兰") || !strings.Contains(out, `"county"`) {
		t.Errorf("list --json after remove: %q, %v", out, err)
	}
	if _, err := admin("remove", "李春兰"); err == nil {
		t.Error("removing twice succeeded")
	}
}
