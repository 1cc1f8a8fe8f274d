package sqlitestore

import (
	"context"
	"fmt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Rejected is a change of this replica a peer refused for good, with the
// record it is about.
type Rejected struct {
	syncengine.Rejection
	RecordID syncengine.RecordID
}

// Rejections returns the changes of this replica that peer refused for good
// (syncengine.Acknowledge records them with the receipt), in log order, with
// their reasons and field errors: the one copy of each rejection the phone
// keeps.
func (s *Store) Rejections(ctx context.Context, peer syncengine.ReplicaID) ([]Rejected, error) {
	var out []Rejected
	err := s.View(ctx, func(st syncengine.ReadTx) error {
		out = nil
		t := st.(*readTx)
		rows, err := t.query(ctx, `SELECT r.position, r.change_id, r.origin, r.counter, r.outcome, r.detail, r.reason, r.fields, r.sealed, l.record_id
			FROM rejections r LEFT JOIN log l ON l.origin = r.origin AND l.counter = r.counter
			WHERE r.peer = ? ORDER BY r.position`, peer[:])
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var pos, counter int64
			var id, origin, detail, fields, rec []byte
			var outcome string
			var sealed bool
			r := Rejected{Rejection: syncengine.Rejection{Peer: peer}}
			if err := rows.Scan(&pos, &id, &origin, &counter, &outcome, &detail, &r.Reason, &fields, &sealed, &rec); err != nil {
				return err
			}
			open := func(b, aad []byte) ([]byte, error) {
				if !sealed {
					return b, nil
				}
				if t.seal == nil {
					return nil, fmt.Errorf("a sealed rejection in a clear replica: %w", ErrCorrupt)
				}
				return t.seal.open(b, aad, id)
			}
			plain, err := open(detail, aadRejectionDetail)
			if err != nil {
				return err
			}
			r.Detail = string(plain)
			if len(id) != len(r.ID) || len(origin) != len(r.Dot.Replica) || (rec != nil && len(rec) != len(r.RecordID)) {
				return fmt.Errorf("rejection at position %d: ids of %d, %d and %d bytes: %w", pos, len(id), len(origin), len(rec), ErrCorrupt)
			}
			r.Pos, r.Dot.Counter = syncengine.Position(pos), uint64(counter)
			copy(r.ID[:], id)
			copy(r.Dot.Replica[:], origin)
			copy(r.RecordID[:], rec)
			r.Outcome = parseOutcome(outcome)
			if fields != nil {
				plain, err := open(fields, aadRejection)
				if err != nil {
					return err
				}
				if r.Fields, _, err = syncengine.ParseFieldErrors(plain); err != nil {
					return fmt.Errorf("rejection at position %d: %w", pos, err)
				}
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: rejections: %w", s.path, err)
	}
	return out, nil
}

// parseOutcome is the outcome whose String is s, or 0.
func parseOutcome(s string) syncengine.Outcome {
	for o := syncengine.Outcome(1); o < 16; o++ {
		if o.String() == s {
			return o
		}
	}
	return 0
}
