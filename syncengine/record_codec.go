package syncengine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
)

const recordFormat = 1

// AppendBinary appends the canonical encoding of r to b:
//
//	format byte (1), id, uvarint kind, version vector, uvarint field count,
//	then per field in ascending number order: uvarint number, context vector,
//	uvarint write count, then per write winner first: origin, uvarint dot
//	counter, uvarint stamp wall ms, uvarint stamp counter, flags byte (bit 0:
//	delete), length-prefixed value.
//
// It never fails; the error is for encoding.BinaryAppender.
func (r Record) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, recordFormat)
	b = append(b, r.id[:]...)
	b = binary.AppendUvarint(b, uint64(r.kind))
	b = appendVV(b, r.version)
	b = binary.AppendUvarint(b, uint64(len(r.fields)))
	for i := range r.fields {
		f := &r.fields[i]
		b = binary.AppendUvarint(b, uint64(f.num))
		b = appendVV(b, f.ctx)
		b = binary.AppendUvarint(b, uint64(len(f.writes)))
		for j := range f.writes {
			w := &f.writes[j]
			b = append(b, w.dot.Replica[:]...)
			b = binary.AppendUvarint(b, w.dot.Counter)
			b = binary.AppendUvarint(b, uint64(w.wall))
			b = binary.AppendUvarint(b, uint64(w.counter))
			var flags byte
			if w.del {
				flags = 1
			}
			b = append(b, flags)
			b = binary.AppendUvarint(b, uint64(len(w.value)))
			b = append(b, w.value...)
		}
	}
	return b, nil
}

// MarshalBinary returns the canonical encoding of r (see AppendBinary).
func (r Record) MarshalBinary() ([]byte, error) {
	size := 64 + 17*r.version.Len()
	for i := range r.fields {
		size += 8 + 17*r.fields[i].ctx.Len()
		for j := range r.fields[i].writes {
			size += 40 + len(r.fields[i].writes[j].value)
		}
	}
	return r.AppendBinary(make([]byte, 0, size))
}

// UnmarshalBinary decodes a record state encoded by MarshalBinary or
// AppendCompact. It accepts only canonical encodings of states that Apply
// could have produced (sorted, deduplicated, with the invariants the merge
// relies on), returns an error wrapping ErrMalformed otherwise (leaving r
// unchanged), and never panics. The decoded record does not share memory
// with b.
func (r *Record) UnmarshalBinary(b []byte) error {
	rd := reader{b: bytes.Clone(b)}
	var out Record
	switch f := rd.byte1(); {
	case rd.err != nil:
	case f == recordFormatCompact:
		out.id = rd.id16()
		readCompact(&rd, &out, nil)
	case f != recordFormat:
		rd.fail("unknown record format %d", f)
	default:
		out.id = rd.id16()
		kind := rd.uvarint()
		if rd.err == nil && kind > uint64(1<<31-1) {
			rd.fail("kind out of range")
		}
		out.kind = Kind(kind)
		out.version = readVV(&rd)
		n := rd.count(3)
		if n > 0 {
			out.fields = make([]fieldState, n)
		}
		for i := 0; i < n && rd.err == nil; i++ {
			out.fields[i] = readField(&rd)
		}
	}
	if err := rd.end(); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	if err := out.check(); err != nil {
		return fmt.Errorf("decode record: %w: %w", ErrMalformed, err)
	}
	*r = out
	return nil
}

func readField(rd *reader) fieldState {
	var f fieldState
	num := rd.uvarint()
	if rd.err == nil && num > uint64(MaxFieldNumber) {
		rd.fail("field number %d out of range", num)
	}
	f.num = int32(num)
	f.ctx = readVV(rd)
	nw := rd.count(21)
	if nw > 0 {
		f.writes = make([]write, nw)
	}
	for j := 0; j < nw && rd.err == nil; j++ {
		w := &f.writes[j]
		w.dot.Replica = rd.id16()
		w.dot.Counter = rd.uvarint()
		wall := rd.uvarint()
		counter := rd.uvarint()
		flags := rd.byte1()
		w.value = rd.bytesField()
		if rd.err != nil {
			break
		}
		if wall > uint64(1<<63-1) || counter > uint64(^uint32(0)) || flags > 1 {
			rd.fail("bad write header")
			break
		}
		w.wall, w.counter = int64(wall), uint32(counter)
		w.del = flags == 1
	}
	return f
}

// check verifies the invariants Apply maintains, so that a decoded state is one
// Apply could have produced and merging into it keeps the merge's guarantees.
func (r *Record) check() error {
	if len(r.fields) == 0 {
		if r.kind != 0 || r.version.Len() != 0 {
			return fmt.Errorf("empty record with kind or version")
		}
		return nil
	}
	if r.id.IsZero() || r.kind <= 0 {
		return fmt.Errorf("record without id or kind")
	}
	if r.fields[0].num != ExistenceField {
		return fmt.Errorf("record without existence field")
	}
	for i := range r.fields {
		f := &r.fields[i]
		if i > 0 && f.num <= r.fields[i-1].num {
			return fmt.Errorf("fields not sorted")
		}
		if !r.version.Covers(f.ctx) {
			return fmt.Errorf("field %d context not covered by version", f.num)
		}
		if err := checkWrites(f, r.version); err != nil {
			return fmt.Errorf("field %d: %w", f.num, err)
		}
	}
	return nil
}

func checkWrites(f *fieldState, version VersionVector) error {
	for j := range f.writes {
		w := &f.writes[j]
		switch {
		case w.dot.Counter == 0:
			return fmt.Errorf("zero dot")
		case f.ctx.Contains(w.dot):
			return fmt.Errorf("write %v overwritten by context", w.dot)
		case !version.Contains(w.dot):
			return fmt.Errorf("write %v not in version", w.dot)
		case w.del && f.num != ExistenceField:
			return fmt.Errorf("delete on ordinary field")
		case f.num == ExistenceField && !validArea(string(w.value)):
			return fmt.Errorf("bad area in existence write")
		case j > 0 && compareWrites(&f.writes[j-1], w) <= 0:
			return fmt.Errorf("writes not sorted")
		}
	}
	if len(f.writes) > 1 {
		dots := make([]Dot, len(f.writes))
		for j := range f.writes {
			dots[j] = f.writes[j].dot
		}
		slices.SortFunc(dots, Dot.Compare)
		for j := 1; j < len(dots); j++ {
			if dots[j] == dots[j-1] {
				return fmt.Errorf("duplicate write %v", dots[j])
			}
		}
	}
	return nil
}
