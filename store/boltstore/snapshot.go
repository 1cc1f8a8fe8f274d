package boltstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// DefaultSnapshotLimit is the page size Snapshot uses when none is given.
const DefaultSnapshotLimit = 1000

// tokenFormat is the first byte of a snapshot token; the rest is the last
// record area index key of the page.
const tokenFormat = 1

// Snapshot reads one page of the current state of the records whose area code
// starts with prefix (up to 12 digits: "" for every record, a township's 9, a
// village's 12), in (area code, record id) order, through the record area
// index, in one read transaction. token is nil for the first page and the
// previous page's Next after that; limit <= 0 means DefaultSnapshotLimit.
// AsOf is the end of the log when the page was read; Next is nil on the last
// page. Deleted records are included.
//
// It returns an error wrapping ErrInvalidPrefix or ErrInvalidToken for a bad
// prefix or a token that Snapshot did not make for this prefix.
func (s *Store) Snapshot(ctx context.Context, prefix string, token []byte, limit int) (syncengine.SnapshotPage, error) {
	if !syncengine.ValidPrefix(prefix) {
		return syncengine.SnapshotPage{}, fmt.Errorf("boltstore: snapshot: %w: %q", ErrInvalidPrefix, prefix)
	}
	var last []byte
	if token != nil {
		if len(token) < 1+idLen || token[0] != tokenFormat || !bytes.HasPrefix(token[1:], []byte(prefix)) {
			return syncengine.SnapshotPage{}, fmt.Errorf("boltstore: snapshot of %q: %w: %w", prefix, ErrInvalidToken, syncengine.ErrBadPullCursor)
		}
		last = token[1:]
	}
	if limit <= 0 {
		limit = DefaultSnapshotLimit
	}
	var page syncengine.SnapshotPage
	err := s.view(ctx, func(t *tx) error {
		var err error
		page, err = t.snapshot(ctx, []byte(prefix), last, limit)
		return err
	})
	if err != nil {
		return syncengine.SnapshotPage{}, fmt.Errorf("boltstore: snapshot of %q: %w", prefix, err)
	}
	return page, nil
}

func (t *tx) snapshot(ctx context.Context, prefix, last []byte, limit int) (syncengine.SnapshotPage, error) {
	page := syncengine.SnapshotPage{AsOf: t.logEnd(), Records: make([]syncengine.Record, 0, min(limit, 4096))}
	c := t.recArea.Cursor()
	k, _ := c.Seek(prefix)
	if last != nil {
		if k, _ = c.Seek(last); bytes.Equal(k, last) {
			k, _ = c.Next()
		}
	}
	var prev []byte // valid for the transaction, which is read-only
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(page.Records) == limit {
			page.Next = append([]byte{tokenFormat}, prev...)
			break
		}
		if len(page.Records)%256 == 0 {
			if err := t.check(ctx); err != nil {
				return syncengine.SnapshotPage{}, err
			}
		}
		if len(k) < idLen {
			return syncengine.SnapshotPage{}, fmt.Errorf("record area key of %d bytes: %w", len(k), ErrCorrupt)
		}
		id := k[len(k)-idLen:]
		v := t.records.Get(id)
		if v == nil {
			return syncengine.SnapshotPage{}, fmt.Errorf("record area index names record %x, which is not stored: %w", id, ErrCorrupt)
		}
		r, _, err := t.decodeRecord(syncengine.RecordID(id), v)
		if err != nil {
			return syncengine.SnapshotPage{}, err
		}
		page.Records = append(page.Records, r)
		prev = k
	}
	return page, nil
}
