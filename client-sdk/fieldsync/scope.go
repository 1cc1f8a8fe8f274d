package fieldsync

import (
	"context"
	"fmt"
)

// forgetOutside drops the records no longer in the device's areas (a
// household moved to another village), keeping every change of the device's
// own not yet acknowledged. The sync round calls it after each pull, with the
// area prefixes of the server's handshake.
//
// The pull that brought a move out of the areas applied it, so the record's
// state already names its new village; this deletes that state, its conflicts
// and read-model row, and the server's changes to it, which the server keeps
// (sqlitestore.Store.ForgetOutside). The device's own changes all stay in its
// log, and a record with a change the server has not acknowledged stays whole
// until a later sync, after the push that delivers it. No areas (a handshake
// that gave none) forget nothing.
func (c *Client) forgetOutside(ctx context.Context, areas []string) error {
	if len(areas) == 0 {
		return nil
	}
	srv, err := c.serverReplica(ctx)
	if err != nil {
		return fmt.Errorf("fieldsync: forget records outside %v: %w", areas, err)
	}
	if _, err := c.store.ForgetOutside(ctx, areas, srv); err != nil {
		return fmt.Errorf("fieldsync: %w", err)
	}
	return nil
}
