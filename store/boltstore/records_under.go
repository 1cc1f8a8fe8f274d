package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/fieldsync/fieldsync/syncengine"
)

// RecordsUnder returns the stored states of the records of the given kinds
// whose area code starts with prefix (up to 12 digits: "" for every record, a
// county's 6, a township's 9, a village's 12), deleted ones included, in
// (area code, record id) order, read through the record area index in one
// read transaction. It is ReadTx.RecordsInArea for a prefix rather than one
// village: an operator's question over a township or county (the problem
// ledger), which decodes every record under the prefix to learn its kind.
// With no kinds it returns nothing.
//
// It returns an error wrapping ErrInvalidPrefix for a prefix that is not up
// to 12 digits.
func (s *Store) RecordsUnder(ctx context.Context, prefix string, kinds ...syncengine.Kind) ([]syncengine.Record, error) {
	if !syncengine.ValidPrefix(prefix) {
		return nil, fmt.Errorf("boltstore: records under: %w: %q", ErrInvalidPrefix, prefix)
	}
	if len(kinds) == 0 {
		return nil, nil
	}
	var out []syncengine.Record
	err := s.view(ctx, func(t *tx) error {
		p := []byte(prefix)
		c := t.recArea.Cursor()
		n := 0
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			if n++; n%256 == 0 {
				if err := t.check(ctx); err != nil {
					return err
				}
			}
			if len(k) < idLen {
				return fmt.Errorf("record area key of %d bytes: %w", len(k), ErrCorrupt)
			}
			id := k[len(k)-idLen:]
			v := t.records.Get(id)
			if v == nil {
				return fmt.Errorf("record area index names record %x, which is not stored: %w", id, ErrCorrupt)
			}
			r, _, err := t.decodeRecord(syncengine.RecordID(id), v)
			if err != nil {
				return err
			}
			if slices.Contains(kinds, r.Kind()) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: records under %q: %w", prefix, err)
	}
	return out, nil
}
