package sqlitestore

import (
	"context"
	"fmt"
	"strings"

	"github.com/fieldsync/fieldsync/syncengine"
)

// recordsBatch is how many records one query of Records reads: the query
// always has as many placeholders, so it is prepared once.
const recordsBatch = 64

var recordsQuery = "SELECT record_id, state FROM records WHERE record_id IN (?" + strings.Repeat(", ?", recordsBatch-1) + ")"

var (
	_ syncengine.RecordsReader   = (*readTx)(nil)
	_ syncengine.NewRecordPutter = (*tx)(nil)
)

// Records reads the states of ids, recordsBatch to a query, in their order;
// the zero Record for one not stored.
func (t *readTx) Records(ctx context.Context, ids []syncengine.RecordID) ([]syncengine.Record, error) {
	out := make([]syncengine.Record, len(ids))
	at := make(map[syncengine.RecordID][]int, len(ids))
	for i, id := range ids {
		at[id] = append(at[id], i)
	}
	args := make([]any, recordsBatch)
	for start := 0; start < len(ids); start += recordsBatch {
		chunk := ids[start:min(start+recordsBatch, len(ids))]
		for i := range args {
			id := chunk[min(i, len(chunk)-1)] // the last one again fills the query
			args[i] = id[:]
		}
		if err := t.readRecords(ctx, args, func(id syncengine.RecordID, r syncengine.Record) {
			for _, i := range at[id] {
				out[i] = r
			}
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *readTx) readRecords(ctx context.Context, args []any, put func(syncengine.RecordID, syncengine.Record)) error {
	rows, err := t.query(ctx, recordsQuery, args...)
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, b []byte
		if err := rows.Scan(&k, &b); err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		var id syncengine.RecordID
		if len(k) != len(id) {
			return fmt.Errorf("read records: a record id of %d bytes: %w", len(k), ErrCorrupt)
		}
		copy(id[:], k)
		r, err := t.decodeRecord(k, b)
		if err != nil {
			return err
		}
		put(id, r)
	}
	return rows.Err()
}

// PutNewRecord stores r, of which the transaction holds nothing: as
// PutRecord, without first clearing its conflicts and read-model row.
func (t *tx) PutNewRecord(ctx context.Context, r syncengine.Record) error {
	return t.putRecord(ctx, r, true)
}
