package syncengine

import (
	"context"
	"errors"
	"fmt"
)

// ErrCannotRenumber is returned by Renumber for a store whose transactions
// cannot give a change another dot (they do not implement Renumberer).
var ErrCannotRenumber = errors.New("syncengine: the store cannot renumber its changes")

// Renumberer is what a store's transaction offers so that Renumber can give
// a change of its log another dot: it replaces the entry at pos, whose dot
// is old, with c (same id, same position, another dot), and moves the dot
// index entry from old to c.Dot.
type Renumberer interface {
	RenumberChange(ctx context.Context, pos Position, old Dot, c Change) error
}

// Renumber gives the replica self's own changes at positions from on (its
// unsent changes, oldest first) new dot counters, in order, above floor and
// above every counter of self the store holds, and returns how many it
// renumbered. It is how a replica restored from an older copy of itself
// gets its new work through: the server holds other changes of self under
// the counters the copy numbered on from (floor is the highest it holds,
// HelloResponse.max_counter), and its refusal names the first of them.
//
// In one transaction of s: each change gets its new dot, and a context
// that covers self's counters through floor: the changes of self the copy
// lost (the server's, under the reused counters) are overwritten by a
// renumbered change in the fields it writes, as by a later edit of the same
// device, never kept beside it as a conflict. (A version vector cannot say
// "all of self but those", so the alternative would depend on whether the
// change followed another renumbered one.) Every record a renumbered change
// wrote gets the new dots on its writes, and its version and the contexts
// of the fields those wrote cover the new contexts. also, if not nil, runs
// in the transaction (the caller forgets its pull position, so its next
// pull is a snapshot that brings back what the copy lost).
func Renumber(ctx context.Context, s Store, self ReplicaID, from Position, floor uint64, also func(context.Context, Tx) error) (int, error) {
	n := 0
	err := s.Update(ctx, func(tx Tx) error {
		n = 0
		rn, ok := tx.(Renumberer)
		if !ok {
			return ErrCannotRenumber
		}
		own, err := ownAfter(ctx, tx, self, from-1)
		if err != nil || len(own) == 0 {
			return err
		}
		high, err := tx.MaxCounter(ctx, self)
		if err != nil {
			return err
		}
		next := max(floor, high)
		to := make(map[uint64]uint64, len(own))
		for _, e := range own {
			next++
			to[e.Change.Dot.Counter] = next
		}
		records := make(map[RecordID]bool)
		for _, e := range own {
			c := e.Change
			old := c.Dot
			c.Dot.Counter = to[old.Counter]
			c.Context = renumberVV(c.Context, self, to).Add(Dot{Replica: self, Counter: floor})
			if err := rn.RenumberChange(ctx, e.Pos, old, c); err != nil {
				return err
			}
			records[c.RecordID] = true
		}
		for id := range records {
			r, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			if err := tx.PutRecord(ctx, renumberRecord(r, self, to, floor)); err != nil {
				return err
			}
		}
		n = len(own)
		if also != nil {
			return also(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("syncengine: renumber changes of %v from position %d: %w", self, from, err)
	}
	return n, nil
}

// renumberVV returns v with self's renumbered counters (to) renumbered: its
// entry for self mapped if to has it, and raised to cover the new counter of
// every old one it covered.
func renumberVV(v VersionVector, self ReplicaID, to map[uint64]uint64) VersionVector {
	out := v
	if n, ok := to[v.Get(self)]; ok {
		dots := v.Dots()
		for i := range dots {
			if dots[i].Replica == self {
				dots[i].Counter = n
			}
		}
		out = NewVersionVector(dots...)
	}
	for old, n := range to {
		if v.Contains(Dot{Replica: self, Counter: old}) {
			out = out.Add(Dot{Replica: self, Counter: n})
		}
	}
	return out
}

// renumberRecord returns r with the dots of self in to renumbered: on its
// writes (re-sorted: dots break ties of equal stamps), in its fields'
// contexts and in its version; a field with a renumbered write, and the
// version, also cover self's counters through floor (the renumbered
// changes' contexts do).
func renumberRecord(r Record, self ReplicaID, to map[uint64]uint64, floor uint64) Record {
	lost := Dot{Replica: self, Counter: floor}
	out := r
	out.version = renumberVV(r.version, self, to).Add(lost)
	out.fields = make([]fieldState, len(r.fields))
	for i, f := range r.fields {
		f.ctx = renumberVV(f.ctx, self, to)
		writes := make([]write, 0, len(f.writes))
		for _, w := range f.writes {
			if n, ok := to[w.dot.Counter]; ok && w.dot.Replica == self {
				w.dot.Counter = n
				f.ctx = f.ctx.Add(lost)
			}
			writes = addWrite(writes, 0, w)
		}
		f.writes = writes
		out.fields[i] = f
	}
	return out
}
