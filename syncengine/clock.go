package syncengine

import (
	"fmt"
	"math"
	"strconv"
	"sync"
)

// Stamp is a hybrid logical clock reading: wall-clock milliseconds, a logical
// counter that orders stamps within one millisecond, and the replica that made
// it. Stamps are totally ordered by (WallMS, Counter, Replica).
type Stamp struct {
	WallMS  int64
	Counter uint32
	Replica ReplicaID
}

// Compare orders stamps by WallMS, then Counter, then Replica, returning -1, 0
// or +1.
func (s Stamp) Compare(o Stamp) int {
	if c := s.compareTime(o); c != 0 {
		return c
	}
	return s.Replica.Compare(o.Replica)
}

// compareTime compares the (WallMS, Counter) part only.
func (s Stamp) compareTime(o Stamp) int {
	switch {
	case s.WallMS < o.WallMS:
		return -1
	case s.WallMS > o.WallMS:
		return 1
	case s.Counter < o.Counter:
		return -1
	case s.Counter > o.Counter:
		return 1
	}
	return 0
}

// IsZero reports whether s is the zero Stamp.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// String returns "wallms.counter@replica".
func (s Stamp) String() string {
	return strconv.FormatInt(s.WallMS, 10) + "." + strconv.FormatUint(uint64(s.Counter), 10) + "@" + s.Replica.String()
}

// next returns the smallest stamp of the same replica after s.
func (s Stamp) next() Stamp {
	if s.Counter == math.MaxUint32 {
		return Stamp{WallMS: s.WallMS + 1, Replica: s.Replica}
	}
	return Stamp{WallMS: s.WallMS, Counter: s.Counter + 1, Replica: s.Replica}
}

// Clock is a hybrid logical clock for one replica. It never reads the time
// itself: callers pass the wall clock in milliseconds since the Unix epoch.
// Stamps it issues are strictly increasing, and greater than every stamp it has
// observed, so a change made after seeing another is stamped after it even if
// the local wall clock is behind.
//
// A Clock is safe for concurrent use. Its state lives in memory only; after a
// restart, Restore it with the highest stamp the replica has logged.
type Clock struct {
	replica ReplicaID
	maxSkew int64 // ms; <= 0 disables the guard

	mu       sync.Mutex
	offset   int64 // added to wall readings; learned from a peer's handshake
	last     Stamp // highest stamp issued or observed
	observed Stamp // highest stamp observed from others
}

// NewClock returns a clock for replica. Observe refuses remote stamps more than
// maxSkewMS milliseconds ahead of the corrected wall clock; maxSkewMS <= 0
// disables that guard (devices, which must accept whatever their server sends).
func NewClock(replica ReplicaID, maxSkewMS int64) *Clock {
	return &Clock{replica: replica, maxSkew: maxSkewMS}
}

// Replica returns the replica the clock stamps for.
func (c *Clock) Replica() ReplicaID { return c.replica }

// Now returns a new stamp, later than every stamp issued or observed so far.
func (c *Clock) Now(wallMS int64) Stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := wallMS + c.offset
	s := Stamp{WallMS: pt, Replica: c.replica}
	if pt <= c.last.WallMS {
		s = c.last.next()
		s.Replica = c.replica
	}
	c.last = s
	return s
}

// Observe records a stamp received from another replica, so that later stamps
// from Now follow it. If the stamp is more than the maximum skew ahead of the
// corrected wall clock it returns an error wrapping ErrClockSkew and leaves the
// clock unchanged.
func (c *Clock) Observe(remote Stamp, wallMS int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := wallMS + c.offset
	// Unsigned subtraction is exact here (remote > pt) even for extreme values.
	if c.maxSkew > 0 && remote.WallMS > pt && uint64(remote.WallMS)-uint64(pt) > uint64(c.maxSkew) {
		return fmt.Errorf("%w: stamp %d ms ahead, at most %d allowed", ErrClockSkew, remote.WallMS-pt, c.maxSkew)
	}
	if remote.compareTime(c.last) > 0 {
		c.last = Stamp{WallMS: remote.WallMS, Counter: remote.Counter, Replica: c.replica}
	}
	if remote.compareTime(c.observed) > 0 {
		c.observed = remote
	}
	return nil
}

// Restore raises the clock's high-water mark to s without the skew guard. Use
// it at start-up with the highest stamp the replica has issued.
func (c *Clock) Restore(s Stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.compareTime(c.last) > 0 {
		c.last = Stamp{WallMS: s.WallMS, Counter: s.Counter, Replica: c.replica}
	}
}

// Last returns the highest stamp issued or observed.
func (c *Clock) Last() Stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Offset returns the correction, in milliseconds, added to wall readings.
func (c *Clock) Offset() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// Correct adopts the time a trusted peer reported in its handshake: from now on
// wall readings are shifted by serverMS-localMS, where localMS is the local wall
// clock read when the handshake answer arrived. The high-water mark is lowered
// to the larger of floor (normally the last stamp Restamp returned) and the
// highest stamp observed from others, so that stamps issued under a clock that
// ran fast stop deciding last-writer-wins.
func (c *Clock) Correct(serverMS, localMS int64, floor Stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = serverMS - localMS
	last := Stamp{WallMS: c.observed.WallMS, Counter: c.observed.Counter, Replica: c.replica}
	if floor.compareTime(last) > 0 {
		last = Stamp{WallMS: floor.WallMS, Counter: floor.Counter, Replica: c.replica}
	}
	c.last = last
}

// Restamp corrects the stamps of pending, the changes a device made and has not
// yet sent, in log order, given the server time from a handshake and the local
// wall time at which it arrived. A stamp ahead of the server's present was made
// by a clock running fast: it is shifted back by the measured offset (and capped
// at the present). Stamps not in the future are kept. The results are then
// made strictly increasing in the given order, so the changes keep their order.
//
// Restamp is idempotent: stamps it produced are never in the future, so a
// second run with the same server time changes nothing. It returns new
// Changes (sharing Fields and Context with the input, which is not modified)
// and the number whose stamp changed.
func Restamp(pending []Change, serverMS, localMS int64) ([]Change, int) {
	offset := serverMS - localMS
	out := make([]Change, len(pending))
	changed := 0
	var prev Stamp
	for i, c := range pending {
		s := c.Stamp
		if s.WallMS > serverMS {
			if offset < 0 {
				s.WallMS = min(max(s.WallMS+offset, 0), serverMS) // s.WallMS >= 0: no overflow
			} else {
				s.WallMS = serverMS
			}
		}
		if i > 0 && s.compareTime(prev) <= 0 {
			s = prev.next()
			s.Replica = c.Stamp.Replica
		}
		if s != c.Stamp {
			changed++
		}
		c.Stamp = s
		out[i] = c
		prev = s
	}
	return out, changed
}
