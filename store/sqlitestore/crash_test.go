package sqlitestore_test

import (
	"context"
	"os"
	"testing"

	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
)

func openCrash(ctx context.Context, path string) (syncenginetest.CrashStore, error) {
	return sqlitestore.Open(ctx, path)
}

func TestMain(m *testing.M) {
	syncenginetest.CrashMain(openCrash)
	os.Exit(m.Run())
}

// TestCrash kills a process ingesting batches into a replica file with
// SIGKILL, -syncenginetest.kills times (100 by default), and checks after each
// kill that every acknowledged batch is there exactly once and nothing
// half-applied is.
func TestCrash(t *testing.T) {
	syncenginetest.RunCrash(t, openCrash)
}
