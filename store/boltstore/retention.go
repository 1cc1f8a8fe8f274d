package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Log retention: how long the log keeps entries that not every peer has.
//
// CompactAcknowledged drops only what every device has, so one phone left in
// a drawer would keep the whole log for ever. CompactRetained also drops the
// entries that arrived longer ago than a retention period; a device that
// comes back after that pushes its work as usual (pushes never need the
// server's log) and then pulls a snapshot, because its cursor is older than
// the compacted log.
//
// The age of an entry is its arrival time by the server's clock, not its
// change's stamp. A stamp is the origin's clock when the change was made: a
// phone back from two months offline pushes changes stamped two months ago,
// which arrived today and which the devices that sync every day have not
// pulled yet; ordering by stamp would drop them at once and send all those
// devices back to a snapshot. Stamps are also neither monotonic along the
// log nor the server's to trust.
//
// The log does not record arrival times entry by entry (that would cost
// every append a write). Instead each CompactRetained call records an
// arrival mark, in the meta bucket under "logmarks": the log end and the
// time. A mark (T, P) says that every entry at or before P had arrived by T.
// The entries that arrived before a cut-off time C are then, conservatively,
// those through the highest P of the marks with T <= C. With the server
// compacting once an hour, an entry is dropped at most an hour after its
// retention ran out, never before. Marks are kept oldest first, with
// non-decreasing times (a clock set back is taken as not moving), at most
// maxLogMarks of them (older ones are thinned out), and those at or before
// the compaction point are dropped.

// keyLogMarks is the meta key of the log's arrival marks: pairs of a time
// (Unix milliseconds) and a log position, 8 bytes each, big-endian, oldest
// first.
var keyLogMarks = []byte("logmarks")

const (
	logMarkLen = 16
	// maxLogMarks bounds the marks kept: about 85 days of hourly marks
	// before the older half is thinned to every other one.
	maxLogMarks = 2048
)

// LogMark says that every log entry at or before Pos had been appended by At,
// by the clock of the server that recorded the mark.
type LogMark struct {
	At  time.Time
	Pos syncengine.Position
}

// Retention says which log entries CompactRetained drops.
type Retention struct {
	// Now is the current time by the server's clock. It is recorded as the
	// arrival time of the log so far.
	Now time.Time
	// MaxAge, when positive, also drops the entries that arrived more than
	// MaxAge before Now, whether or not every device has pulled them: a
	// device that pulls after that starts again from a snapshot. Zero means
	// never by age.
	MaxAge time.Duration
	// Upstream names the peers this store pushes its log to (a township's
	// county): their cursors' Acked positions bound the compaction whatever
	// the age of the entries, since a push cannot start again from a
	// snapshot. Every peer with a cursor in this store that is not a
	// registered device is taken as one too; list an upstream here so that it
	// holds the log before it has acknowledged anything.
	Upstream []syncengine.ReplicaID
}

// RetentionReport says what CompactRetained found and did.
type RetentionReport struct {
	// Pulled is the position through which every registered, non-revoked
	// device has the log (the larger of its cursor's Acked and the position
	// its last completed pull delivered through), 0 with no such device.
	Pulled syncengine.Position
	// Aged is the position through which every entry arrived before
	// Now-MaxAge, 0 when MaxAge is zero or no mark is that old.
	Aged syncengine.Position
	// Held is the lowest position acknowledged by an upstream peer, and
	// HeldBy that peer; zero when there is none.
	Held   syncengine.Position
	HeldBy syncengine.ReplicaID
	// Through is the compaction point after the call, and Dropped how many
	// entries the call dropped.
	Through syncengine.Position
	Dropped int
}

// CompactRetained records an arrival mark of the log at r.Now, then compacts
// the log (Compact) through the later of what every registered, non-revoked
// device has received (RetentionReport.Pulled) and what arrived more than
// r.MaxAge ago (Aged), but never past what an upstream peer has not
// acknowledged (Held). Record states, the dots index and cursors are kept, so
// a retried old change is still recognised and a device whose cursor is
// older than the compacted log is sent a snapshot.
//
// It returns what it found and did. After an error the mark may be recorded
// and part of the entries dropped; a later call finishes the work. It is safe
// to call concurrently with every other method; two calls at once do the
// same work twice.
func (s *Store) CompactRetained(ctx context.Context, r Retention) (RetentionReport, error) {
	var rep RetentionReport
	var through syncengine.Position
	err := s.update(ctx, func(t *tx) error {
		rep = RetentionReport{}
		marks := t.logMarks()
		marks = addLogMark(marks, LogMark{At: r.Now, Pos: t.logEnd()})
		var err error
		if rep.Pulled, err = t.pulledByAll(ctx); err != nil {
			return err
		}
		if r.MaxAge > 0 {
			rep.Aged = arrivedBy(marks, r.Now.Add(-r.MaxAge))
		}
		if rep.Held, rep.HeldBy, err = t.upstreamHold(ctx, r.Upstream); err != nil {
			return err
		}
		through = max(rep.Pulled, rep.Aged)
		if !rep.HeldBy.IsZero() {
			through = min(through, rep.Held)
		}
		// Marks at or before the compaction point can no longer move it.
		cut := max(through, t.compacted())
		marks = slices.DeleteFunc(marks, func(m LogMark) bool { return m.Pos <= cut })
		return t.meta.Put(keyLogMarks, encodeLogMarks(marks))
	})
	if err != nil {
		return rep, fmt.Errorf("boltstore: compact retained: %w", err)
	}
	if through > 0 {
		rep.Dropped, err = s.Compact(ctx, through)
	}
	if cp, cerr := s.Compacted(ctx); err == nil {
		rep.Through, err = cp, cerr
	}
	return rep, err
}

// LogMarks returns the log's arrival marks, oldest first.
func (s *Store) LogMarks(ctx context.Context) ([]LogMark, error) {
	var out []LogMark
	err := s.view(ctx, func(t *tx) error {
		out = t.logMarks()
		return nil
	})
	return out, err
}

// logMarks decodes the stored marks. A value that does not decode is taken
// as no marks: marks only let compaction go further, so losing them is safe,
// and the next CompactRetained overwrites them.
func (t *tx) logMarks() []LogMark {
	v := t.meta.Get(keyLogMarks)
	if len(v)%logMarkLen != 0 {
		return nil
	}
	out := make([]LogMark, 0, len(v)/logMarkLen)
	for ; len(v) > 0; v = v[logMarkLen:] {
		out = append(out, LogMark{
			At:  time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC(),
			Pos: syncengine.Position(binary.BigEndian.Uint64(v[8:])),
		})
	}
	return out
}

func encodeLogMarks(marks []LogMark) []byte {
	b := make([]byte, 0, len(marks)*logMarkLen)
	for _, m := range marks {
		b = binary.BigEndian.AppendUint64(b, uint64(m.At.UnixMilli()))
		b = binary.BigEndian.AppendUint64(b, uint64(m.Pos))
	}
	return b
}

// addLogMark appends m to marks unless the last mark already covers its
// position (an earlier time for the same entries says more). A time before
// the last mark's is raised to it, so times never go back along the marks.
// Past maxLogMarks, the older half is thinned to every other mark.
func addLogMark(marks []LogMark, m LogMark) []LogMark {
	m.At = m.At.Truncate(time.Millisecond).UTC()
	if n := len(marks); n > 0 {
		last := marks[n-1]
		if m.Pos <= last.Pos {
			return marks
		}
		if m.At.Before(last.At) {
			m.At = last.At
		}
	}
	marks = append(marks, m)
	if len(marks) > maxLogMarks {
		half := len(marks) / 2
		thinned := make([]LogMark, 0, maxLogMarks)
		for i := 0; i < half; i += 2 {
			thinned = append(thinned, marks[i])
		}
		marks = append(thinned, marks[half:]...)
	}
	return marks
}

// arrivedBy returns the highest position of marks recorded at or before
// cutoff: every entry through it arrived by cutoff. 0 when there is none.
func arrivedBy(marks []LogMark, cutoff time.Time) syncengine.Position {
	var pos syncengine.Position
	for _, m := range marks {
		if m.At.After(cutoff) {
			break
		}
		pos = max(pos, m.Pos)
	}
	return pos
}

// pulledByAll returns the lowest position through which a registered,
// non-revoked device has the log, 0 with no such device.
func (t *tx) pulledByAll(ctx context.Context) (syncengine.Position, error) {
	var (
		low   syncengine.Position
		peers int
	)
	err := t.forEachDevice(func(d Device) error {
		if d.Revoked {
			return nil
		}
		cur, err := t.Cursor(ctx, d.ID)
		if err != nil {
			return err
		}
		has := max(cur.Acked, d.Activity.PulledThrough)
		if peers == 0 || has < low {
			low = has
		}
		peers++
		return nil
	})
	return low, err
}

// upstreamHold returns the lowest Acked position of the upstream peers: those
// listed, and every peer with a cursor that is not a registered device. The
// returned id is zero when there is no upstream peer.
func (t *tx) upstreamHold(ctx context.Context, listed []syncengine.ReplicaID) (syncengine.Position, syncengine.ReplicaID, error) {
	var (
		low syncengine.Position
		by  syncengine.ReplicaID
	)
	note := func(id syncengine.ReplicaID, acked syncengine.Position) {
		if by.IsZero() || acked < low {
			low, by = acked, id
		}
	}
	for _, id := range listed {
		if id.IsZero() {
			continue
		}
		cur, err := t.Cursor(ctx, id)
		if err != nil {
			return 0, syncengine.ReplicaID{}, err
		}
		note(id, cur.Acked)
	}
	err := t.cursors.ForEach(func(k, _ []byte) error {
		if len(k) != idLen || t.devices.Get(k) != nil {
			return nil
		}
		id := syncengine.ReplicaID(k)
		cur, err := t.Cursor(ctx, id)
		if err != nil {
			return err
		}
		note(id, cur.Acked)
		return nil
	})
	return low, by, err
}
