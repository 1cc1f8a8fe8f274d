package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// maxProblems is how many problems Check lists before it stops looking.
const maxProblems = 20

// Check verifies the whole store: it reads every page, runs bbolt's
// consistency check (every page reachable or free exactly once, keys in
// order, ...) and checks the store's own invariants: every log entry and
// record decodes, and the dots, log area (both ends of every move) and record
// area indexes, the token index, the audit trail's time index and the
// compaction point agree with the data.
// It returns nil, ctx's error, or an error wrapping ErrCorrupt that names the
// file and lists up to 20 problems; a damaged page never panics.
//
// Check runs in one read-write transaction that it rolls back, because bbolt
// only checks the freelist safely that way: writers wait until it is done, so
// on a large store run it when the server is quiet.
func (s *Store) Check(ctx context.Context) error {
	var problems []string
	err := protect(s.path, func() error {
		btx, err := s.db.Begin(true)
		if err != nil {
			return fmt.Errorf("boltstore: check %s: %w", s.path, err)
		}
		defer func() { _ = btx.Rollback() }()
		if _, err := readAllPages(ctx, btx); err != nil {
			return err
		}
		for err := range btx.Check() {
			if len(problems) < maxProblems {
				problems = append(problems, err.Error())
			}
		}
		if len(problems) > 0 {
			return nil
		}
		t, err := begin(btx, &s.dicts)
		if err != nil {
			problems = append(problems, err.Error())
			return nil
		}
		ck := checker{t: t, ctx: ctx}
		err = ck.run()
		problems = ck.problems
		return err
	})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("boltstore: check %s: %w: %s: %s", s.path, ErrCorrupt, strings.Join(problems, "; "), restoreAdvice)
	}
	return nil
}

// checker checks the store's invariants in one transaction.
type checker struct {
	t        *tx
	ctx      context.Context // the Check call's; checked every few thousand keys
	problems []string
	n        int
}

// fail notes a problem and reports whether to go on looking.
func (ck *checker) fail(format string, args ...any) bool {
	if len(ck.problems) < maxProblems {
		ck.problems = append(ck.problems, fmt.Sprintf(format, args...))
	}
	return len(ck.problems) < maxProblems
}

func (ck *checker) tick() error {
	if ck.n++; ck.n%4096 == 0 {
		return ck.ctx.Err()
	}
	return nil
}

func (ck *checker) run() error {
	t := ck.t
	if cp, end := t.compacted(), t.logEnd(); cp > end {
		ck.fail("compacted through %d, after the log end %d", cp, end)
	}
	for _, step := range []func() error{ck.log, ck.logArea, ck.dots, ck.records, ck.recArea, ck.registry, ck.audit, ck.staff, ck.deviceReports} {
		if len(ck.problems) >= maxProblems {
			return nil
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// has reports whether b holds key k (index values are empty, so Get cannot
// tell).
func has(b *bbolt.Bucket, k []byte) bool {
	got, _ := b.Cursor().Seek(k)
	return bytes.Equal(got, k)
}

func (ck *checker) log() error {
	t := ck.t
	cp, end := t.compacted(), t.logEnd()
	c := t.log.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := ck.tick(); err != nil {
			return err
		}
		if len(k) != posLen {
			if !ck.fail("log key of %d bytes", len(k)) {
				return nil
			}
			continue
		}
		pos := syncengine.Position(binary.BigEndian.Uint64(k))
		ch, err := t.decodeChange(pos, v)
		// The value of the entry's key in the log area index names the areas
		// a move took its record out of, which must be indexed too.
		var from []byte
		if err == nil {
			from = t.logArea.Get(areaPosKey([]byte(ch.Area), pos))
		}
		switch {
		case err != nil:
			ck.fail("%v", err)
		case pos <= cp || pos > end:
			ck.fail("log entry %d outside (%d, %d]", pos, cp, end)
		case !dotIndexes(t.dots.Get(dotKey(ch.Dot)), k, ch.ID):
			ck.fail("log entry %d: dot %v not indexed at it", pos, ch.Dot)
		case !has(t.logArea, areaPosKey([]byte(ch.Area), pos)):
			ck.fail("log entry %d: area %s not indexed", pos, ch.Area)
		default:
			if msg := checkMovedFrom(t, from, ch.Area, pos); msg != "" {
				ck.fail("log entry %d: %s", pos, msg)
			} else {
				continue
			}
		}
		if len(ck.problems) >= maxProblems {
			return nil
		}
	}
	return nil
}

func (ck *checker) logArea() error {
	t := ck.t
	c := t.logArea.Cursor()
	for k, val := c.First(); k != nil; k, val = c.Next() {
		if err := ck.tick(); err != nil {
			return err
		}
		if len(k) < posLen {
			if !ck.fail("log area key of %d bytes", len(k)) {
				return nil
			}
			continue
		}
		area, pk := k[:len(k)-posLen], k[len(k)-posLen:]
		v := t.log.Get(pk)
		if v == nil {
			if !ck.fail("log area index names %s at %d, not in the log", area, binary.BigEndian.Uint64(pk)) {
				return nil
			}
			continue
		}
		// A key under another area than the entry's is the old end of a
		// move: its value names the entry's area, whose key names this one.
		ch, err := t.decodeChange(syncengine.Position(binary.BigEndian.Uint64(pk)), v)
		got := []byte(ch.Area)
		if err != nil || bytes.Equal(got, area) {
			continue
		}
		own := t.logArea.Get(areaPosKey(got, syncengine.Position(binary.BigEndian.Uint64(pk))))
		if !bytes.Equal(val, got) || !slices.Contains(splitAreas(own), string(area)) {
			if !ck.fail("log area index names %s at %d, the entry is in %s and was not moved from there", area, binary.BigEndian.Uint64(pk), got) {
				return nil
			}
		}
	}
	return nil
}

// checkMovedFrom returns what is wrong with from, the value of the key of
// the entry at pos under its own area: a sorted list of distinct area codes
// other than area, each indexed at pos with the value area. It returns "" if
// nothing is.
func checkMovedFrom(t *tx, from []byte, area string, pos syncengine.Position) string {
	if len(from)%syncengine.AreaLen != 0 {
		return fmt.Sprintf("moved from %q", from)
	}
	areas := splitAreas(from)
	for i, a := range areas {
		switch {
		case !syncengine.ValidPrefix(a) || a == area || (i > 0 && a <= areas[i-1]):
			return fmt.Sprintf("moved from %q", from)
		case !bytes.Equal(t.logArea.Get(areaPosKey([]byte(a), pos)), []byte(area)):
			return fmt.Sprintf("moved from %s, not indexed there", a)
		}
	}
	return ""
}

func (ck *checker) dots() error {
	t := ck.t
	cp, end := t.compacted(), t.logEnd()
	c := t.dots.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := ck.tick(); err != nil {
			return err
		}
		pk, _, _, ok := dotEntry(v)
		ok = ok && len(k) == dotLen
		if ok {
			pos := syncengine.Position(binary.BigEndian.Uint64(pk))
			ok = pos > 0 && pos <= end && (pos <= cp || t.log.Get(pk) != nil)
		}
		if !ok && !ck.fail("dot index entry %x → %x names no log entry", k, v) {
			return nil
		}
	}
	return nil
}

func (ck *checker) records() error {
	t := ck.t
	c := t.records.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := ck.tick(); err != nil {
			return err
		}
		if len(k) != idLen {
			ck.fail("record key %x of %d bytes", k, len(k))
		} else if r, _, err := t.decodeRecord(syncengine.RecordID(k), v); err != nil {
			ck.fail("record %x: %v", k, err)
		} else if area, _, _ := openEnvelope(v); v[0] != recordKeyed && string(area) != r.Area() {
			ck.fail("record %v: stored as in area %s, is in %s", r.ID(), area, r.Area())
		} else if !has(t.recArea, areaIDKey([]byte(r.Area()), r.ID())) {
			ck.fail("record %v: area %s not indexed", r.ID(), r.Area())
		} else {
			continue
		}
		if len(ck.problems) >= maxProblems {
			return nil
		}
	}
	return nil
}

func (ck *checker) recArea() error {
	t := ck.t
	c := t.recArea.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if err := ck.tick(); err != nil {
			return err
		}
		if len(k) < idLen {
			if !ck.fail("record area key of %d bytes", len(k)) {
				return nil
			}
			continue
		}
		area, id := k[:len(k)-idLen], k[len(k)-idLen:]
		v := t.records.Get(id)
		var got string
		if v != nil {
			r, _, err := t.decodeRecord(syncengine.RecordID(id), v)
			if err == nil {
				got = r.Area()
			}
		}
		if got != string(area) && !ck.fail("record area index names record %x in %s, not stored there", id, area) {
			return nil
		}
	}
	return nil
}

func (ck *checker) registry() error {
	t := ck.t
	tokens := 0
	err := t.devices.ForEach(func(k, v []byte) error {
		d, err := decodeDevice(k, v)
		switch {
		case err != nil:
			ck.fail("%v", err)
		case d.TokenHash != [32]byte{}:
			tokens++
			if !bytes.Equal(t.devTokens.Get(d.TokenHash[:]), k) {
				ck.fail("device %v: token hash not indexed", d.ID)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n := t.devTokens.Stats().KeyN; n != tokens {
		ck.fail("token index has %d entries for %d devices with tokens", n, tokens)
	}
	err = t.enrolCodes.ForEach(func(k, v []byte) error {
		if _, err := decodeEnrolCode(k, v); err != nil {
			ck.fail("%v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = t.rejections.ForEach(func(k, v []byte) error {
		if _, err := decodeRejection(k, v); err != nil {
			ck.fail("%v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return t.cursors.ForEach(func(k, v []byte) error {
		if len(k) != idLen || len(v) != 2*posLen {
			ck.fail("cursor entry of %d+%d bytes", len(k), len(v))
		}
		return nil
	})
}

// dotIndexes reports whether the dots index value v names the log entry at
// key k, of change id.
func dotIndexes(v, k []byte, id syncengine.ChangeID) bool {
	pk, got, hasID, ok := dotEntry(v)
	return ok && bytes.Equal(pk, k) && (!hasID || got == id)
}
