package syncengine

import (
	"context"
	"fmt"
)

// Edit is a write a person (or a program) makes on this replica, before it
// becomes a Change.
type Edit struct {
	// ID is the change id, a UUIDv7 made by the caller.
	ID     ChangeID
	Record RecordID
	// Kind and Area may be left zero for an existing record; the stored
	// record's are used.
	Kind Kind
	Area string
	// Base is the record version the edit was made against: the Version of
	// the record as shown to the person when they opened it. If zero, the
	// stored record's current version is used, which is right for a new
	// record and for programmatic edits. Passing what the person actually saw
	// is what turns "someone else changed this meanwhile" into a conflict
	// instead of a silent overwrite.
	Base   VersionVector
	Delete bool
	Fields map[int32][]byte
}

// WriteLocalTx turns e into a change of the clock's replica, stamped with
// clock.Now(wallMS) and given the replica's next dot, applies it to the stored
// record and appends it to the log, in tx, a transaction the caller owns, so
// that several writes commit together (a household moved with its people, a
// resolution with its audit entry). check, if not nil, gets the record's state
// before the change and the state it would leave, and its error stops the
// write. The caller's transaction must be undone on an error: nothing of a
// failed write may be committed.
func WriteLocalTx(ctx context.Context, tx Tx, clock *Clock, wallMS int64, e Edit, check func(prev, next Record) error) (Change, error) {
	self := clock.Replica()
	rec, err := tx.Record(ctx, e.Record)
	if err != nil {
		return Change{}, err
	}
	n, err := tx.MaxCounter(ctx, self)
	if err != nil {
		return Change{}, err
	}
	c := Change{
		ID: e.ID, RecordID: e.Record, Kind: e.Kind, Area: e.Area,
		Origin: self, Dot: Dot{Replica: self, Counter: n + 1},
		Context: e.Base, Delete: e.Delete, Fields: e.Fields,
	}
	if c.Kind == 0 {
		c.Kind = rec.Kind()
	}
	if c.Area == "" {
		c.Area = rec.Area()
	}
	if c.Context.Len() == 0 {
		c.Context = rec.Version()
	}
	c.Stamp = clock.Now(wallMS)
	next, err := Apply(rec, &c)
	if err != nil {
		return Change{}, err
	}
	if check != nil {
		if err := check(rec, next); err != nil {
			return Change{}, err
		}
	}
	if err := tx.PutRecord(ctx, next); err != nil {
		return Change{}, err
	}
	if _, err := tx.Append(ctx, c); err != nil {
		return Change{}, err
	}
	return c, nil
}

// CorrectClock fixes a device's clock from its server's handshake. serverMS is
// the server's time from the handshake answer and localMS the device's wall
// clock when it arrived; acked is the server's cursor for this device from the
// same handshake (the server's Received, which is authoritative: never a
// possibly stale local Acked, or a change the server already holds could be
// re-stamped and the two copies would differ).
//
// In one transaction of s, the device's own changes after acked are re-stamped
// with Restamp, rewritten in the log, and their writes in the stored records
// given the new stamps. Then the clock adopts the offset. It returns how many
// changes were re-stamped.
func CorrectClock(ctx context.Context, s Store, clock *Clock, acked Position, serverMS, localMS int64) (int, error) {
	self := clock.Replica()
	var floor Stamp
	changed := 0
	err := s.Update(ctx, func(tx Tx) error {
		floor, changed = Stamp{}, 0
		pending, err := ownAfter(ctx, tx, self, acked)
		if err != nil {
			return err
		}
		changes := make([]Change, len(pending))
		for i, e := range pending {
			changes[i] = e.Change
		}
		fixed, n := Restamp(changes, serverMS, localMS)
		changed = n
		if len(fixed) > 0 {
			floor = fixed[len(fixed)-1].Stamp
		}
		byRecord := make(map[RecordID]map[Dot]Stamp)
		for i, c := range fixed {
			if c.Stamp == pending[i].Change.Stamp {
				continue
			}
			if err := tx.ReplaceChange(ctx, pending[i].Pos, c); err != nil {
				return err
			}
			if byRecord[c.RecordID] == nil {
				byRecord[c.RecordID] = make(map[Dot]Stamp)
			}
			byRecord[c.RecordID][c.Dot] = c.Stamp
		}
		for id, stamps := range byRecord {
			rec, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			if err := tx.PutRecord(ctx, restampRecord(rec, stamps)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("syncengine: correct clock: %w", err)
	}
	clock.Correct(serverMS, localMS, floor)
	return changed, nil
}

// restampRecord returns r with the stamps of the writes whose dots are in
// stamps replaced, and each field's writes re-sorted. The result is the state
// the re-stamped changes would have produced: stamps only order writes.
func restampRecord(r Record, stamps map[Dot]Stamp) Record {
	out := r
	out.fields = make([]fieldState, len(r.fields))
	copy(out.fields, r.fields)
	for i := range out.fields {
		f := &out.fields[i]
		touched := false
		for _, w := range f.writes {
			if _, ok := stamps[w.dot]; ok {
				touched = true
				break
			}
		}
		if !touched {
			continue
		}
		writes := make([]write, 0, len(f.writes))
		for _, w := range f.writes {
			if s, ok := stamps[w.dot]; ok {
				w.wall, w.counter = s.WallMS, s.Counter
			}
			writes = addWrite(writes, 0, w)
		}
		f.writes = writes
	}
	return out
}

// ownAfter returns the entries of self's changes after position after, in
// log order.
func ownAfter(ctx context.Context, tx ReadTx, self ReplicaID, after Position) ([]Entry, error) {
	var own []Entry
	for {
		page, err := tx.ReadLog(ctx, after, DefaultBatchLimit)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			if e.Change.Origin == self {
				own = append(own, e)
			}
			after = e.Pos
		}
		if len(page) < DefaultBatchLimit {
			return own, nil
		}
	}
}
