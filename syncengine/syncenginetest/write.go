package syncenginetest

import (
	"context"
	"fmt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// WriteLocal is syncengine.WriteLocalTx in a transaction of its own: e as a
// change of the clock's replica, applied and logged in one transaction of s,
// or nothing stored and an error. Tests write with it as a device or server
// would, without the save path's rules.
func WriteLocal(ctx context.Context, s syncengine.Store, clock *syncengine.Clock, wallMS int64, e syncengine.Edit) (syncengine.Change, error) {
	var c syncengine.Change
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		var err error
		c, err = syncengine.WriteLocalTx(ctx, tx, clock, wallMS, e, nil)
		return err
	})
	if err != nil {
		return syncengine.Change{}, fmt.Errorf("syncengine: write: %w", err)
	}
	return c, nil
}
