package fieldsync_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence keeps server-side code out of phone apps: the SDK must
// not link the gRPC server package, the bbolt server store or bbolt itself.
func TestDependencyFence(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/fieldsync/fieldsync/server", "github.com/fieldsync/fieldsync/store/boltstore", "go.etcd.io/bbolt"} {
			if dep == banned {
				t.Errorf("the device SDK depends on %s", dep)
			}
		}
	}
}
