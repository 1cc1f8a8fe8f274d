package memstore_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
)

func TestConformance(t *testing.T) {
	syncenginetest.Run(t, func(t *testing.T) syncengine.Store { return memstore.New() })
}
