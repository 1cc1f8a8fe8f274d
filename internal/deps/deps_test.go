// Package deps holds the test of the repository's dependency rules: which
// packages may link which. It has no code.
package deps_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/fieldsync/fieldsync"

// A rule says that the packages matching from must not link (import
// directly or through others) any package a banned pattern matches: an
// import path, or one ending in "/..." for it and the packages below it.
type rule struct {
	from   string // a package pattern for go list
	banned []string
	why    string
}

// matches reports whether import path p matches pattern.
func matches(pattern, p string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

// The records' package (proto/fieldsync/v1) holds the gRPC service stubs
// beside the messages, so whatever reads records links gRPC: only the engine
// is kept from both.
var rules = []rule{
	{"./syncengine", []string{
		module + "/store/...", module + "/proto/...", module + "/wire/...", module + "/server/...", module + "/syncclient/...",
		"google.golang.org/grpc/...", "google.golang.org/protobuf/...", "database/sql", "modernc.org/sqlite/...", "go.etcd.io/bbolt/...",
	}, "the engine is the sync logic alone: no store, protocol, gRPC or SQL"},
	{"./survey", []string{
		module + "/syncengine/...", module + "/store/...", module + "/wire/...", module + "/server/...", module + "/syncclient/...",
		module + "/client-sdk/...", module + "/indicators/...", "database/sql", "modernc.org/sqlite/...", "go.etcd.io/bbolt/...",
	}, "the bureaus' rules are pure functions over the records: nothing of sync or storage"},
	{"./client-sdk/...", []string{
		module + "/server/...", module + "/store/boltstore/...", module + "/indicators/...", module + "/web/...", "go.etcd.io/bbolt/...",
	}, "phone apps link no server code and no bbolt"},
	{"./moves", []string{
		module + "/store/...", module + "/server/...", module + "/syncclient/...", module + "/client-sdk/...",
		"database/sql", "modernc.org/sqlite/...", "go.etcd.io/bbolt/...",
	}, "what a move is, said over the engine's records: no store, server or client"},
	{"./indicators", []string{
		module + "/syncengine/...", module + "/store/...", module + "/wire/...", module + "/server/...", module + "/syncclient/...",
		"database/sql", "modernc.org/sqlite/...", "go.etcd.io/bbolt/...",
	}, "the indicators' definitions are computed from facts, wherever they are kept"},
}

// TestDependencyRules checks every rule against what go list says each
// package links, naming for each banned package the packages that import it.
func TestDependencyRules(t *testing.T) {
	for _, r := range rules {
		t.Run(strings.TrimPrefix(r.from, "./"), func(t *testing.T) {
			imports := deps(t, r.from)
			if len(imports) == 0 {
				t.Fatalf("go list found nothing for %s", r.from)
			}
			for _, b := range r.banned {
				var linked []string
				for dep := range imports {
					if matches(b, dep) {
						linked = append(linked, dep)
					}
				}
				if len(linked) > 0 {
					slices.Sort(linked)
					t.Errorf("%s links %s (%s imported by %s): %s", r.from, b, linked[0], strings.Join(importers(imports, linked[0]), ", "), r.why)
				}
			}
		})
	}
}

// deps returns every package the packages matching pattern link (their
// non-test imports, transitively, the packages themselves included), each
// with its direct imports.
func deps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pattern)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pattern, err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

// importers are the packages of imports that import dep directly.
func importers(imports map[string][]string, dep string) []string {
	var out []string
	for p, is := range imports {
		if slices.Contains(is, dep) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
