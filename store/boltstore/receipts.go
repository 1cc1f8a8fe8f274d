package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"

	"github.com/fieldsync/fieldsync/syncengine"
)

// CounterThrough returns the highest dot counter of origin's changes whose
// log position is at or before through, 0 if none. An origin's changes enter
// the log in counter order, so every change of origin up to that counter that
// this store holds is at or before through: a township tells a device, with
// through its county's acknowledged position, how far the county has its
// changes. The scan goes back from origin's last change, so it costs the
// number of origin's changes after through.
func (s *Store) CounterThrough(ctx context.Context, origin syncengine.ReplicaID, through syncengine.Position) (uint64, error) {
	var out uint64
	err := s.view(ctx, func(t *tx) error {
		end := dotKey(syncengine.Dot{Replica: origin, Counter: ^uint64(0)})
		c := t.dots.Cursor()
		k, v := c.Seek(end)
		switch {
		case k == nil:
			k, v = c.Last()
		case !bytes.Equal(k, end):
			k, v = c.Prev()
		}
		for n := 0; len(k) == dotLen && bytes.Equal(k[:idLen], origin[:]); n++ {
			if n%1024 == 0 {
				if err := t.check(ctx); err != nil {
					return err
				}
			}
			if pk, _, _, ok := dotEntry(v); ok && syncengine.Position(binary.BigEndian.Uint64(pk)) <= through {
				out = binary.BigEndian.Uint64(k[idLen:])
				return nil
			}
			k, v = c.Prev()
		}
		return nil
	})
	return out, err
}
