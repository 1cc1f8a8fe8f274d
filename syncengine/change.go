package syncengine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// Kind is the kind of a record (household, person, visit, ...). The protobuf
// edge maps its RecordKind enum values one to one; 0 is never valid, like the
// enum's _UNSPECIFIED value. The engine attaches no meaning to kinds beyond
// requiring every change of a record to carry the same one.
type Kind int32

const (
	// AreaLen is the length of an area code: 12 ASCII digits.
	AreaLen = 12

	// ExistenceField is the reserved field number under which the engine keeps
	// whether a record is alive or deleted (see the package documentation).
	// Changes never set it in Fields.
	ExistenceField int32 = 0

	// MaxFieldNumber is the largest protobuf field number.
	MaxFieldNumber int32 = 1<<29 - 1
)

// Change is one write of one record by one replica: either an upsert of a set
// of top-level fields or a delete. Fields maps field number to the field's
// encoded protobuf bytes; the engine never interprets them, so fields unknown
// to this build pass through unchanged.
//
// A Change is a value: once made, it must not be modified (Apply's result may
// share its Fields values and Context).
type Change struct {
	ID       ChangeID
	RecordID RecordID
	Kind     Kind
	// Area is the 12-digit area code of the record after the change.
	Area string
	// Origin is the replica that made the change. Dot.Replica and
	// Stamp.Replica must equal it.
	Origin ReplicaID
	Dot    Dot
	Stamp  Stamp
	// Context is the record's version vector as the origin saw it when the
	// change was made. The change overwrites exactly the writes it contains.
	Context VersionVector
	// Delete marks a deletion; Fields must then be empty.
	Delete bool
	// Fields are the top-level fields set, by field number (1..MaxFieldNumber).
	// An empty value clears the field.
	Fields map[int32][]byte
}

// Validate checks the structure of c. It returns nil or an error wrapping
// ErrInvalidChange. It does not look at field contents.
func (c *Change) Validate() error {
	if err := c.validateHeader(); err != nil {
		return err
	}
	for n := range c.Fields {
		if n < 1 || n > MaxFieldNumber {
			return fmt.Errorf("%w: field number %d", ErrInvalidChange, n)
		}
	}
	return nil
}

// validateHeader is Validate without the check of field numbers.
func (c *Change) validateHeader() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidChange, fmt.Sprintf(format, args...))
	}
	switch {
	case c.ID.IsZero():
		return bad("zero change id")
	case c.RecordID.IsZero():
		return bad("zero record id")
	case c.Kind <= 0:
		return bad("kind %d", c.Kind)
	case !validArea(c.Area):
		return bad("area code %q is not %d digits", c.Area, AreaLen)
	case c.Origin.IsZero():
		return bad("zero origin")
	case c.Dot.Replica != c.Origin || c.Dot.Counter == 0:
		return bad("dot %v does not belong to origin %v", c.Dot, c.Origin)
	case c.Stamp.Replica != c.Origin:
		return bad("stamp replica differs from origin")
	case c.Stamp.WallMS < 0:
		return bad("negative stamp")
	case c.Context.Contains(c.Dot):
		return bad("context contains the change's own dot")
	case c.Delete && len(c.Fields) > 0:
		return bad("delete sets fields")
	}
	return nil
}

func validArea(s string) bool {
	if len(s) != AreaLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FieldNumbers returns the field numbers c sets, ascending.
func (c *Change) FieldNumbers() []int32 {
	return slices.Sorted(maps.Keys(c.Fields))
}

// Clone returns a deep copy of c.
func (c *Change) Clone() Change {
	out := *c
	if c.Fields != nil {
		out.Fields = make(map[int32][]byte, len(c.Fields))
		for n, v := range c.Fields {
			out.Fields[n] = bytes.Clone(v)
		}
	}
	return out
}

const changeFormat = 1

// AppendBinary validates c and appends its canonical encoding to b:
//
//	format byte (1), id, record id, uvarint kind, area (length-prefixed),
//	origin, uvarint dot counter, uvarint stamp wall ms, uvarint stamp counter,
//	context vector, flags byte (bit 0: delete), uvarint field count, then per
//	field in ascending number order: uvarint number, length-prefixed value.
//
// The origin is written once; the dot's and stamp's replica are implied.
func (c *Change) AppendBinary(b []byte) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return b, err
	}
	b = append(b, changeFormat)
	b = append(b, c.ID[:]...)
	b = append(b, c.RecordID[:]...)
	b = binary.AppendUvarint(b, uint64(c.Kind))
	b = binary.AppendUvarint(b, uint64(len(c.Area)))
	b = append(b, c.Area...)
	b = append(b, c.Origin[:]...)
	b = binary.AppendUvarint(b, c.Dot.Counter)
	b = binary.AppendUvarint(b, uint64(c.Stamp.WallMS))
	b = binary.AppendUvarint(b, uint64(c.Stamp.Counter))
	b = appendVV(b, c.Context)
	var flags byte
	if c.Delete {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(c.Fields)))
	var stack [16]int32
	nums := sortedFieldNumbers(stack[:0], c.Fields)
	for _, n := range nums {
		v := c.Fields[n]
		b = binary.AppendUvarint(b, uint64(n))
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

// MarshalBinary returns the canonical encoding of c (see AppendBinary), or an
// error wrapping ErrInvalidChange.
func (c *Change) MarshalBinary() ([]byte, error) {
	size := 128 + 17*c.Context.Len()
	for _, v := range c.Fields {
		size += 8 + len(v)
	}
	return c.AppendBinary(make([]byte, 0, size))
}

// UnmarshalBinary decodes a change encoded by MarshalBinary. It accepts only
// canonical encodings of valid changes, returns an error wrapping ErrMalformed
// or ErrInvalidChange otherwise (leaving c unchanged), and never panics. The
// decoded change does not share memory with b.
func (c *Change) UnmarshalBinary(b []byte) error {
	r := reader{b: bytes.Clone(b)}
	if f := r.byte1(); r.err == nil && f != changeFormat {
		r.fail("unknown change format %d", f)
	}
	var d Change
	d.ID = r.id16()
	d.RecordID = r.id16()
	kind := r.uvarint()
	d.Area = string(r.bytesField())
	d.Origin = r.id16()
	d.Dot = Dot{Replica: d.Origin, Counter: r.uvarint()}
	wall := r.uvarint()
	counter := r.uvarint()
	d.Context = readVV(&r)
	flags := r.byte1()
	n := r.count(2)
	if r.err == nil {
		switch {
		case kind > uint64(1<<31-1):
			r.fail("kind out of range")
		case wall > uint64(1<<63-1) || counter > uint64(^uint32(0)):
			r.fail("stamp out of range")
		case flags > 1:
			r.fail("unknown flags %#x", flags)
		}
	}
	d.Kind = Kind(kind)
	d.Stamp = Stamp{WallMS: int64(wall), Counter: uint32(counter), Replica: d.Origin}
	d.Delete = flags&1 != 0
	if n > 0 {
		d.Fields = make(map[int32][]byte, n)
	}
	prev := int64(-1)
	for i := 0; i < n && r.err == nil; i++ {
		num := r.uvarint()
		v := r.bytesField()
		if r.err == nil && (num > uint64(MaxFieldNumber) || int64(num) <= prev) {
			r.fail("field number %d out of order or range", num)
		}
		prev = int64(num)
		d.Fields[int32(num)] = v
	}
	if err := r.end(); err != nil {
		return fmt.Errorf("decode change: %w", err)
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("decode change: %w", err)
	}
	*c = d
	return nil
}

// sortedFieldNumbers appends the keys of fields to dst in ascending order. With
// a dst of sufficient capacity it does not allocate.
func sortedFieldNumbers(dst []int32, fields map[int32][]byte) []int32 {
	for n := range fields {
		dst = append(dst, n)
	}
	if len(dst) > 16 {
		slices.Sort(dst)
		return dst
	}
	// Insertion sort: changes set a handful of fields, and this allocates nothing.
	for i := 1; i < len(dst); i++ {
		for j := i; j > 0 && dst[j] < dst[j-1]; j-- {
			dst[j], dst[j-1] = dst[j-1], dst[j]
		}
	}
	return dst
}
