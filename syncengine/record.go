package syncengine

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"fmt"
	"strconv"
)

// Write is one value a change wrote to one field, as kept in a record's state.
type Write struct {
	// Dot identifies the change that wrote the value; Dot.Replica is its origin.
	Dot Dot
	// Stamp is the change's clock reading; it decides which of several
	// concurrent writes is shown.
	Stamp Stamp
	// Delete is set on ExistenceField writes made by a delete.
	Delete bool
	// Value is the field's encoded bytes. On ExistenceField it is the record's
	// area code as the writing change gave it.
	Value []byte
}

// Origin returns the replica that made the write.
func (w Write) Origin() ReplicaID { return w.Dot.Replica }

// write is how a record stores a Write: the stamp's replica is always the
// dot's, so it is kept once, which makes the state smaller and Apply faster.
type write struct {
	dot     Dot
	wall    int64
	counter uint32
	del     bool
	value   []byte
}

func (w *write) stamp() Stamp {
	return Stamp{WallMS: w.wall, Counter: w.counter, Replica: w.dot.Replica}
}

func (w *write) export() Write {
	return Write{Dot: w.dot, Stamp: w.stamp(), Delete: w.del, Value: w.value}
}

func exportWrites(ws []write) []Write {
	out := make([]Write, len(ws))
	for i := range ws {
		out[i] = ws[i].export()
	}
	return out
}

// compareWrites is the total order that picks the shown value among concurrent
// writes: the higher stamp (and so, on equal times, the higher origin) wins.
// The dot's counter and then content break any remaining tie, so two distinct
// writes never compare equal and the winner is the same on every replica. It
// is the order of (Stamp, Dot, Delete, Value), as the stamp's replica is the
// dot's.
func compareWrites(a, b *write) int {
	switch {
	case a.wall != b.wall:
		return cmp.Compare(a.wall, b.wall)
	case a.counter != b.counter:
		return cmp.Compare(a.counter, b.counter)
	}
	if c := a.dot.Compare(b.dot); c != 0 {
		return c
	}
	if a.del != b.del {
		if a.del {
			return 1
		}
		return -1
	}
	return bytes.Compare(a.value, b.value)
}

// fieldState is the merge state of one field: the join of the causal contexts
// of every change that wrote the field, and the writes no such context contains
// (the maximal, mutually concurrent writes), sorted winner first.
type fieldState struct {
	num    int32
	ctx    VersionVector
	writes []write
}

// conflicting reports whether the field's surviving writes disagree: on
// ExistenceField, some deleted and some kept the record; on other fields, not
// all values are equal.
func (f *fieldState) conflicting() bool {
	if len(f.writes) < 2 {
		return false
	}
	first := &f.writes[0]
	for i := 1; i < len(f.writes); i++ {
		w := &f.writes[i]
		if f.num == ExistenceField {
			if w.del != first.del {
				return true
			}
		} else if !bytes.Equal(w.value, first.value) {
			return true
		}
	}
	return false
}

// Record is the merged state of one record on one replica: per field the
// surviving writes and the causal context of the field, and the record's
// version vector. It is a pure function of the set of changes applied to it
// (see Apply), so replicas that applied the same changes hold byte-identical
// Records whatever order the changes came in.
//
// The zero Record is the state of a record no change has touched. Records are
// values: Apply returns a new Record and never modifies its argument, and
// accessors return copies or immutable views, so a Record can be shared.
type Record struct {
	id      RecordID
	kind    Kind
	version VersionVector
	fields  []fieldState // ascending num; fields[0].num == ExistenceField when non-empty
}

// ID returns the record's id (zero for the zero Record).
func (r Record) ID() RecordID { return r.id }

// Kind returns the record's kind (zero for the zero Record).
func (r Record) Kind() Kind { return r.kind }

// Version returns the record's version vector: the join of the dots and causal
// contexts of every change applied. A local change made now should carry it
// as its Context. Version contains every applied change, and also any change
// those changes had seen, even if that one has not arrived here yet.
func (r Record) Version() VersionVector { return r.version }

// IsEmpty reports whether no change has been applied.
func (r Record) IsEmpty() bool { return len(r.fields) == 0 }

func (r Record) existence() *fieldState {
	if len(r.fields) > 0 && r.fields[0].num == ExistenceField {
		return &r.fields[0]
	}
	return nil
}

// Exists reports whether the record is alive: some surviving write of
// ExistenceField came from an upsert. A delete only takes effect once it
// causally follows every upsert; a delete concurrent with an upsert leaves the
// record alive, with a conflict on ExistenceField.
func (r Record) Exists() bool {
	if e := r.existence(); e != nil {
		for _, w := range e.writes {
			if !w.del {
				return true
			}
		}
	}
	return false
}

// Deleted reports whether the record has been deleted: every surviving write of
// ExistenceField is a delete. A deleted record keeps its field values (a later
// upsert that causally follows the delete brings it back with them).
func (r Record) Deleted() bool {
	e := r.existence()
	if e == nil || len(e.writes) == 0 {
		return false
	}
	for _, w := range e.writes {
		if !w.del {
			return false
		}
	}
	return true
}

// Area returns the record's area code: the area of the winning upsert among
// the surviving ExistenceField writes, or of the winning delete if there is no
// upsert. It is "" for the zero Record.
func (r Record) Area() string {
	e := r.existence()
	if e == nil {
		return ""
	}
	for _, w := range e.writes {
		if !w.del {
			return string(w.value)
		}
	}
	if len(e.writes) > 0 {
		return string(e.writes[0].value)
	}
	return ""
}

func (r Record) field(num int32) *fieldState {
	lo, hi := 0, len(r.fields)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.fields[m].num < num {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(r.fields) && r.fields[lo].num == num {
		return &r.fields[lo]
	}
	return nil
}

// Value returns the shown value of field num (num >= 1): the value of the
// winning surviving write. ok is false if no surviving write set the field.
// The returned slice must not be modified.
func (r Record) Value(num int32) (value []byte, ok bool) {
	if num == ExistenceField {
		return nil, false
	}
	f := r.field(num)
	if f == nil || len(f.writes) == 0 {
		return nil, false
	}
	return f.writes[0].value, true
}

// Values returns the shown value of every field that has one, keyed by field
// number, as a new map whose values must not be modified.
func (r Record) Values() map[int32][]byte {
	out := make(map[int32][]byte, len(r.fields))
	for i := range r.fields {
		f := &r.fields[i]
		if f.num != ExistenceField && len(f.writes) > 0 {
			out[f.num] = f.writes[0].value
		}
	}
	return out
}

// AppendShown appends to b the shown value of every field that has one, in
// field-number order: the fields of Values joined, as wire encodes a body.
func (r Record) AppendShown(b []byte) []byte {
	for i := range r.fields {
		f := &r.fields[i]
		if f.num != ExistenceField && len(f.writes) > 0 {
			b = append(b, f.writes[0].value...)
		}
	}
	return b
}

// Writes returns the surviving writes of field num, winner first, as a new
// slice. More than one means concurrent writes; see Conflicts.
func (r Record) Writes(num int32) []Write {
	f := r.field(num)
	if f == nil {
		return nil
	}
	return exportWrites(f.writes)
}

// ConflictID names a conflict: a record and a field. It is stable across
// replicas, so tools and people can refer to it.
type ConflictID struct {
	Record RecordID
	Field  int32
}

// String returns "record/field".
func (id ConflictID) String() string {
	return id.Record.String() + "/" + strconv.FormatInt(int64(id.Field), 10)
}

// Conflict is an open conflict: concurrent writes to one field that disagree.
// Writes lists every surviving write, winner first (the shown value). On
// ExistenceField it lists the deletes and the upserts that were concurrent with
// them; the record stays alive until the conflict is resolved.
//
// A conflict is resolved by an ordinary change whose Context contains every
// write listed and which sets the field (for ExistenceField: any upsert keeps
// the record, a delete deletes it). It closes on every replica that applies
// it, whatever order the resolution and the writes arrive in.
type Conflict struct {
	ID     ConflictID
	Writes []Write
}

// Conflicts returns the record's open conflicts, ordered by field number.
func (r Record) Conflicts() []Conflict {
	var out []Conflict
	for i := range r.fields {
		f := &r.fields[i]
		if f.conflicting() {
			out = append(out, Conflict{
				ID:     ConflictID{Record: r.id, Field: f.num},
				Writes: exportWrites(f.writes),
			})
		}
	}
	return out
}

// Digest returns the SHA-256 of the record's canonical encoding. Two replicas
// hold the same state of a record exactly when their digests are equal.
func (r Record) Digest() [32]byte {
	b, _ := r.AppendBinary(nil)
	return sha256.Sum256(b)
}

// String returns a compact human-readable summary for logs and test failures.
func (r Record) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "record %v kind %d version %v", r.id, r.kind, r.version)
	for i := range r.fields {
		f := &r.fields[i]
		fmt.Fprintf(&b, "\n  field %d ctx %v:", f.num, f.ctx)
		for _, w := range f.writes {
			del := ""
			if w.del {
				del = " delete"
			}
			fmt.Fprintf(&b, " [%v %d.%d%s %q]", w.dot, w.wall, w.counter, del, w.value)
		}
	}
	return b.String()
}
