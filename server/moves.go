package server

import (
	"context"
	"fmt"

	"github.com/fieldsync/fieldsync/moves"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Moves of records between areas, and their settling, are defined in
// package moves. The server judges pushed changes with it (validate), and
// settles the unsettled moves into its own area (settleMoves) before a pull
// reads them, so no device is sent a record back in its old village by a
// server that can settle it. A push could settle in its own transaction
// (ReceiveOptions.Also); this build settles when the record is next read by
// a pull.

// serves reports whether area is within the server's own area.
func (s *Server) serves(area string) bool { return syncengine.InAreas(area, []string{s.cfg.Area}) }

// settleMoves settles, each with a change of this server, the records of ids
// that are unsettled moves (moves.Unsettled) into an area this server serves,
// and returns how many it settled. The change sets no field, puts the record
// in the area its area_code names, and overwrites every upsert of its
// existence field but none of its deletes (moves.SettlingContext). A record moved
// into another server's area is left to that server (the county), whose
// settling change comes back down. It reads first and writes only when
// there is something to settle.
func (s *Server) settleMoves(ctx context.Context, ids []syncengine.RecordID) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	var todo []syncengine.RecordID
	err := s.store.View(ctx, func(tx syncengine.ReadTx) error {
		todo = todo[:0]
		for _, id := range ids {
			r, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			if target, ok := moves.SettleTarget(r); ok && s.serves(target) && !containsID(todo, id) {
				todo = append(todo, id)
			}
		}
		return nil
	})
	if err != nil || len(todo) == 0 {
		return 0, err
	}
	type settlement struct{ id, from, to string }
	var settled []settlement
	err = s.store.Update(ctx, func(tx syncengine.Tx) error {
		settled = settled[:0]
		for _, id := range todo {
			r, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			target, ok := moves.SettleTarget(r)
			if !ok || !s.serves(target) {
				continue // settled meanwhile
			}
			cid := save.NewChangeID()
			if _, err := s.writeInTx(ctx, tx, syncengine.Edit{ID: cid, Record: id, Area: target, Base: moves.SettlingContext(r)}, nil); err != nil {
				return err
			}
			settled = append(settled, settlement{id.String(), r.Area(), target})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("settle moved records: %w", err)
	}
	for _, m := range settled {
		s.log.InfoContext(ctx, "move settled after a concurrent edit", "record", m.id, "from", m.from, "to", m.to)
	}
	return len(settled), nil
}

func containsID(ids []syncengine.RecordID, id syncengine.RecordID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// writeInTx is syncengine.WriteLocalTx with this server's clock, in tx, a
// transaction the caller runs, so that several writes of this server commit
// together: it makes e a
// change of this server stamped now, applies it to the stored record, calls
// check (if not nil) with the record's state before and the state it would
// leave, and stores both. It returns the change, or check's error or an error
// wrapping syncengine.ErrInvalidChange or a storage error, with nothing of it
// stored.
func (s *Server) writeInTx(ctx context.Context, tx syncengine.Tx, e syncengine.Edit, check func(prev, next syncengine.Record) error) (syncengine.Change, error) {
	return syncengine.WriteLocalTx(ctx, tx, s.clock, s.now().UnixMilli(), e, check)
}

// movedStates settles the records that entries (one page of a pull, for a
// peer of prefixes) moved, and returns the current state of each record that
// an entry of another replica than self moved into prefixes and that is
// within them now: the pull sends such a record whole. A record outside
// prefixes now is absent, and so is one shown in them only because an edit
// raced a move out of them (moves.Away): the peer would forget it. It also
// returns how many records it settled: their settling changes are after the
// page.
func (s *Server) movedStates(ctx context.Context, entries []boltstore.AreaEntry, prefixes []string, self syncengine.ReplicaID) (map[syncengine.RecordID]syncengine.Record, int, error) {
	var moved, in []syncengine.RecordID
	for _, e := range entries {
		if len(e.From) == 0 {
			continue
		}
		moved = append(moved, e.Change.RecordID)
		if e.Move == boltstore.MovesIn && e.Change.Origin != self {
			in = append(in, e.Change.RecordID)
		}
	}
	if len(moved) == 0 {
		return nil, 0, nil
	}
	settled, err := s.settleMoves(ctx, moved)
	if err != nil || len(in) == 0 {
		return nil, settled, err
	}
	out := make(map[syncengine.RecordID]syncengine.Record, len(in))
	err = s.store.View(ctx, func(tx syncengine.ReadTx) error {
		for _, id := range in {
			r, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			if !r.IsEmpty() && syncengine.InAreas(r.Area(), prefixes) && !moves.Away(r, prefixes) {
				out[id] = r
			}
		}
		return nil
	})
	return out, settled, err
}

// unsettledIDs returns the ids of the unsettled moves among rs.
func unsettledIDs(rs []syncengine.Record) []syncengine.RecordID {
	var out []syncengine.RecordID
	for _, r := range rs {
		if _, ok := moves.Unsettled(r); ok {
			out = append(out, r.ID())
		}
	}
	return out
}
