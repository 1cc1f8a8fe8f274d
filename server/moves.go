package server

import (
	"context"
	"fmt"

	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Records that move between areas.
//
// A record's area is where the engine says it is (syncengine.Record.Area: the
// area of the winning upsert of its existence field, which every change
// writes) and, in its body, area_code (field 2 of every record kind), which
// only the record's creation and its moves set. A move (MoveRecord, or a
// township device saving a household with another village's code) sets both.
//
// Two cases need the server's judgement:
//
//   - An edit made offline in the record's old area while the record was
//     moved (its Context does not contain the move) reaches the server when
//     the record is outside the author's areas. It is accepted when it is
//     concurrent with every write that put the record outside those areas:
//     the author had the record in its area and never saw it leave, and
//     refusing it would lose a doctor's work (concurrentWithMove). A device
//     that writes to a record it never had is refused, as before: it cannot
//     name the record's area in its change without claiming an area outside
//     its own, unless it forges a context below the record's version that
//     leaves out the move (a residual risk: it needs the record's id and
//     writes blind, as every change is audited by its dot, and the pull never
//     sends it anything of the record's new village).
//
//   - Such an edit writes the old area into the existence field. If it is
//     stamped after the move, the engine shows it as the record's area: the
//     record would slide back into the old village, its area_code still
//     naming the new one; if it is stamped before, the record stays, but the
//     edit's write of the old area survives and replicas that hold it and
//     not the move's winning write show the record in the old village
//     (unsettledMove). The server serving the new area settles the move: a
//     change of its own that sets no field and writes area_code's area over
//     every upsert of the existence field (never over a delete, whose
//     conflict stays for a person), so the edit's fields stay and the record
//     stays in its new village (settleMoves). The store files that change
//     under the old village too, so its devices, and a township relaying
//     them, learn where the record is. Every pull settles the records it is
//     about to read before it reads them, so no device is sent the record
//     back in the old village. A device that pushed such an edit forgets the
//     record at once (sqlitestore.Store.ForgetOutside).
//
// A push could settle in its own transaction (ReceiveOptions.Also); this
// build settles when the record is next read by a pull.

// areaCodeField is the field number of area_code in every record kind's body.
const areaCodeField = wire.AreaField

// bodyArea returns the area_code of r's shown body, if it is a valid area
// code.
func bodyArea(r syncengine.Record) (string, bool) {
	area, ok := wire.BodyArea(r)
	if !ok {
		return "", false
	}
	if _, err := survey.ParseAreaCode(area); err != nil {
		return "", false
	}
	return area, true
}

// unsettledMove reports whether r is a live record whose existence field
// keeps upserts of more than one area, one of them the area its area_code
// names, and returns that area: a move and a concurrent edit made where the
// record was, which the move's author did not see.
func unsettledMove(r syncengine.Record) (string, bool) {
	if !r.Exists() {
		return "", false
	}
	target, ok := bodyArea(r)
	if !ok {
		return "", false
	}
	there, elsewhere := false, false
	for _, w := range r.Writes(syncengine.ExistenceField) {
		if !w.Delete {
			there = there || string(w.Value) == target
			elsewhere = elsewhere || string(w.Value) != target
		}
	}
	if there && elsewhere {
		return target, true
	}
	return "", false
}

// settleTarget returns the area r must be settled into: that of an unsettled
// move, or the area its area_code names when a later edit, made by someone
// who saw the unsettled move, left it shown elsewhere (keepsUnsettled).
func settleTarget(r syncengine.Record) (string, bool) {
	if target, ok := unsettledMove(r); ok {
		return target, true
	}
	if !r.Exists() {
		return "", false
	}
	if target, ok := bodyArea(r); ok && target != r.Area() {
		return target, true
	}
	return "", false
}

// keepsUnsettled reports whether c, which does not set area_code, edits a
// record that was already shown in another area than its area_code names
// (prev: an unsettled move its author saw) and leaves it as it found it. The
// edit is the author's to make; settling the move is the server's
// (settleTarget).
func keepsUnsettled(c syncengine.Change, prev syncengine.Record, area string) bool {
	if _, sets := c.Fields[areaCodeField]; sets {
		return false
	}
	before, ok := bodyArea(prev)
	return ok && before == area && prev.Area() != area && c.Area == prev.Area()
}

// settlesTo reports whether next is an unsettled move into area that shows
// in another area: its area_code, area, is not its area, which a concurrent
// edit gave it.
func settlesTo(next syncengine.Record, area string) bool {
	target, ok := unsettledMove(next)
	return ok && target == area
}

// settlingContext is the context of the change that settles r: every
// upsert of its existence field, and none of its deletes.
func settlingContext(r syncengine.Record) syncengine.VersionVector {
	var dots []syncengine.Dot
	for _, w := range r.Writes(syncengine.ExistenceField) {
		if !w.Delete {
			dots = append(dots, w.Dot)
		}
	}
	return syncengine.NewVersionVector(dots...)
}

// knownContext reports whether c's context holds nothing of the record's
// history that prev lacks, the author's own changes aside (one the server
// refused may be in it).
func knownContext(c syncengine.Change, prev syncengine.Record) bool {
	var others []syncengine.Dot
	for _, d := range c.Context.Dots() {
		if d.Replica != c.Origin {
			others = append(others, d)
		}
	}
	return prev.Version().Covers(syncengine.NewVersionVector(others...))
}

// concurrentWithMove reports whether c, a change pushed by a peer of areas,
// is an edit made in its author's area (c.Area, within areas) of a record
// that has since moved out of areas without the author seeing it: the record
// stored (prev) is outside areas; c does not set area_code (it does not move
// the record itself); c's context is not empty and holds nothing of the
// record's history the server lacks (the author's own changes aside); and
// every surviving write that put the record outside areas is concurrent with
// c (not in its context). The record's area_code is then the moves' business
// (a township may hold a record that left it without the later moves).
func concurrentWithMove(c syncengine.Change, prev syncengine.Record, areas []string) bool {
	if prev.IsEmpty() || c.Context.Len() == 0 || !syncengine.InAreas(c.Area, areas) || syncengine.InAreas(prev.Area(), areas) || !knownContext(c, prev) {
		return false
	}
	if _, moves := c.Fields[areaCodeField]; moves {
		return false
	}
	outside := false
	for _, w := range prev.Writes(syncengine.ExistenceField) {
		if syncengine.InAreas(string(w.Value), areas) {
			continue
		}
		if c.Context.Contains(w.Dot) {
			return false // the author saw the record outside its areas
		}
		outside = true
	}
	return outside
}

// serves reports whether area is within the server's own area.
func (s *Server) serves(area string) bool { return syncengine.InAreas(area, []string{s.cfg.Area}) }

// settleMoves settles, each with a change of this server, the records of ids
// that are unsettled moves (unsettledMove) into an area this server serves,
// and returns how many it settled. The change sets no field, puts the record
// in the area its area_code names, and overwrites every upsert of its
// existence field but none of its deletes (settlingContext). A record moved
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
			if target, ok := settleTarget(r); ok && s.serves(target) && !containsID(todo, id) {
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
			target, ok := settleTarget(r)
			if !ok || !s.serves(target) {
				continue // settled meanwhile
			}
			cid := save.NewChangeID()
			if _, err := s.writeInTx(ctx, tx, syncengine.Edit{ID: cid, Record: id, Area: target, Base: settlingContext(r)}, nil); err != nil {
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
// prefixes now is absent. It also returns how many records it settled: their
// settling changes are after the page.
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
			if !r.IsEmpty() && syncengine.InAreas(r.Area(), prefixes) {
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
		if _, ok := unsettledMove(r); ok {
			out = append(out, r.ID())
		}
	}
	return out
}
