package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/fieldsync/fieldsync/moves"
	"github.com/fieldsync/fieldsync/syncengine"
)

// readTx implements syncengine.ReadTx over an SQL transaction.
type readTx struct {
	tx    *sql.Tx
	stmts *stmtCache
	seal  *sealer // nil for a clear replica
	// local holds the statements this transaction has used, prepared on
	// it: a query the pool's cache does not hold yet is prepared once per
	// transaction, not once per call (a bootstrap's first transaction
	// stores thousands of records).
	local map[string]*sql.Stmt
}

// stmt returns q prepared for this transaction.
func (t *readTx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := t.local[q]; ok {
		return st, nil
	}
	st, err := t.stmts.get(ctx, t.tx, q)
	if err != nil {
		return nil, err
	}
	if t.local == nil {
		t.local = make(map[string]*sql.Stmt)
	}
	t.local[q] = st
	return st, nil
}

// query, queryRow and exec run q through the pool's prepared-statement cache.
func (t *readTx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *readTx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return t.tx.QueryRowContext(ctx, q, args...) // reports the same error on Scan
	}
	return st.QueryRowContext(ctx, args...)
}

func (t *readTx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// tx implements syncengine.Tx.
type tx struct {
	readTx
}

var (
	_ syncengine.ReadTx = (*readTx)(nil)
	_ syncengine.Tx     = (*tx)(nil)
)

func (t *readTx) Record(ctx context.Context, id syncengine.RecordID) (syncengine.Record, error) {
	var b []byte
	err := t.queryRow(ctx, "SELECT state FROM records WHERE record_id = ?", id[:]).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return syncengine.Record{}, nil
	}
	if err != nil {
		return syncengine.Record{}, fmt.Errorf("read record %v: %w", id, err)
	}
	return t.decodeRecord(id[:], b)
}

func (t *readTx) Seen(ctx context.Context, d syncengine.Dot) (bool, error) {
	var one int
	err := t.queryRow(ctx, "SELECT 1 FROM dots WHERE origin = ? AND counter = ?", d.Replica[:], int64(d.Counter)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// MaxCounter returns the highest dot counter of origin's changes, and for
// the replica's own, at least its counter floor (RaiseCounterFloor).
func (t *readTx) MaxCounter(ctx context.Context, origin syncengine.ReplicaID) (uint64, error) {
	var n sql.NullInt64
	err := t.queryRow(ctx, `SELECT max(
		coalesce((SELECT max(counter) FROM dots WHERE origin = ?1), 0),
		coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'counter_floor'
			AND (SELECT value FROM meta WHERE key = 'replica_id') = ?1), 0))`, origin[:]).Scan(&n)
	return uint64(n.Int64), err
}

// compactedThrough returns the position through which log entries were dropped.
func (t *readTx) compactedThrough(ctx context.Context) (syncengine.Position, error) {
	var v int64
	err := t.queryRow(ctx, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'compacted_through'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return syncengine.Position(v), err
}

func (t *readTx) ReadLog(ctx context.Context, after syncengine.Position, limit int) ([]syncengine.Entry, error) {
	compacted, err := t.compactedThrough(ctx)
	if err != nil {
		return nil, err
	}
	if after < compacted {
		return nil, fmt.Errorf("%w: read after %d, log kept from %d", syncengine.ErrCompacted, after, compacted+1)
	}
	rows, err := t.query(ctx, "SELECT position, change_id, change FROM log WHERE position > ? ORDER BY position LIMIT ?", int64(after), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []syncengine.Entry
	for rows.Next() {
		var pos int64
		var id, b []byte
		if err := rows.Scan(&pos, &id, &b); err != nil {
			return nil, err
		}
		e := syncengine.Entry{Pos: syncengine.Position(pos)}
		if e.Change, err = t.decodeChange(id, b); err != nil {
			return nil, fmt.Errorf("decode log entry %d: %w", pos, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (t *readTx) Cursor(ctx context.Context, peer syncengine.ReplicaID) (syncengine.Cursor, error) {
	var received, acked int64
	err := t.queryRow(ctx, "SELECT received, acked FROM cursors WHERE peer = ?", peer[:]).Scan(&received, &acked)
	if errors.Is(err, sql.ErrNoRows) {
		return syncengine.Cursor{}, nil
	}
	return syncengine.Cursor{Received: syncengine.Position(received), Acked: syncengine.Position(acked)}, err
}

func (t *tx) PutRecord(ctx context.Context, r syncengine.Record) error {
	return t.putRecord(ctx, r, false)
}

// putRecord stores r with its conflicts and read-model row; fresh says the
// transaction holds nothing of r to clear first (PutNewRecord).
func (t *tx) putRecord(ctx context.Context, r syncengine.Record, fresh bool) error {
	b, err := t.encodeRecord(r)
	if err != nil {
		return err
	}
	id := r.ID()
	_, err = t.exec(ctx, `INSERT INTO records (record_id, kind, area_code, deleted, state, misplaced) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (record_id) DO UPDATE SET kind = excluded.kind, area_code = excluded.area_code,
		deleted = excluded.deleted, state = excluded.state, misplaced = excluded.misplaced, unseen = 0`,
		id[:], int64(r.Kind()), r.Area(), r.Deleted(), b, moves.Misplaced(r))
	if err != nil {
		return fmt.Errorf("store record %v: %w", id, err)
	}
	if !fresh {
		if _, err := t.exec(ctx, "DELETE FROM conflicts WHERE record_id = ?", id[:]); err != nil {
			return err
		}
	}
	for _, c := range r.Conflicts() {
		if _, err := t.exec(ctx,
			"INSERT INTO conflicts (conflict_id, record_id, kind, area_code, field, writes) VALUES (?, ?, ?, ?, ?, ?)",
			c.ID.String(), id[:], int64(r.Kind()), r.Area(), c.ID.Field, len(c.Writes)); err != nil {
			return err
		}
	}
	return project(ctx, t, r, fresh)
}

func (t *tx) Append(ctx context.Context, c syncengine.Change) (syncengine.Position, error) {
	seen, err := t.Seen(ctx, c.Dot)
	if err != nil {
		return 0, err
	}
	if seen {
		return 0, fmt.Errorf("append %v: %w", c.Dot, syncengine.ErrDotExists)
	}
	b, err := t.encodeChange(c)
	if err != nil {
		return 0, err
	}
	res, err := t.exec(ctx, `INSERT INTO log (change_id, origin, counter, record_id, kind, area_code, deletion, hlc_wall_ms, change)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID[:], c.Origin[:], int64(c.Dot.Counter), c.RecordID[:], int64(c.Kind), c.Area, c.Delete, c.Stamp.WallMS, b)
	if err != nil {
		return 0, fmt.Errorf("append %v: %w", c.Dot, err)
	}
	pos, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	if _, err := t.exec(ctx, "INSERT INTO dots (origin, counter, position) VALUES (?, ?, ?)",
		c.Dot.Replica[:], int64(c.Dot.Counter), pos); err != nil {
		return 0, fmt.Errorf("append %v: %w", c.Dot, err)
	}
	return syncengine.Position(pos), nil
}

// NoteFrom does nothing: a device sends only its own changes, so it needs
// no record of where the others came from.
func (t *tx) NoteFrom(context.Context, syncengine.Position, syncengine.ReplicaID) error { return nil }

func (t *tx) ReplaceChange(ctx context.Context, pos syncengine.Position, c syncengine.Change) error {
	b, err := t.encodeChange(c)
	if err != nil {
		return err
	}
	res, err := t.exec(ctx, "UPDATE log SET change_id = ?, change = ?, hlc_wall_ms = ? WHERE position = ? AND origin = ? AND counter = ?",
		c.ID[:], b, c.Stamp.WallMS, int64(pos), c.Dot.Replica[:], int64(c.Dot.Counter))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("replace change at %d: %w", pos, syncengine.ErrNoEntry)
	}
	return nil
}

var _ syncengine.Renumberer = (*tx)(nil)

// RenumberChange replaces the log entry at pos, whose dot is old, with c,
// the same change under another dot of the same origin, and moves its dot
// index entry (syncengine.Renumber).
func (t *tx) RenumberChange(ctx context.Context, pos syncengine.Position, old syncengine.Dot, c syncengine.Change) error {
	if c.Dot.Replica != old.Replica {
		return fmt.Errorf("renumber change at %d: origin %v, not %v", pos, c.Dot.Replica, old.Replica)
	}
	b, err := t.encodeChange(c)
	if err != nil {
		return err
	}
	res, err := t.exec(ctx, "UPDATE log SET counter = ?, change_id = ?, change = ?, hlc_wall_ms = ? WHERE position = ? AND origin = ? AND counter = ?",
		int64(c.Dot.Counter), c.ID[:], b, c.Stamp.WallMS, int64(pos), old.Replica[:], int64(old.Counter))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("renumber change at %d: %w", pos, syncengine.ErrNoEntry)
	}
	if _, err := t.exec(ctx, "DELETE FROM dots WHERE origin = ? AND counter = ?", old.Replica[:], int64(old.Counter)); err != nil {
		return err
	}
	_, err = t.exec(ctx, "INSERT INTO dots (origin, counter, position) VALUES (?, ?, ?)", c.Dot.Replica[:], int64(c.Dot.Counter), int64(pos))
	return err
}

func (t *tx) SetCursor(ctx context.Context, peer syncengine.ReplicaID, c syncengine.Cursor) error {
	_, err := t.exec(ctx, `INSERT INTO cursors (peer, received, acked) VALUES (?, ?, ?)
		ON CONFLICT (peer) DO UPDATE SET received = excluded.received, acked = excluded.acked`,
		peer[:], int64(c.Received), int64(c.Acked))
	return err
}

// PutRejection records r, replacing any rejection of the same dot by the
// same peer. Its detail and field errors are sealed on a sealed replica
// (they may quote a reading).
func (t *tx) PutRejection(ctx context.Context, r syncengine.Rejection) error {
	var fields []byte
	if len(r.Fields) > 0 {
		var err error
		if fields, err = t.seal.seal(syncengine.AppendFieldErrors(nil, r.Fields), aadRejection, r.ID[:]); err != nil {
			return err
		}
	}
	var detail any = r.Detail
	if t.seal != nil {
		b, err := t.seal.seal([]byte(r.Detail), aadRejectionDetail, r.ID[:])
		if err != nil {
			return err
		}
		detail = b
	}
	_, err := t.exec(ctx, `INSERT INTO rejections (peer, origin, counter, position, change_id, outcome, detail, reason, fields, sealed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer, origin, counter) DO UPDATE SET position = excluded.position, change_id = excluded.change_id,
		outcome = excluded.outcome, detail = excluded.detail, reason = excluded.reason, fields = excluded.fields, sealed = excluded.sealed`,
		r.Peer[:], r.Dot.Replica[:], int64(r.Dot.Counter), int64(r.Pos), r.ID[:], r.Outcome.String(), detail, r.Reason, fields, t.seal != nil)
	return err
}

// RecordsInArea returns the stored states of the records of the given kinds
// whose area code is exactly area (a village's 12 digits), deleted ones
// included, in record-id order. It reads the transaction's own writes.
func (t *readTx) RecordsInArea(ctx context.Context, area string, kinds ...syncengine.Kind) ([]syncengine.Record, error) {
	rows, err := t.query(ctx, "SELECT record_id, kind, state FROM records WHERE area_code = ? ORDER BY record_id", area)
	if err != nil {
		return nil, fmt.Errorf("read records of area %s: %w", area, err)
	}
	defer rows.Close()
	var out []syncengine.Record
	for rows.Next() {
		var kind syncengine.Kind
		var id, b []byte
		if err := rows.Scan(&id, &kind, &b); err != nil {
			return nil, fmt.Errorf("read records of area %s: %w", area, err)
		}
		if !slices.Contains(kinds, kind) {
			continue
		}
		r, err := t.decodeRecord(id, b)
		if err != nil {
			return nil, fmt.Errorf("records of area %s: %w", area, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
