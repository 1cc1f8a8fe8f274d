package main

import (
	"strings"
	"testing"
)

// The README's quick start puts examples/household.json and
// examples/visit.json on an enrolled phone and syncs them: they must stay
// valid records of the village make run's server serves.
func TestREADMEExamples(t *testing.T) {
	s := startDeviceServer(t)
	phone := s.enroll(t, "532523100201")
	for _, ex := range []struct{ kind, file string }{
		{"household", "../../examples/household.json"},
		{"visit", "../../examples/visit.json"},
	} {
		out := mustCLI(t, "device", "put", "--replica", phone, "--kind", ex.kind, "--json", ex.file)
		if !strings.Contains(out, "saved 1 of 1") {
			t.Errorf("put %s printed:\n%s", ex.file, out)
		}
		// The visit's dissatisfied member, who paid 18.75 % of the cost
		// herself, raises a problem and a return-to-poverty flag.
		if ex.kind == "visit" && !strings.Contains(out, "raised 1 problem and 1 risk flag") {
			t.Errorf("put %s printed:\n%s\nwant a problem and a flag raised", ex.file, out)
		}
	}
	if out := mustCLI(t, "device", "problems", "--replica", phone); !strings.Contains(out, "随访不及时") {
		t.Errorf("device problems printed:\n%s\nwant the example's dissatisfied member", out)
	}
	if out := mustCLI(t, "device", "sync", "--replica", phone); !strings.Contains(out, "pushed 4 changes, 0 refused") {
		t.Errorf("sync printed:\n%s", out)
	}
	other := s.enroll(t, "532523100201")
	adm := []string{"admin", "status", "--server", s.addr, "--token-file", s.tokenFile}
	if out := mustCLI(t, adm...); !strings.Contains(out, "last sync never, 0 pending, 4 behind") || !strings.Contains(out, "2 devices") {
		t.Errorf("admin status before the second phone synced:\n%s", out)
	}
	mustCLI(t, "device", "sync", "--replica", other)
	out := mustCLI(t, append(adm, "--json")...)
	if n := strings.Count(out, `"pending":0,"lag":0,`); n != 2 || strings.Contains(out, `"last_sync":null`) {
		t.Errorf("admin status --json after both phones synced:\n%s", out)
	}
	if out := mustCLI(t, "device", "list", "--replica", other, "--kind", "visit"); !strings.Contains(out, "019fdab2-0e50-7642-98e5-73d91aba1152") {
		t.Errorf("the second phone lists:\n%s\nwant the example visit", out)
	}
}
