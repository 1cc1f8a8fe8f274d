package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
)

// openTemp opens a new replica file in t.TempDir and checks its integrity
// when the test ends.
func openTemp(t *testing.T) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "replica.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(context.Background()); err != nil {
			t.Errorf("integrity check: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openTempSealed is openTemp with the replica sealed by a random key.
func openTempSealed(t *testing.T) *sqlitestore.Store {
	t.Helper()
	s := openTemp(t)
	if err := s.Unlock(t.Context(), testKey(t)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	syncenginetest.Run(t, func(t *testing.T) syncengine.Store { return openTemp(t) })
	syncenginetest.RunRetention(t, func(t *testing.T) syncenginetest.RetentionStore { return openTemp(t) })
}

// TestConformanceSealed runs the engine's suite on sealed replicas.
func TestConformanceSealed(t *testing.T) {
	syncenginetest.Run(t, func(t *testing.T) syncengine.Store { return openTempSealed(t) })
	syncenginetest.RunRetention(t, func(t *testing.T) syncenginetest.RetentionStore { return openTempSealed(t) })
}
