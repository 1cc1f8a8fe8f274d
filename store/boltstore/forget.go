package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// ForgetOutside deletes, in one transaction, the state of every record whose
// area code is under none of prefixes (with its record area index key): a
// township server's copy of a household that moved to another township, once
// its pull from the county has brought the move. It returns how many records
// it deleted.
//
// It keeps:
//   - every record with a change of this store's own replica that upstream
//     (the county) has not acknowledged (after its Cursor.Acked): the change
//     is still to be pushed, and re-stamping it (syncengine.CorrectClock)
//     rewrites the record's state; a later call forgets the record;
//   - the log, whole: the township's own devices of the old village still
//     have to pull the move from it, and Compact drops it in time;
//   - the dots index, so a change sent again is still recognised.
//
// A record that comes back later arrives whole, as a pull sends a record
// that enters its scope. Until the old village's devices have pulled the
// move, a change one of them made concurrently must find the record (the
// server accepts it as an edit that raced the move: moves.ConcurrentEdit),
// so it also keeps every record with a log entry after through filed under
// an area outside prefixes (the move, and the county's later changes of the
// record): the caller passes a position every device of the old village has
// pulled, with time for the pushes of their last syncs to land.
//
// No prefixes, or the prefix "", forget nothing. It returns an error wrapping
// ErrInvalidPrefix for a bad prefix.
func (s *Store) ForgetOutside(ctx context.Context, prefixes []string, upstream syncengine.ReplicaID, through syncengine.Position) (int, error) {
	scope, err := syncengine.ParseScope(prefixes)
	if err != nil {
		return 0, fmt.Errorf("boltstore: forget records outside %v: %w", prefixes, err)
	}
	if len(scope.Prefixes()) == 0 || scope.All() {
		return 0, nil
	}
	n := 0
	err = s.update(ctx, func(t *tx) error {
		n = 0
		pending, err := t.unackedRecords(ctx, s.replica, upstream)
		if err != nil {
			return err
		}
		if err := t.recentOutside(ctx, scope, through, pending); err != nil {
			return err
		}
		var drop [][]byte // record area index keys
		c := t.recArea.Cursor()
		k, _ := c.First()
		for k != nil {
			if len(drop)%1024 == 0 {
				if err := t.check(ctx); err != nil {
					return err
				}
			}
			if p, ok := scope.Covering(string(k)); ok {
				k, _ = c.Seek(prefixEnd(p))
				continue
			}
			if len(k) < idLen {
				return fmt.Errorf("record area key of %d bytes: %w", len(k), ErrCorrupt)
			}
			if !pending[syncengine.RecordID(k[len(k)-idLen:])] {
				drop = append(drop, bytes.Clone(k))
			}
			k, _ = c.Next()
		}
		for _, k := range drop {
			if err := t.records.Delete(k[len(k)-idLen:]); err != nil {
				return err
			}
			if err := t.recArea.Delete(k); err != nil {
				return err
			}
		}
		t.lastRecord.valid = false
		n = len(drop)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: forget records outside %v: %w", prefixes, err)
	}
	return n, nil
}

// unackedRecords returns the records that changes of self after peer's
// acknowledged position are about. It walks the dots index back from self's
// last change, so it costs the number of those changes.
func (t *tx) unackedRecords(ctx context.Context, self, peer syncengine.ReplicaID) (map[syncengine.RecordID]bool, error) {
	cur, err := t.Cursor(ctx, peer)
	if err != nil {
		return nil, err
	}
	out := make(map[syncengine.RecordID]bool)
	end := dotKey(syncengine.Dot{Replica: self, Counter: ^uint64(0)})
	c := t.dots.Cursor()
	k, v := c.Seek(end)
	switch {
	case k == nil:
		k, v = c.Last()
	case !bytes.Equal(k, end):
		k, v = c.Prev()
	}
	for ; len(k) == dotLen && bytes.Equal(k[:idLen], self[:]); k, v = c.Prev() {
		pk, _, _, ok := dotEntry(v)
		if !ok {
			return nil, fmt.Errorf("dot index entry %x → %x: %w", k, v, ErrCorrupt)
		}
		pos := syncengine.Position(binary.BigEndian.Uint64(pk))
		if pos <= cur.Acked {
			break
		}
		lv := t.log.Get(pk)
		if lv == nil {
			continue // compacted: acknowledged by every device, not pending here
		}
		ch, err := t.decodeChange(pos, lv)
		if err != nil {
			return nil, err
		}
		out[ch.RecordID] = true
	}
	return out, nil
}

// recentOutside adds to keep the records of the log entries after position
// through filed under an area outside scope: the moves that took records out
// of it, and later changes of those records, which some device of the old
// area may not have pulled yet.
func (t *tx) recentOutside(ctx context.Context, scope syncengine.Scope, through syncengine.Position, keep map[syncengine.RecordID]bool) error {
	c := t.logArea.Cursor()
	n := 0
	for k, _ := c.First(); k != nil; n++ {
		if n%1024 == 0 {
			if err := t.check(ctx); err != nil {
				return err
			}
		}
		if p, ok := scope.Covering(string(k)); ok {
			k, _ = c.Seek(prefixEnd(p))
			continue
		}
		if len(k) <= posLen {
			return fmt.Errorf("log area key of %d bytes: %w", len(k), ErrCorrupt)
		}
		area := k[:len(k)-posLen]
		pos := syncengine.Position(binary.BigEndian.Uint64(k[len(k)-posLen:]))
		if pos <= through {
			k, _ = c.Seek(areaPosKey(area, through+1))
			continue
		}
		if v := t.log.Get(posKey(pos)); v != nil {
			ch, err := t.decodeChange(pos, v)
			if err != nil {
				return err
			}
			keep[ch.RecordID] = true
		}
		k, _ = c.Next()
	}
	return nil
}

// prefixEnd returns the smallest key after every key that starts with p, a
// non-empty string of digits.
func prefixEnd(p string) []byte {
	b := []byte(p)
	b[len(b)-1]++
	return b
}
