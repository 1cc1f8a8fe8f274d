package server

import (
	"context"
	"fmt"
	"slices"

	"github.com/fieldsync/fieldsync/moves"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Moves of records between areas, and their settling, are defined in
// package moves. The server judges pushed changes with it (validate), and
// settles the unsettled moves into its own area (moveSettler) before a pull
// reads them, so no device is sent a record back in its old village by a
// server that can settle it. A push could settle in its own transaction
// (ReceiveOptions.Also); this build settles when the record is next read by
// a pull.

// serves reports whether area is within the server's own area.
func (s *Server) serves(area string) bool { return syncengine.InAreas(area, []string{s.cfg.Area}) }

// moveSettler is the server's syncengine.MoveSettler: a pull settles
// through it the moves it is about to read.
type moveSettler struct{ s *Server }

// Settle settles, each with a change of this server, those of recs that are
// unsettled moves (moves.SettleTarget) into an area this server serves, and
// returns how many it settled. The change sets no field, puts the record in
// the area its area_code names, and overwrites every upsert of its existence
// field but none of its deletes (moves.SettlingContext). A record moved into
// another server's area is left to that server (the county), whose settling
// change comes back down. It writes only when there is something to settle.
func (m moveSettler) Settle(ctx context.Context, recs []syncengine.Record) (int, error) {
	s := m.s
	var todo []syncengine.RecordID
	for _, r := range recs {
		if target, ok := moves.SettleTarget(r); ok && s.serves(target) && !slices.Contains(todo, r.ID()) {
			todo = append(todo, r.ID())
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	type settlement struct{ id, from, to string }
	var settled []settlement
	err := s.store.Update(ctx, func(tx syncengine.Tx) error {
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

// Away is moves.Away: a record shown in areas only because an edit raced
// a move out of them is not sent to a puller of areas, which would forget
// it.
func (moveSettler) Away(r syncengine.Record, areas []string) bool { return moves.Away(r, areas) }

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
