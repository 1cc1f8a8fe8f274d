package syncengine

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Dot identifies one change: the replica that made it and that replica's count
// of changes so far. A replica's counter is shared by all its records and never
// reused, so a dot names exactly one change. Counters start at 1; the zero Dot
// names no change.
type Dot struct {
	Replica ReplicaID
	Counter uint64
}

// IsZero reports whether d is the zero Dot.
func (d Dot) IsZero() bool { return d == Dot{} }

// Compare orders dots by replica, then counter, returning -1, 0 or +1.
func (d Dot) Compare(o Dot) int {
	if c := d.Replica.Compare(o.Replica); c != 0 {
		return c
	}
	switch {
	case d.Counter < o.Counter:
		return -1
	case d.Counter > o.Counter:
		return 1
	}
	return 0
}

// String returns "replica:counter".
func (d Dot) String() string { return d.Replica.String() + ":" + strconv.FormatUint(d.Counter, 10) }

// Ordering is the causal relation of two version vectors.
type Ordering int

// The causal relations Compare reports.
const (
	Equal      Ordering = iota // both summarise the same changes
	Before                     // the first is strictly covered by the second
	After                      // the first strictly covers the second
	Concurrent                 // each has seen something the other has not
)

// String returns the lowercase name of o.
func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return "ordering(" + strconv.Itoa(int(o)) + ")"
}

// VersionVector summarises a causal history: for each replica, the highest
// counter of that replica's changes in the history. A vector contains a dot when
// the dot's counter is at most the vector's entry for its replica.
//
// The zero VersionVector is empty. A VersionVector is immutable: no method
// modifies its receiver, so values can be copied and shared freely, including
// between goroutines.
type VersionVector struct {
	// dots is sorted by replica, one entry per replica, counters > 0.
	dots []Dot
}

// NewVersionVector returns the smallest vector containing every dot given.
// Zero-counter dots are ignored.
func NewVersionVector(dots ...Dot) VersionVector {
	ds := make([]Dot, 0, len(dots))
	for _, d := range dots {
		if d.Counter > 0 {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, Dot.Compare)
	out := ds[:0]
	for _, d := range ds {
		if n := len(out); n > 0 && out[n-1].Replica == d.Replica {
			out[n-1] = d // sorted, so d has the larger counter
			continue
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return VersionVector{}
	}
	return VersionVector{dots: out}
}

// Len returns the number of replicas with an entry.
func (v VersionVector) Len() int { return len(v.dots) }

// Dots returns the entries, sorted by replica, as a new slice.
func (v VersionVector) Dots() []Dot { return slices.Clone(v.dots) }

// Get returns the entry for replica r, or 0.
func (v VersionVector) Get(r ReplicaID) uint64 {
	for _, d := range v.dots {
		if d.Replica == r {
			return d.Counter
		}
	}
	return 0
}

// Contains reports whether the history v summarises includes the change d.
func (v VersionVector) Contains(d Dot) bool {
	return d.Counter > 0 && d.Counter <= v.Get(d.Replica)
}

// Covers reports whether v contains every change that w contains.
func (v VersionVector) Covers(w VersionVector) bool {
	o := v.Compare(w)
	return o == Equal || o == After
}

// Compare reports how v relates causally to w.
func (v VersionVector) Compare(w VersionVector) Ordering {
	vAhead, wAhead := false, false
	i, j := 0, 0
	for i < len(v.dots) && j < len(w.dots) {
		a, b := v.dots[i], w.dots[j]
		switch c := a.Replica.Compare(b.Replica); {
		case c < 0:
			vAhead = true
			i++
		case c > 0:
			wAhead = true
			j++
		default:
			if a.Counter > b.Counter {
				vAhead = true
			} else if a.Counter < b.Counter {
				wAhead = true
			}
			i++
			j++
		}
	}
	vAhead = vAhead || i < len(v.dots)
	wAhead = wAhead || j < len(w.dots)
	switch {
	case vAhead && wAhead:
		return Concurrent
	case vAhead:
		return After
	case wAhead:
		return Before
	}
	return Equal
}

// Merge returns the least vector covering both v and w. When one already covers
// the other it is returned as is, without allocating.
func (v VersionVector) Merge(w VersionVector) VersionVector {
	switch v.Compare(w) {
	case Equal, After:
		return v
	case Before:
		return w
	}
	return mergeDots(v.dots, w.dots, Dot{})
}

// Add returns v merged with the single dot d.
func (v VersionVector) Add(d Dot) VersionVector {
	if d.Counter == 0 || v.Contains(d) {
		return v
	}
	return mergeDots(v.dots, nil, d)
}

// mergeWithDot returns v ⊔ w ⊔ {d}, allocating at most once.
func mergeWithDot(v, w VersionVector, d Dot) VersionVector {
	if v.Contains(d) && v.Covers(w) {
		return v
	}
	return mergeDots(v.dots, w.dots, d)
}

// mergeDots merges two sorted entry lists and an optional extra dot into a new
// vector, keeping the highest counter per replica.
func mergeDots(a, b []Dot, extra Dot) VersionVector {
	out := make([]Dot, 0, len(a)+len(b)+1)
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var d Dot
		switch {
		case j == len(b) || (i < len(a) && a[i].Replica.Compare(b[j].Replica) < 0):
			d = a[i]
			i++
		case i == len(a) || a[i].Replica.Compare(b[j].Replica) > 0:
			d = b[j]
			j++
		default:
			d = a[i]
			d.Counter = max(a[i].Counter, b[j].Counter)
			i++
			j++
		}
		out = append(out, d)
	}
	if extra.Counter > 0 {
		k, found := slices.BinarySearchFunc(out, extra.Replica, func(d Dot, r ReplicaID) int {
			return d.Replica.Compare(r)
		})
		if found {
			out[k].Counter = max(out[k].Counter, extra.Counter)
		} else {
			out = slices.Insert(out, k, extra)
		}
	}
	return VersionVector{dots: out}
}

// String returns the entries as "{replica:counter, ...}".
func (v VersionVector) String() string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, d := range v.dots {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(d.String())
	}
	sb.WriteByte('}')
	return sb.String()
}

// AppendBinary appends the canonical encoding of v to b: a uvarint count, then
// per entry in replica order the 16 replica bytes and a uvarint counter. It
// never fails; the error is for encoding.BinaryAppender.
func (v VersionVector) AppendBinary(b []byte) ([]byte, error) {
	return appendVV(b, v), nil
}

// MarshalBinary returns the canonical encoding of v (see AppendBinary).
func (v VersionVector) MarshalBinary() ([]byte, error) {
	return appendVV(make([]byte, 0, 1+17*len(v.dots)), v), nil
}

// UnmarshalBinary decodes the canonical encoding of a vector into v. On error,
// which wraps ErrMalformed, v is unchanged. It does not retain b.
func (v *VersionVector) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	w := readVV(&r)
	if err := r.end(); err != nil {
		return fmt.Errorf("decode version vector: %w", err)
	}
	*v = w
	return nil
}

func appendVV(b []byte, v VersionVector) []byte {
	b = binary.AppendUvarint(b, uint64(len(v.dots)))
	for _, d := range v.dots {
		b = append(b, d.Replica[:]...)
		b = binary.AppendUvarint(b, d.Counter)
	}
	return b
}

// readVV reads a vector, rejecting unsorted or duplicate replicas and zero
// counters so that every accepted encoding is canonical.
func readVV(r *reader) VersionVector {
	n := r.count(17)
	if n == 0 {
		return VersionVector{}
	}
	dots := make([]Dot, n)
	for i := range dots {
		dots[i].Replica = r.id16()
		dots[i].Counter = r.uvarint()
		if r.err != nil {
			return VersionVector{}
		}
		if dots[i].Counter == 0 {
			r.fail("zero counter in version vector")
			return VersionVector{}
		}
		if i > 0 && dots[i-1].Replica.Compare(dots[i].Replica) >= 0 {
			r.fail("version vector not sorted by replica")
			return VersionVector{}
		}
	}
	return VersionVector{dots: dots}
}
