package syncengine

import (
	"encoding/binary"
	"fmt"
)

// The binary encodings in this package are deterministic and canonical: one
// value has exactly one encoding, and decoders reject anything else (trailing
// bytes, non-minimal varints, unsorted or duplicate entries). So the bytes of a
// record state can be compared or hashed to check that replicas converged.

// reader decodes the package's binary encodings. The first error sticks; every
// method returns a zero value once an error is set, so decoders can read a whole
// structure and check r.err once. Lengths are checked against the remaining
// input before anything is allocated, so garbage cannot cause a huge allocation.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), r.off)
	}
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if r.remaining() < 1 {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// uvarint reads a minimally encoded unsigned varint.
func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	if n > 1 && r.b[r.off+n-1] == 0 {
		r.fail("non-minimal varint")
		return 0
	}
	r.off += n
	return v
}

// count reads a uvarint element count and checks that count elements of at
// least minSize bytes each can fit in the remaining input.
func (r *reader) count(minSize int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(r.remaining()/minSize) {
		r.fail("count %d exceeds input", n)
		return 0
	}
	return int(n)
}

// id16 reads 16 raw bytes.
func (r *reader) id16() [16]byte {
	var id [16]byte
	if r.err != nil {
		return id
	}
	if r.remaining() < 16 {
		r.fail("unexpected end")
		return id
	}
	copy(id[:], r.b[r.off:])
	r.off += 16
	return id
}

// bytesField reads a uvarint length and that many bytes, returning a subslice of
// the input (no copy).
func (r *reader) bytesField() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail("length %d exceeds input", n)
		return nil
	}
	v := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return v
}

// end reports the sticky error, or an error if input remains.
func (r *reader) end() error {
	if r.err == nil && r.remaining() != 0 {
		r.fail("%d trailing bytes", r.remaining())
	}
	return r.err
}
