// Package savetest writes records for tests the way an older or buggy app
// would: straight into a store's engine, without the save path's rules (no
// derivation, no validation, nothing raised). Tests use it to make changes
// the servers must refuse, and to fill a replica with exactly the records
// they name.
package savetest

import (
	"context"
	"fmt"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
	"github.com/fieldsync/fieldsync/wire"
)

// Raw stores the fields of rec that differ from s's state of its record as a
// local change of clock's replica at wall time wallMS (the diff the SDK makes,
// wire.EditOf), with none of the rules applied. It reports false, storing
// nothing, when rec shows nothing new.
func Raw(ctx context.Context, s syncengine.Store, clock *syncengine.Clock, wallMS int64, rec *fieldsyncv1.Record) (bool, error) {
	id, _, err := wire.Identity(rec)
	if err != nil {
		return false, err
	}
	var cur syncengine.Record
	if err := s.View(ctx, func(tx syncengine.ReadTx) error {
		cur, err = tx.Record(ctx, id)
		return err
	}); err != nil {
		return false, err
	}
	e, ok, err := wire.EditOf(cur, rec)
	if err != nil || !ok {
		return false, err
	}
	e.ID = save.NewChangeID()
	if _, err := syncenginetest.WriteLocal(ctx, s, clock, wallMS, e); err != nil {
		return false, fmt.Errorf("raw write of %v: %w", id, err)
	}
	return true, nil
}
