package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/boltstore"
)

// TestRulesChangeIsAudited: serve records a rules_change in the audit trail,
// by the OS user, from "local", when it starts with other rules than at its
// last start: the first start with a rules file, a changed file, a start back
// on the defaults; never a start with the same rules, nor a first start on
// the defaults.
func TestRulesChangeIsAudited(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	rules := filepath.Join(t.TempDir(), "rules.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(rules, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func(extra ...string) {
		t.Helper()
		_, stop := serveIn(t, dir, append([]string{"--area", "532523"}, extra...)...)
		stop()
	}
	write(`{"self_pay_threshold_bp": 950}`)
	start()
	start("--rules", rules)
	start("--rules", rules)
	write(`{"self_pay_threshold_bp": 950, "rectify_days": 15}`)
	start("--rules", rules)
	start("--rules", rules)
	start()

	st, err := boltstore.Open(filepath.Join(dir, server.StoreFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, _, err := st.Audit(t.Context(), time.Time{}, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	wants := []struct {
		target string
		says   []string
	}{
		{"532523 rules.json", []string{"sha256 ", "9.50 %", "within 30 days"}},
		{"532523 rules.json", []string{"(was ", "9.50 %", "within 15 days"}},
		{"defaults", []string{"(was ", "10.00 %", "within 30 days"}},
	}
	if len(es) != len(wants) {
		t.Fatalf("audit trail after six starts: %+v; want %d rules changes", es, len(wants))
	}
	for i, e := range es {
		if e.Action != "rules_change" || e.Who != osUser() || e.Who == "" || e.From != "local" || e.AdminToken || e.Target != wants[i].target {
			t.Errorf("entry %d = %+v, want a rules_change of %s by %q from local", i, e, wants[i].target, osUser())
		}
		for _, s := range wants[i].says {
			if !strings.Contains(e.Detail, s) {
				t.Errorf("entry %d detail %q does not say %q", i, e.Detail, s)
			}
		}
	}
}
