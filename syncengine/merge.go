package syncengine

import "fmt"

// Merge returns the join of two states of the same record: the state that
// applying every change applied to either would give. It is what a replica uses
// to take in a record state from a snapshot without losing writes it already
// holds (its own unsent changes, or changes the snapshot has not seen yet).
// Like Apply, it is pure, commutative, associative and idempotent, and the
// result may share memory with a and b.
//
// Per field it joins the two causal contexts and keeps the writes of either
// side that the joined context does not contain. It returns an error wrapping
// ErrRecordMismatch if a and b are states of different records or kinds.
func Merge(a, b Record) (Record, error) {
	switch {
	case b.IsEmpty() && (b.id.IsZero() || b.id == a.id):
		return a, nil
	case a.IsEmpty() && (a.id.IsZero() || a.id == b.id):
		return b, nil
	case a.id != b.id:
		return a, fmt.Errorf("%w: merging states of %v and %v", ErrRecordMismatch, a.id, b.id)
	case a.kind != b.kind:
		return a, fmt.Errorf("%w: merging states of kinds %d and %d", ErrRecordMismatch, a.kind, b.kind)
	}
	out := Record{id: a.id, kind: a.kind, version: a.version.Merge(b.version)}
	out.fields = make([]fieldState, 0, len(a.fields)+len(b.fields))
	i, j := 0, 0
	for i < len(a.fields) || j < len(b.fields) {
		switch {
		case j == len(b.fields) || (i < len(a.fields) && a.fields[i].num < b.fields[j].num):
			out.fields = append(out.fields, a.fields[i])
			i++
		case i == len(a.fields) || b.fields[j].num < a.fields[i].num:
			out.fields = append(out.fields, b.fields[j])
			j++
		default:
			out.fields = append(out.fields, mergeFieldStates(&a.fields[i], &b.fields[j]))
			i++
			j++
		}
	}
	return out, nil
}

// mergeFieldStates joins two states of one field.
func mergeFieldStates(x, y *fieldState) fieldState {
	f := fieldState{num: x.num, ctx: x.ctx.Merge(y.ctx)}
	writes := make([]write, 0, len(x.writes)+len(y.writes))
	for _, ws := range [2][]write{x.writes, y.writes} {
		for _, w := range ws {
			if !f.ctx.Contains(w.dot) {
				writes = addWrite(writes, 0, w)
			}
		}
	}
	f.writes = writes[:len(writes):len(writes)]
	return f
}
