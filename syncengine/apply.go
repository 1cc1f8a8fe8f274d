package syncengine

import (
	"cmp"
	"fmt"
	"slices"
)

// Apply returns the state of a record after applying change c to state r. It is
// deterministic and pure: it reads nothing but its arguments and modifies
// neither (the result may share memory with both, which is why Records and
// Changes are immutable values).
//
// For every field c writes (its Fields, plus ExistenceField, which every change
// writes), Apply:
//
//  1. joins c.Context into the field's context;
//  2. drops the field's writes whose dot that context now contains: they are
//     causally overwritten;
//  3. adds c's write unless the context contains c's dot (c itself was
//     overwritten by a change already applied here).
//
// The record's version becomes r.Version() ⊔ c.Context ⊔ {c.Dot}. Fields c does
// not write are untouched, so concurrent writes to different fields both
// survive. Each step is a join of sets, so Apply is commutative, associative
// and idempotent in its changes: the state is a function of the set of changes
// applied, whatever their order, duplication or path. See the package
// documentation for the conflict model built on it.
//
// Apply returns r and an error wrapping ErrInvalidChange if c fails
// Validate, or ErrRecordMismatch if r is the state of another record or kind.
// The zero Record is the state of any record before its first change.
func Apply(r Record, c *Change) (Record, error) {
	if err := c.validateHeader(); err != nil {
		return r, err
	}
	if !r.IsEmpty() || !r.id.IsZero() {
		if r.id != c.RecordID {
			return r, fmt.Errorf("%w: change for record %v applied to %v", ErrRecordMismatch, c.RecordID, r.id)
		}
	}
	if !r.IsEmpty() && r.kind != c.Kind {
		return r, fmt.Errorf("%w: change of kind %d for record of kind %d", ErrRecordMismatch, c.Kind, r.kind)
	}
	var stack [17]touchedField
	ts, err := touchedFields(stack[:0], c)
	if err != nil {
		return r, err
	}

	nFields, nWrites := planFields(r.fields, ts, c)
	out := Record{
		id:      c.RecordID,
		kind:    c.Kind,
		version: mergeWithDot(r.version, c.Context, c.Dot),
		fields:  make([]fieldState, 0, nFields),
	}
	arena := make([]write, 0, nWrites)
	i := 0
	for k := range ts {
		t := &ts[k]
		for i < len(r.fields) && r.fields[i].num < t.num {
			out.fields = append(out.fields, r.fields[i])
			i++
		}
		f := fieldState{num: t.num, ctx: t.ctx}
		start := len(arena)
		if t.old >= 0 {
			for j, x := range r.fields[t.old].writes {
				if (j < 64 && t.keep&(1<<j) != 0) || (j >= 64 && !t.ctx.Contains(x.dot)) {
					arena = append(arena, x)
				}
			}
			i = t.old + 1
		}
		if t.addNew {
			arena = addWrite(arena, start, write{dot: c.Dot, wall: c.Stamp.WallMS, counter: c.Stamp.Counter, del: c.Delete, value: t.value})
		}
		f.writes = arena[start:len(arena):len(arena)]
		out.fields = append(out.fields, f)
	}
	out.fields = append(out.fields, r.fields[i:]...)
	return out, nil
}

// planFields is Apply's first pass: for each touched field it finds the old
// state and the new context and marks which writes survive, and it counts the
// fields and writes of the result, so that Apply allocates each list once.
func planFields(fields []fieldState, ts []touchedField, c *Change) (nFields, nWrites int) {
	nFields = len(fields)
	i := 0
	for k := range ts {
		t := &ts[k]
		for i < len(fields) && fields[i].num < t.num {
			i++
		}
		t.old = -1
		old := &fieldState{}
		if i < len(fields) && fields[i].num == t.num {
			t.old = i
			old = &fields[i]
			i++
		} else {
			nFields++
		}
		t.ctx = old.ctx.Merge(c.Context)
		for j := range old.writes {
			if !t.ctx.Contains(old.writes[j].dot) {
				nWrites++
				if j < 64 {
					t.keep |= 1 << j
				}
			}
		}
		// c.Context never contains c.Dot (Validate), so only the field's
		// old context can.
		t.addNew = !old.ctx.Contains(c.Dot)
		if t.addNew {
			nWrites++
		}
	}
	return nFields, nWrites
}

// touchedField is one field a change writes, while Apply merges it.
type touchedField struct {
	num    int32
	old    int // index in the old record's fields, or -1
	ctx    VersionVector
	value  []byte
	keep   uint64 // bit j: the old write j survives (for j < 64)
	addNew bool   // the change's own write survives
}

// touchedFields appends the fields c writes to dst, ExistenceField first and
// then by ascending number, checking the field numbers on the way (one pass
// over the map). For up to 16 fields it sorts small keys on the stack and does
// not allocate, given a dst of capacity 17.
func touchedFields(dst []touchedField, c *Change) ([]touchedField, error) {
	dst = append(dst, touchedField{num: ExistenceField, value: []byte(c.Area)})
	if len(c.Fields) > 16 {
		for n, v := range c.Fields {
			if n < 1 || n > MaxFieldNumber {
				return nil, fmt.Errorf("%w: field number %d", ErrInvalidChange, n)
			}
			dst = append(dst, touchedField{num: n, value: v})
		}
		slices.SortFunc(dst, func(a, b touchedField) int { return cmp.Compare(a.num, b.num) })
		return dst, nil
	}
	type key struct {
		num int32
		idx int32
	}
	var keys [16]key
	var values [16][]byte
	k := 0
	for n, v := range c.Fields {
		if n < 1 || n > MaxFieldNumber {
			return nil, fmt.Errorf("%w: field number %d", ErrInvalidChange, n)
		}
		keys[k], values[k] = key{n, int32(k)}, v
		j := k
		for ; j > 0 && keys[j-1].num > n; j-- {
			keys[j] = keys[j-1]
		}
		keys[j] = key{n, int32(k)}
		k++
	}
	for _, ky := range keys[:k] {
		dst = append(dst, touchedField{num: ky.num, value: values[ky.idx]})
	}
	return dst, nil
}

// addWrite inserts w into arena[start:], which is sorted winner first, keeping
// the order. If a write with the same dot is already there (the same change
// applied again, or a forged one reusing its dot) the greater of the two is
// kept, so the result does not depend on which came first.
func addWrite(arena []write, start int, w write) []write {
	for k := start; k < len(arena); k++ {
		if arena[k].dot == w.dot {
			if compareWrites(&w, &arena[k]) <= 0 {
				return arena
			}
			arena = append(arena[:k], arena[k+1:]...)
			break
		}
	}
	k := len(arena)
	arena = append(arena, w)
	for ; k > start && compareWrites(&arena[k-1], &arena[k]) < 0; k-- {
		arena[k-1], arena[k] = arena[k], arena[k-1]
	}
	return arena
}
