package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/fieldsync/fieldsync/syncengine"
)

// LogEnd returns the position of the last log entry, or the compaction point
// when every entry has been dropped, or 0 for an empty log.
func (s *Store) LogEnd(ctx context.Context) (syncengine.Position, error) {
	var end syncengine.Position
	err := s.View(ctx, func(rt syncengine.ReadTx) error {
		var err error
		end, err = rt.(*readTx).logEnd(ctx)
		return err
	})
	return end, err
}

func (t *readTx) logEnd(ctx context.Context) (syncengine.Position, error) {
	// sqlite_sequence holds the highest position ever given, deleted or not.
	var n sql.NullInt64
	err := t.queryRow(ctx, "SELECT seq FROM sqlite_sequence WHERE name = 'log'").Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return syncengine.Position(n.Int64), err
}

// Snapshot reads one page of the current state of the records whose area code
// starts with prefix, in (area code, record id) order, in one read
// transaction. token is nil for the first page and the previous page's Next
// afterwards; limit <= 0 means 500 records.
func (s *Store) Snapshot(ctx context.Context, prefix string, token []byte, limit int) (syncengine.SnapshotPage, error) {
	if limit <= 0 {
		limit = 500
	}
	afterArea, afterID := "", []byte{}
	if token != nil {
		if len(token) < 16 {
			return syncengine.SnapshotPage{}, fmt.Errorf("snapshot token of %d bytes is not one this store issued", len(token))
		}
		afterArea, afterID = string(token[16:]), token[:16]
	}
	var page syncengine.SnapshotPage
	err := s.View(ctx, func(rt syncengine.ReadTx) error {
		t := rt.(*readTx)
		var err error
		if page.AsOf, err = t.logEnd(ctx); err != nil {
			return err
		}
		rows, err := t.query(ctx, `SELECT area_code, record_id, state FROM records
			WHERE area_code >= ? AND area_code < ? AND (area_code, record_id) > (?, ?)
			ORDER BY area_code, record_id LIMIT ?`,
			prefix, prefix+"~", afterArea, afterID, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		var lastArea string
		var lastID []byte
		for rows.Next() {
			if len(page.Records) == limit {
				page.Next = append(append([]byte{}, lastID...), lastArea...)
				break
			}
			var b []byte
			if err := rows.Scan(&lastArea, &lastID, &b); err != nil {
				return err
			}
			r, err := t.decodeRecord(lastID, b)
			if err != nil {
				return err
			}
			page.Records = append(page.Records, r)
		}
		return rows.Err()
	})
	return page, err
}

// Compact drops the log entries at or before through, keeping their dots so
// that a retried old change is still recognised. Reading the log after a
// position before through then fails with syncengine.ErrCompacted. On a device
// the log is its outbox: only entries every peer has acknowledged may go.
func (s *Store) Compact(ctx context.Context, through syncengine.Position) (int, error) {
	var dropped int64
	err := s.Update(ctx, func(st syncengine.Tx) error {
		t := st.(*tx)
		prev, err := t.compactedThrough(ctx)
		if err != nil || through <= prev {
			return err
		}
		res, err := t.exec(ctx, "DELETE FROM log WHERE position <= ?", int64(through))
		if err != nil {
			return err
		}
		dropped, _ = res.RowsAffected()
		_, err = t.exec(ctx, `INSERT INTO meta (key, value) VALUES ('compacted_through', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.FormatUint(uint64(through), 10))
		return err
	})
	return int(dropped), err
}

// Records returns up to limit live records of kind with ids after after, in
// id order (after the zero id: from the first). A page shorter than limit is
// the last. limit <= 0 means 500.
func (s *Store) Records(ctx context.Context, kind syncengine.Kind, after syncengine.RecordID, limit int) ([]syncengine.Record, error) {
	if limit <= 0 {
		limit = 500
	}
	var out []syncengine.Record
	err := s.View(ctx, func(rt syncengine.ReadTx) error {
		out = out[:0]
		t := rt.(*readTx)
		rows, err := t.query(ctx, `SELECT record_id, state FROM records
			WHERE kind = ? AND deleted = 0 AND record_id > ? ORDER BY record_id LIMIT ?`,
			int64(kind), after[:], limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, b []byte
			if err := rows.Scan(&id, &b); err != nil {
				return err
			}
			r, err := t.decodeRecord(id, b)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}
