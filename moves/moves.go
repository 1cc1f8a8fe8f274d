package moves

import (
	"slices"

	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Target returns the area r's shown body names in its area_code, if it is a
// valid area code: where the record's creation or its last move put it.
func Target(r syncengine.Record) (string, bool) {
	area, ok := wire.BodyArea(r)
	if !ok {
		return "", false
	}
	if _, err := survey.ParseAreaCode(area); err != nil {
		return "", false
	}
	return area, true
}

// Unsettled reports whether r is a live record whose existence field keeps
// upserts of more than one area, one of them the area its area_code names,
// and returns that area: a move and a concurrent edit made where the record
// was, which the move's author did not see.
func Unsettled(r syncengine.Record) (string, bool) {
	if !r.Exists() {
		return "", false
	}
	target, ok := Target(r)
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

// SettleTarget returns the area r must be settled into: that of an unsettled
// move, or the area its area_code names when a later edit, made by someone
// who saw the unsettled move, left it shown elsewhere (see AreaCodeAgrees).
func SettleTarget(r syncengine.Record) (string, bool) {
	if target, ok := Unsettled(r); ok {
		return target, true
	}
	if !r.Exists() {
		return "", false
	}
	if target, ok := Target(r); ok && target != r.Area() {
		return target, true
	}
	return "", false
}

// SettlingContext is the context of the change that settles r: every upsert
// of its existence field, and none of its deletes.
func SettlingContext(r syncengine.Record) syncengine.VersionVector {
	var dots []syncengine.Dot
	for _, w := range r.Writes(syncengine.ExistenceField) {
		if !w.Delete {
			dots = append(dots, w.Dot)
		}
	}
	return syncengine.NewVersionVector(dots...)
}

// ConcurrentEdit reports whether c, a change pushed by a peer of areas, is an
// edit made in its author's area (c.Area, within areas) of a record that has
// since moved out of areas without the author seeing it: the record stored
// (prev) is outside areas; c does not set area_code (it does not move the
// record itself); c's context is not empty and holds nothing of the record's
// history the receiver lacks (the author's own changes aside); and every
// surviving write that put the record outside areas is concurrent with c (not
// in its context). Such an edit is accepted, whatever area it leaves the
// record in.
func ConcurrentEdit(c syncengine.Change, prev syncengine.Record, areas []string) bool {
	if prev.IsEmpty() || c.Context.Len() == 0 || !syncengine.InAreas(c.Area, areas) || syncengine.InAreas(prev.Area(), areas) || !knownContext(c, prev) {
		return false
	}
	if _, moves := c.Fields[wire.AreaField]; moves {
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

// knownContext reports whether c's context holds nothing of the record's
// history that prev lacks, the author's own changes aside (one the receiver
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

// AreaCodeAgrees reports whether area, the area_code of the record c leaves
// (next, from prev), is consistent with where next is shown: it names
// next.Area(); or c is an edit concurrent with a move (concurrent, from
// ConcurrentEdit), whose area_code is the moves' business; or next is an
// unsettled move into area; or c, setting no area_code, edits a record that
// was already shown elsewhere than its area_code (an unsettled move its
// author saw) and leaves it as it found it: the edit is the author's to
// make, settling the move is the server's.
func AreaCodeAgrees(c syncengine.Change, prev, next syncengine.Record, area string, concurrent bool) bool {
	if area == next.Area() || concurrent {
		return true
	}
	if target, ok := Unsettled(next); ok && target == area {
		return true
	}
	if _, sets := c.Fields[wire.AreaField]; sets {
		return false
	}
	before, ok := Target(prev)
	return ok && before == area && prev.Area() != area && c.Area == prev.Area()
}

// From returns the areas c took its record out of, other than c.Area,
// sorted: the area the record was in before c (prev, the stored state), and,
// unless c deletes, the areas of the upserts of the record's existence field
// that c overwrites, where replicas holding them show the record (a server's
// settling of a move overwrites them all). It returns nil for a change that
// moves nothing: a new record, or one that stays in its area.
func From(prev syncengine.Record, c *syncengine.Change) []string {
	var out []string
	add := func(a string) {
		if a != "" && a != c.Area && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if !prev.IsEmpty() {
		add(prev.Area())
	}
	if !c.Delete {
		for _, w := range prev.Writes(syncengine.ExistenceField) {
			if !w.Delete && c.Context.Contains(w.Dot) && len(w.Value) == syncengine.AreaLen {
				add(string(w.Value))
			}
		}
	}
	slices.Sort(out)
	return out
}

// Fragment reports whether r is a live record without a valid area_code:
// what a replica holds of a record when it received a later change of it
// and not its creation (an edit of its village pulled after a move took the
// record away, or the settling of such a move).
func Fragment(r syncengine.Record) bool {
	if !r.Exists() {
		return false
	}
	_, ok := Target(r)
	return !ok
}

// Away reports whether r is a live record that a move took out of areas and
// that only shows in them because an edit concurrent with the move, stamped
// later, wrote the old area: its area_code names an area outside areas, and
// its existence field keeps a surviving upsert of that area. Its server
// settles the record in the area the move named (SettleTarget), so a device
// of areas forgets it now.
func Away(r syncengine.Record, areas []string) bool {
	if !r.Exists() || !syncengine.InAreas(r.Area(), areas) {
		return false
	}
	target, ok := Target(r)
	if !ok || target == r.Area() || syncengine.InAreas(target, areas) {
		return false
	}
	for _, w := range r.Writes(syncengine.ExistenceField) {
		if !w.Delete && string(w.Value) == target {
			return true
		}
	}
	return false
}

// Misplaced reports whether r is a live record shown elsewhere than its
// area_code names, or without one (a Fragment): the records a replica must
// look at again when its areas are checked (Away, Fragment).
func Misplaced(r syncengine.Record) bool {
	if !r.Exists() {
		return false
	}
	target, ok := Target(r)
	return !ok || target != r.Area()
}
