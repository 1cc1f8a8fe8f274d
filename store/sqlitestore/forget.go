package sqlitestore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync/moves"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Forgotten is what ForgetOutside deleted.
type Forgotten struct {
	// Records is how many records' states were deleted.
	Records int
	// Changes is how many log entries of other replicas' changes went: those
	// of the records deleted, and those of another area.
	Changes int
}

// ForgetOutside deletes, in one transaction, what the replica holds of the
// records whose area code is under none of prefixes (the device's areas, as
// the server's handshake gives them): a household moved to another village,
// or a village the device no longer serves. For each such record it deletes
// the record's state, its open conflicts, its read-model row, and the log
// entries of other replicas' changes to it (copies of the server's log, which
// keeps them: they would only hold another area's data on the phone). It
// also deletes the log entries of other replicas' changes of another area
// whose records it keeps (an edit made in a household's old village, which
// reaches the new village's devices): the records' states have them.
//
// A record whose state shows it in the areas only because an edit
// concurrent with a move out of them, stamped after it, wrote the old area is
// forgotten too: its area_code names the new area, where its server keeps it
// (moves.Away). So is a fragment: a live record without an area_code, made
// of an edit of the device's village pulled after a move took the record away
// (moves.Fragment).
//
// Nothing of the device's own is lost:
//   - the log entries of the replica's own changes are all kept: they are
//     its outbox, and its dot counter counts them;
//   - a record with an own change after server's acknowledged position
//     (Cursor.Acked, not yet acknowledged by the server) is kept whole, so
//     the change is pushed and its clock correction (syncengine.CorrectClock)
//     finds the record; a later call, after the server acknowledged it,
//     forgets it.
//
// The dots index is kept, so a change sent again is still recognised; a
// record that comes back later arrives whole (the server sends the state of
// a record entering a device's areas). No prefixes, or the prefix "", forget
// nothing: a handshake without areas must not empty the phone. It returns an
// error for a prefix that is not up to 12 digits.
func (s *Store) ForgetOutside(ctx context.Context, prefixes []string, server syncengine.ReplicaID) (Forgotten, error) {
	scope, err := syncengine.ParseScope(prefixes)
	if err != nil {
		return Forgotten{}, fmt.Errorf("sqlitestore: %w", err)
	}
	if scope.All() || len(scope.Prefixes()) == 0 {
		return Forgotten{}, nil
	}
	ps := scope.Prefixes()
	var out Forgotten
	self := s.replica
	err = s.Update(ctx, func(st syncengine.Tx) error {
		t := st.(*tx)
		out = Forgotten{}
		cur, err := t.Cursor(ctx, server)
		if err != nil {
			return err
		}
		outside, outArgs := outsideFilter("area_code", ps)
		pending := []any{int64(cur.Acked), self[:]}
		drop, err := t.toForget(ctx, ps, outside, outArgs, pending)
		if err != nil {
			return err
		}
		for _, r := range drop {
			n, err := t.forget(ctx, r.id, r.kind, self)
			if err != nil {
				return fmt.Errorf("forget record %v: %w", r.id, err)
			}
			out.Changes += n
		}
		out.Records = len(drop)
		// Other replicas' changes of another area, of records kept (an edit
		// made in the old village, received by the new one's device): the
		// record's state has them, the dots index recognises them.
		res, err := t.exec(ctx, `DELETE FROM log WHERE origin <> ? AND `+outside+`
			AND record_id NOT IN (SELECT record_id FROM log WHERE position > ? AND origin = ?)`,
			slices.Concat([]any{self[:]}, outArgs, pending)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		out.Changes += int(n)
		return err
	})
	if err != nil {
		return Forgotten{}, fmt.Errorf("%s: forget records outside %v: %w", s.path, prefixes, err)
	}
	return out, nil
}

// forget deletes record id's state, conflicts, read-model row and the log
// entries of its changes not made by self, and returns how many log entries
// it deleted.
func (t *tx) forget(ctx context.Context, id syncengine.RecordID, kind int64, self syncengine.ReplicaID) (int, error) {
	if _, err := t.exec(ctx, "DELETE FROM records WHERE record_id = ?", id[:]); err != nil {
		return 0, err
	}
	if _, err := t.exec(ctx, "DELETE FROM conflicts WHERE record_id = ?", id[:]); err != nil {
		return 0, err
	}
	if table, ok := readModelTables[fieldsyncv1.RecordKind(kind)]; ok {
		if _, err := t.exec(ctx, "DELETE FROM "+table+" WHERE id = ?", id.String()); err != nil {
			return 0, err
		}
	}
	res, err := t.exec(ctx, "DELETE FROM log WHERE record_id = ? AND origin <> ?", id[:], self[:])
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// outsideFilter returns an SQL condition matching column when it is under
// none of prefixes (sorted, none covering another), as ranges of the
// records_area index between them, and its arguments.
func outsideFilter(column string, prefixes []string) (string, []any) {
	conds := []string{column + " < ?"}
	args := []any{prefixes[0]}
	for i, p := range prefixes {
		end := p + "~" // after every digit: the end of the codes under p
		if i+1 < len(prefixes) {
			conds = append(conds, fmt.Sprintf("(%s >= ? AND %s < ?)", column, column))
			args = append(args, end, prefixes[i+1])
			continue
		}
		conds = append(conds, column+" >= ?")
		args = append(args, end)
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}

// forgetting is a record ForgetOutside drops.
type forgetting struct {
	id   syncengine.RecordID
	kind int64
}

// toForget returns the records outside prefixes ps (outside, outArgs: the
// SQL condition outsideFilter makes); those that changes of other replicas
// placed outside, or marked misplaced, which a move took away (moves.Away) or
// of which the replica holds a fragment (moves.Fragment); less those with
// changes after pending's position of pending's origin (the device's own, not
// yet acknowledged). A record marked misplaced that no longer is loses its
// mark (the schema step that added the mark marked every record).
func (t *tx) toForget(ctx context.Context, ps []string, outside string, outArgs, pending []any) ([]forgetting, error) {
	// Both tables name the area column area_code.
	rows, err := t.query(ctx, `SELECT record_id, kind, `+outside+`, state FROM records
		WHERE (`+outside+` OR misplaced = 1 OR record_id IN (SELECT record_id FROM log WHERE origin <> ? AND `+outside+`))
		AND record_id NOT IN (SELECT record_id FROM log WHERE position > ? AND origin = ?)`,
		slices.Concat(outArgs, outArgs, []any{pending[1]}, outArgs, pending)...)
	if err != nil {
		return nil, err
	}
	var drop []forgetting
	var placed [][]byte
	for rows.Next() {
		var id, state []byte
		var r forgetting
		var away bool // its area is outside
		if err := rows.Scan(&id, &r.kind, &away, &state); err != nil {
			rows.Close()
			return nil, err
		}
		if len(id) != len(r.id) {
			rows.Close()
			return nil, fmt.Errorf("record id of %d bytes", len(id))
		}
		copy(r.id[:], id)
		if !away {
			st, err := t.decodeRecord(id, state)
			if err != nil {
				rows.Close()
				return nil, err
			}
			if !moves.Away(st, ps) && !moves.Fragment(st) {
				if !moves.Misplaced(st) {
					placed = append(placed, id)
				}
				continue
			}
		}
		drop = append(drop, r)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, id := range placed {
		if _, err := t.exec(ctx, "UPDATE records SET misplaced = 0 WHERE record_id = ?", id); err != nil {
			return nil, err
		}
	}
	return drop, nil
}

// MarkUnseen marks, as a fresh snapshot begins, every record the replica
// holds but those with a change of its own (self) after position keep (the
// changes the server may not have had when it began reading the snapshot:
// those not acknowledged before the sync round began) and those with a
// change of its own the server refused (kept for the doctor to fix). Every
// later write of a record clears its mark (PutRecord): the snapshot bringing
// it, a change, a save.
func (t *tx) MarkUnseen(ctx context.Context, self syncengine.ReplicaID, keep syncengine.Position) error {
	_, err := t.exec(ctx, `UPDATE records SET unseen = 1
		WHERE record_id NOT IN (SELECT record_id FROM log WHERE origin = ? AND position > ?)
		AND record_id NOT IN (SELECT l.record_id FROM rejections r JOIN log l ON l.origin = r.origin AND l.counter = r.counter)`,
		self[:], int64(keep))
	return err
}

// DropUnseen forgets, once a fresh snapshot and the changes after it are in,
// the records still marked
// (MarkUnseen): the server no longer has them in the replica's areas (moved
// to another village, or a village the device no longer serves, while the
// server's log that would have said so was compacted). Their states,
// conflicts, read-model rows and other replicas' changes go; the replica's
// own changes stay in its log, and the dots index keeps every change
// recognised. It returns how many records it forgot.
func (t *tx) DropUnseen(ctx context.Context, self syncengine.ReplicaID) (int, error) {
	rows, err := t.query(ctx, "SELECT record_id, kind FROM records WHERE unseen = 1")
	if err != nil {
		return 0, err
	}
	var drop []forgetting
	for rows.Next() {
		var id []byte
		var r forgetting
		if err := rows.Scan(&id, &r.kind); err != nil {
			rows.Close()
			return 0, err
		}
		if len(id) != len(r.id) {
			rows.Close()
			return 0, fmt.Errorf("record id of %d bytes", len(id))
		}
		copy(r.id[:], id)
		drop = append(drop, r)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, r := range drop {
		if _, err := t.forget(ctx, r.id, r.kind, self); err != nil {
			return 0, fmt.Errorf("forget record %v: %w", r.id, err)
		}
	}
	return len(drop), nil
}
