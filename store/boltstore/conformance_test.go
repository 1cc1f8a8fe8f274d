package boltstore_test

import (
	"context"
	"os"
	"testing"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
)

// The shared conformance suite, the retention suite and the crash test, run
// against real files.

func openCrash(ctx context.Context, path string) (syncenginetest.CrashStore, error) {
	return boltstore.Open(path, nil)
}

func TestMain(m *testing.M) {
	syncenginetest.CrashMain(openCrash)
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) {
	syncenginetest.Run(t, func(t *testing.T) syncengine.Store { return openStore(t) })
	syncenginetest.RunRetention(t, func(t *testing.T) syncenginetest.RetentionStore { return openStore(t) })
}

// TestCrash kills a process ingesting batches into a store file with SIGKILL,
// -syncenginetest.kills times (100 by default), and checks after each kill,
// with Check, that every acknowledged batch is there exactly once and nothing
// half-applied is.
func TestCrash(t *testing.T) {
	syncenginetest.RunCrash(t, openCrash)
}
