package syncengine

import (
	"context"
	"fmt"
)

// fillLog adds changes after cur.Pos to page up to the size limit, moving
// cur.Pos to the last position accounted for, and reports whether that is
// the end of the log. It settles the moves it reads first (movedStates), and
// adds, before a change that brought a record into the puller's areas, the
// record's current state.
func (ps *pullRun[R, C]) fillLog(ctx context.Context, cur *PullCursor, page *PullPage[R, C]) (bool, error) {
	if len(ps.prefixes) == 0 {
		return true, nil
	}
	self, size := ps.req.Puller, 0
	for {
		entries, through, err := ps.Log.ReadLogAreaMoves(ctx, ps.prefixes, cur.Pos, logPageLimit)
		if err != nil {
			return false, fmt.Errorf("pull: %w", err)
		}
		states, settled, err := ps.movedStates(ctx, entries)
		if err != nil {
			return false, fmt.Errorf("pull: %w", err)
		}
		for _, e := range entries {
			if e.Change.Origin == self || e.Entry.From == self {
				// The puller made it, or sent it here: it has it.
				cur.Pos = e.Pos
				continue
			}
			// A record that enters the puller's areas goes whole, before
			// the change that brought it; one that has left them again
			// since, not at all. A record that leaves them goes as the
			// change that took it out, even if it is back (a later entry
			// brings it whole): it tells the devices, which then forget the
			// record, and a relay, whose log must say that the record left
			// for its own devices.
			r, here := states[e.Change.RecordID]
			switch {
			case ps.departing && e.Move != MovesOut,
				e.Move == MovesIn && !here:
				cur.Pos = e.Pos
				continue
			}
			whole := e.Move == MovesIn
			// A record's state starts a page, so that the changes before it
			// are stored first.
			if whole && len(page.Changes) > 0 {
				return false, nil
			}
			pc, sz, err := ps.Encoder.EncodeChange(e.Change)
			if err != nil {
				return false, fmt.Errorf("pull: log position %d: %w", e.Pos, err)
			}
			var rs R
			if whole {
				var rsz int
				rs, rsz = ps.Encoder.EncodeRecord(r)
				sz += rsz
			}
			if size > 0 && size+sz > ps.req.Limit {
				return false, nil
			}
			if whole {
				page.Records = append(page.Records, rs)
			}
			page.Changes, size, cur.Pos = append(page.Changes, pc), size+sz, e.Pos
		}
		cur.Pos = max(cur.Pos, through)
		// The changes that settled moves follow the page: read on.
		if len(entries) < logPageLimit && settled == 0 {
			return true, nil
		}
	}
}

// movedStates settles the records that entries (one page of the log) moved,
// and returns the current state of each record that an entry of another
// replica than the puller moved into its areas and that is within them
// now: the pull sends such a record whole. A record outside the areas now
// is absent, and so is one the Settler says the puller would forget
// (MoveSettler.Away). It also returns how many records it settled: their
// settling changes are after the page.
func (ps *pullRun[R, C]) movedStates(ctx context.Context, entries []AreaEntry) (map[RecordID]Record, int, error) {
	var moved, in []RecordID
	for _, e := range entries {
		if len(e.Areas) == 0 {
			continue
		}
		moved = append(moved, e.Change.RecordID)
		if e.Move == MovesIn && e.Change.Origin != ps.req.Puller {
			in = append(in, e.Change.RecordID)
		}
	}
	if len(moved) == 0 {
		return nil, 0, nil
	}
	settled := 0
	if ps.Settler != nil {
		recs, err := readRecords(ctx, ps.Log, moved)
		if err != nil {
			return nil, 0, err
		}
		if settled, err = ps.Settler.Settle(ctx, recs); err != nil {
			return nil, 0, err
		}
	}
	if len(in) == 0 {
		return nil, settled, nil
	}
	recs, err := readRecords(ctx, ps.Log, in)
	if err != nil {
		return nil, 0, err
	}
	out := make(map[RecordID]Record, len(in))
	for _, r := range recs {
		if !r.IsEmpty() && ps.req.Scope.Contains(r.Area()) && (ps.Settler == nil || !ps.Settler.Away(r, ps.prefixes)) {
			out[r.ID()] = r
		}
	}
	return out, settled, nil
}

// readRecords reads the states of ids, each once, in one read transaction.
func readRecords(ctx context.Context, s Store, ids []RecordID) ([]Record, error) {
	var out []Record
	err := s.View(ctx, func(tx ReadTx) error {
		out = out[:0]
		seen := make(map[RecordID]bool, len(ids))
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			r, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
