package syncengine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The format bytes of AppendCompact's encoding, and of AppendCompactKeyed's
// (the same without the record's id).
const (
	recordFormatCompact = 2
	recordFormatKeyed   = 3
)

// AppendCompact appends the compact encoding of r to b, for a store to keep:
// the same state as AppendBinary's in about half the bytes, because a
// record's writes mostly come from one or a few changes. The writes' dots
// and stamps are listed once, and replicas are named by their place in the
// record's version vector (which holds every replica that wrote it):
//
//	format byte (2), id, uvarint kind, version vector,
//	uvarint stamp count, then per stamp in the order the writes first use
//	them: uvarint (index of the dot's replica in the version vector << 1 |
//	shared), uvarint dot counter, uvarint stamp wall ms, uvarint stamp
//	counter,
//	uvarint field count, then per field in ascending number order: uvarint
//	number, uvarint context length, then per context entry in replica order
//	the uvarint index of its replica in the version vector and its uvarint
//	counter, uvarint write count, then per write winner first: uvarint
//	(stamp index << 1 | delete), then, unless its stamp is shared, the
//	length-prefixed value.
//
// It is canonical like AppendBinary's (UnmarshalBinary reads both and
// accepts only what the encoder writes), but it is not what Digest hashes
// and not what travels: a peer of an older build knows format 1 only.
func (r Record) AppendCompact(b []byte) []byte { return r.appendCompact(b, nil, true) }

// AppendCompactSharing is AppendCompact leaving out the values a store holds
// anyway: those of the writes of each change in shared whose every write in
// r holds the value that change gave its field (a store that keeps its log
// beside its records then keeps each value once). Such a stamp is marked
// shared; UnmarshalCompactShared reads the encoding back given the changes.
// Changes of shared whose dot r does not hold, or holds with another value,
// are left out of the marking.
func (r Record) AppendCompactSharing(b []byte, shared []*Change) []byte {
	return r.appendCompact(b, shared, true)
}

// AppendCompactKeyed is AppendCompactSharing without the record's id, for a
// store that files the state under it (format byte 3 in place of 2);
// UnmarshalCompactKeyed reads it back given the id.
func (r Record) AppendCompactKeyed(b []byte, shared []*Change) []byte {
	return r.appendCompact(b, shared, false)
}

func (r Record) appendCompact(b []byte, shared []*Change, withID bool) []byte {
	if withID {
		b = append(b, recordFormatCompact)
		b = append(b, r.id[:]...)
	} else {
		b = append(b, recordFormatKeyed)
	}
	b = binary.AppendUvarint(b, uint64(r.kind))
	b = appendVV(b, r.version)
	stamps := r.compactStamps()
	sharedStamp := make([]bool, len(stamps))
	for i := range stamps {
		sharedStamp[i] = r.sharedBy(stamps[i].dot, shared)
	}
	b = binary.AppendUvarint(b, uint64(len(stamps)))
	for i, w := range stamps {
		h := uint64(r.replicaIndex(w.dot.Replica)) << 1
		if sharedStamp[i] {
			h |= 1
		}
		b = binary.AppendUvarint(b, h)
		b = binary.AppendUvarint(b, w.dot.Counter)
		b = binary.AppendUvarint(b, uint64(w.wall))
		b = binary.AppendUvarint(b, uint64(w.counter))
	}
	b = binary.AppendUvarint(b, uint64(len(r.fields)))
	for i := range r.fields {
		f := &r.fields[i]
		b = binary.AppendUvarint(b, uint64(f.num))
		b = binary.AppendUvarint(b, uint64(len(f.ctx.dots)))
		for _, d := range f.ctx.dots {
			b = binary.AppendUvarint(b, uint64(r.replicaIndex(d.Replica)))
			b = binary.AppendUvarint(b, d.Counter)
		}
		b = binary.AppendUvarint(b, uint64(len(f.writes)))
		for j := range f.writes {
			w := &f.writes[j]
			k := stampIndex(stamps, w)
			s := uint64(k) << 1
			if w.del {
				s |= 1
			}
			b = binary.AppendUvarint(b, s)
			if !sharedStamp[k] {
				b = binary.AppendUvarint(b, uint64(len(w.value)))
				b = append(b, w.value...)
			}
		}
	}
	return b
}

// sharedBy reports whether a change of shared, of r's record, has dot d and
// gave every field r holds a write of d for the value of that write.
func (r Record) sharedBy(d Dot, shared []*Change) bool {
	i := slices.IndexFunc(shared, func(c *Change) bool { return c.Dot == d && c.RecordID == r.id })
	if i < 0 {
		return false
	}
	c := shared[i]
	for k := range r.fields {
		f := &r.fields[k]
		for j := range f.writes {
			if f.writes[j].dot != d {
				continue
			}
			v, ok := c.writeValue(f.num)
			if !ok || !bytes.Equal(v, f.writes[j].value) {
				return false
			}
		}
	}
	return true
}

// writeValue returns the value Apply gives field num's write of c.
func (c *Change) writeValue(num int32) ([]byte, bool) {
	if num == ExistenceField {
		return []byte(c.Area), true
	}
	v, ok := c.Fields[num]
	return v, ok
}

// compactStamps returns the distinct dots and stamps of the writes, in the
// order the fields' writes first name them. A dot comes with one stamp,
// that of its change, except in a state that merged two changes reusing a
// dot (a replica restored from an older copy) in different fields: each
// of its stamps is listed then.
func (r Record) compactStamps() []write {
	var out []write
	for i := range r.fields {
		for j := range r.fields[i].writes {
			w := &r.fields[i].writes[j]
			if stampIndex(out, w) < 0 {
				out = append(out, write{dot: w.dot, wall: w.wall, counter: w.counter})
			}
		}
	}
	return out
}

// WriteDots returns the dots of the changes whose writes r keeps, each once:
// the changes a store could share r's values with.
func (r Record) WriteDots() []Dot {
	var out []Dot
	for _, s := range r.compactStamps() {
		if !slices.Contains(out, s.dot) {
			out = append(out, s.dot)
		}
	}
	return out
}

// stampIndex returns the index in stamps of w's dot and stamp, or -1. A
// record's writes come from a handful of changes, so a scan is quicker
// than a map.
func stampIndex(stamps []write, w *write) int {
	for i := range stamps {
		if stamps[i].dot == w.dot && stamps[i].wall == w.wall && stamps[i].counter == w.counter {
			return i
		}
	}
	return -1
}

// replicaIndex returns the index of replica id in r's version vector, which
// holds every replica whose writes or contexts r keeps (Record.check).
func (r Record) replicaIndex(id ReplicaID) int {
	i, _ := slices.BinarySearchFunc(r.version.dots, id, func(d Dot, id ReplicaID) int { return d.Replica.Compare(id) })
	return i
}

// ErrNotShared is wrapped by UnmarshalCompactShared's error when the store's
// resolver cannot give the change whose values a state shares.
var ErrNotShared = errors.New("shared values not found")

// UnmarshalCompactShared decodes a state AppendCompactSharing (or
// AppendBinary, or AppendCompact) encoded, taking the values of each shared
// stamp's writes from the change resolve returns for its dot. It checks the
// encoding as UnmarshalBinary does; a change resolve cannot give, or one
// that lacks a field a shared write needs, is an error wrapping ErrMalformed
// or the resolver's error. The decoded record does not share memory with b,
// but its shared values are those of the changes resolve returned.
func (r *Record) UnmarshalCompactShared(b []byte, resolve func(Dot) (*Change, error)) error {
	if len(b) == 0 || b[0] != recordFormatCompact {
		return r.UnmarshalBinary(b)
	}
	return r.unmarshalCompact(b, nil, resolve)
}

// UnmarshalCompactKeyed is UnmarshalCompactShared for what
// AppendCompactKeyed encoded, the state of record id; it reads the other
// encodings too (theirs holding id or not).
func (r *Record) UnmarshalCompactKeyed(b []byte, id RecordID, resolve func(Dot) (*Change, error)) error {
	if len(b) == 0 || b[0] != recordFormatKeyed {
		return r.UnmarshalCompactShared(b, resolve)
	}
	return r.unmarshalCompact(b, &id, resolve)
}

// unmarshalCompact decodes a format 2 encoding, or a format 3 one of record
// *id.
func (r *Record) unmarshalCompact(b []byte, id *RecordID, resolve func(Dot) (*Change, error)) error {
	rd := reader{b: bytes.Clone(b)}
	rd.byte1()
	var out Record
	if id != nil {
		out.id = *id
	} else {
		out.id = rd.id16()
	}
	readCompact(&rd, &out, resolve)
	if err := rd.end(); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	if err := out.check(); err != nil {
		return fmt.Errorf("decode record: %w: %w", ErrMalformed, err)
	}
	*r = out
	return nil
}

// CompactSharedDots returns the dots whose values the compact encoding b
// shares (none for other encodings), reading only its head.
func CompactSharedDots(b []byte) ([]Dot, error) {
	if len(b) == 0 || (b[0] != recordFormatCompact && b[0] != recordFormatKeyed) {
		return nil, nil
	}
	rd := reader{b: b, off: 1}
	var out Record
	if b[0] == recordFormatCompact {
		out.id = rd.id16()
	}
	stamps, shared := readCompactHead(&rd, &out)
	if rd.err != nil {
		return nil, fmt.Errorf("decode record: %w", rd.err)
	}
	var dots []Dot
	for i := range stamps {
		if shared[i] {
			dots = append(dots, stamps[i].dot)
		}
	}
	return dots, nil
}

// readCompactHead reads a format 2 or 3 encoding, after its id, up to its
// fields: the kind and version into out, and the stamps, with whether each
// is shared.
func readCompactHead(rd *reader, out *Record) (stamps []write, shared []bool) {
	kind := rd.uvarint()
	if rd.err == nil && kind > uint64(1<<31-1) {
		rd.fail("kind out of range")
	}
	out.kind = Kind(kind)
	out.version = readVV(rd)
	n := rd.count(4)
	stamps, shared = make([]write, n), make([]bool, n)
	for i := 0; i < n && rd.err == nil; i++ {
		s := &stamps[i]
		h := rd.uvarint()
		s.dot.Replica = out.replicaAt(rd, h>>1)
		shared[i] = h&1 == 1
		s.dot.Counter = rd.uvarint()
		wall, counter := rd.uvarint(), rd.uvarint()
		if rd.err == nil && (wall > uint64(1<<63-1) || counter > uint64(^uint32(0))) {
			rd.fail("bad stamp")
		}
		s.wall, s.counter = int64(wall), uint32(counter)
		if rd.err == nil && stampIndex(stamps[:i], s) >= 0 {
			rd.fail("stamp of %v listed twice", s.dot)
		}
	}
	return stamps, shared
}

// replicaAt returns the replica at index i of r's version vector, failing rd
// for an index out of range.
func (r *Record) replicaAt(rd *reader, i uint64) ReplicaID {
	if rd.err == nil && i >= uint64(len(r.version.dots)) {
		rd.fail("replica index %d out of range", i)
	}
	if rd.err != nil {
		return ReplicaID{}
	}
	return r.version.dots[i].Replica
}

// readCompact decodes the body of a format 2 or 3 encoding, after its id,
// into out, which check then verifies like a format 1 state. The
// values of shared stamps come from resolve; with a nil resolve they are an
// error.
func readCompact(rd *reader, out *Record, resolve func(Dot) (*Change, error)) {
	stamps, shared := readCompactHead(rd, out)
	sources := make([]*Change, len(stamps))
	used := 0 // stamps are listed in the order of first use
	n := rd.count(3)
	if n > 0 {
		out.fields = make([]fieldState, n)
	}
	for i := 0; i < n && rd.err == nil; i++ {
		f := &out.fields[i]
		num := rd.uvarint()
		if rd.err == nil && num > uint64(MaxFieldNumber) {
			rd.fail("field number %d out of range", num)
		}
		f.num = int32(num)
		if nc := rd.count(2); nc > 0 {
			f.ctx.dots = make([]Dot, nc)
			for k := range f.ctx.dots {
				f.ctx.dots[k] = Dot{Replica: out.replicaAt(rd, rd.uvarint()), Counter: rd.uvarint()}
				if rd.err == nil && (f.ctx.dots[k].Counter == 0 || k > 0 && f.ctx.dots[k-1].Replica.Compare(f.ctx.dots[k].Replica) >= 0) {
					rd.fail("context of field %d not sorted or with a zero counter", num)
				}
			}
		}
		if nw := rd.count(1); nw > 0 {
			f.writes = make([]write, nw)
		}
		for j := 0; j < len(f.writes) && rd.err == nil; j++ {
			s := rd.uvarint()
			k := s >> 1
			if rd.err == nil && (k > uint64(used) || k >= uint64(len(stamps))) {
				rd.fail("stamp %d out of order or range", k)
			}
			if rd.err != nil {
				break
			}
			if k == uint64(used) {
				used++
			}
			f.writes[j] = stamps[k]
			f.writes[j].del = s&1 == 1
			if !shared[k] {
				f.writes[j].value = rd.bytesField()
				continue
			}
			f.writes[j].value = sharedValue(rd, &sources[k], out.id, stamps[k].dot, f.num, resolve)
		}
	}
	if rd.err == nil && used != len(stamps) {
		rd.fail("%d stamps listed, %d used", len(stamps), used)
	}
}

// sharedValue returns the value field num's write of dot d takes from the
// change resolve gives for d, which must be of record id, resolving it into
// *src the first time.
func sharedValue(rd *reader, src **Change, id RecordID, d Dot, num int32, resolve func(Dot) (*Change, error)) []byte {
	if *src == nil {
		if resolve == nil {
			rd.fail("the values of %v are held elsewhere", d)
			return nil
		}
		c, err := resolve(d)
		switch {
		case err != nil:
			rd.err = fmt.Errorf("%w: values of %v: %w", ErrMalformed, d, err)
			return nil
		case c == nil || c.Dot != d || c.RecordID != id:
			rd.err = fmt.Errorf("%w: values of %v: %w", ErrMalformed, d, ErrNotShared)
			return nil
		}
		*src = c
	}
	v, ok := (*src).writeValue(num)
	if !ok {
		rd.fail("the change %v shares no value of field %d", d, num)
	}
	return v
}
