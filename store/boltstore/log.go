package boltstore

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// compactChunk is the most log entries one compaction transaction drops.
const compactChunk = 10000

// LogEnd returns the last position ever assigned in the log, 0 if nothing was
// ever appended. It is the AsOf of a snapshot read now.
func (s *Store) LogEnd(ctx context.Context) (syncengine.Position, error) {
	var end syncengine.Position
	err := s.view(ctx, func(t *tx) error {
		end = t.logEnd()
		return nil
	})
	return end, err
}

// Compacted returns the position through which the log has been compacted,
// 0 if never. Reading the log after an earlier position fails with
// syncengine.ErrCompacted.
func (s *Store) Compacted(ctx context.Context) (syncengine.Position, error) {
	var cp syncengine.Position
	err := s.view(ctx, func(t *tx) error {
		cp = t.compacted()
		return nil
	})
	return cp, err
}

// ReadLogArea is ReadLogAreaMoves without the moves: the entries alone.
func (s *Store) ReadLogArea(ctx context.Context, prefixes []string, after syncengine.Position, limit int) ([]syncengine.Entry, syncengine.Position, error) {
	entries, through, err := s.ReadLogAreaMoves(ctx, prefixes, after, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]syncengine.Entry, len(entries))
	for i := range entries {
		out[i] = entries[i].Entry
	}
	return out, through, nil
}

// ReadLogAreaMoves returns, in log order, up to limit entries after position
// after whose change's area code starts with one of prefixes (each up to 12
// digits; "" matches every area), or whose change moved its record out of
// such an area, reading only the log area index of those areas, all in one
// read transaction. An entry is returned once, even when both ends of its
// move are under the prefixes. limit <= 0 means syncengine.DefaultBatchLimit.
// Each entry says where its record came from and whether it moved into the
// prefixes or out of them, so that a pull can send a record that enters a
// scope whole and tell a scope that a record left it.
//
// It also returns the position through which the log has been scanned: every
// matching entry at or before it has been returned. It is the last returned
// entry's position when limit entries were returned, and otherwise the end of
// the log (or after, if that is later), so that a caller can use it as a
// batch's Through even when nothing matched.
//
// It returns an error wrapping syncengine.ErrCompacted if after is before the
// compaction point, and one wrapping ErrInvalidPrefix for a bad prefix.
func (s *Store) ReadLogAreaMoves(ctx context.Context, prefixes []string, after syncengine.Position, limit int) ([]syncengine.AreaEntry, syncengine.Position, error) {
	if limit <= 0 {
		limit = syncengine.DefaultBatchLimit
	}
	prefixes, err := normalizePrefixes(prefixes)
	if err != nil {
		return nil, 0, err
	}
	var out []syncengine.AreaEntry
	var through syncengine.Position
	err = s.view(ctx, func(t *tx) error {
		if cp := t.compacted(); after < cp {
			return fmt.Errorf("boltstore: read log after %d, compacted through %d: %w", after, cp, syncengine.ErrCompacted)
		}
		out, through = nil, max(after, t.logEnd())
		runs := t.areaRuns(prefixes, after)
		for runs.Len() > 0 && len(out) < limit {
			if err := t.check(ctx); err != nil {
				return err
			}
			r := runs.runs[0]
			pos, area, other := r.pos, string(r.area), string(r.other)
			if r.next() {
				heap.Fix(runs, 0)
			} else {
				heap.Pop(runs)
			}
			if n := len(out); n > 0 && out[n-1].Pos == pos {
				continue // the other end of a move, under another prefix
			}
			v := t.log.Get(posKey(pos))
			if v == nil {
				return fmt.Errorf("boltstore: log area index names position %d, which is not in the log: %w", pos, ErrCorrupt)
			}
			c, from, err := t.readEntry(pos, v)
			if err != nil {
				return err
			}
			e := syncengine.AreaEntry{Entry: syncengine.Entry{Pos: pos, Change: c, From: from}}
			if area == c.Area {
				e.Areas = splitAreas([]byte(other))
			} else {
				// The key of an area the record left: the change's own names
				// them all.
				e.Areas = splitAreas(t.logArea.Get(areaPosKey([]byte(c.Area), pos)))
			}
			if len(e.Areas) > 0 {
				wasIn := slices.ContainsFunc(e.Areas, func(a string) bool { return syncengine.InAreas(a, prefixes) })
				switch in := syncengine.InAreas(c.Area, prefixes); {
				case in && !wasIn:
					e.Move = syncengine.MovesIn
				case wasIn && !in:
					e.Move = syncengine.MovesOut
				}
			}
			out = append(out, e)
		}
		if len(out) == limit {
			through = out[len(out)-1].Pos
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, through, nil
}

// normalizePrefixes validates prefixes, sorts them and drops every prefix
// that another one covers, so no area is read twice (syncengine.ParseScope).
func normalizePrefixes(prefixes []string) ([]string, error) {
	s, err := syncengine.ParseScope(prefixes)
	if err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	return s.Prefixes(), nil
}

// areaRun is the part after some position of one area's run of keys in the
// log area index (area code + position), read with its own cursor.
type areaRun struct {
	c     *bbolt.Cursor
	area  []byte
	pos   syncengine.Position
	other []byte // the key's value: the other end of a move, if any
}

// next moves to the run's next key and reports whether there is one.
func (r *areaRun) next() bool {
	return r.set(r.c.Next())
}

func (r *areaRun) set(k, v []byte) bool {
	if len(k) != len(r.area)+posLen || !bytes.HasPrefix(k, r.area) {
		return false
	}
	r.pos = syncengine.Position(binary.BigEndian.Uint64(k[len(r.area):]))
	r.other = v
	return true
}

// runHeap orders area runs by their current position.
type runHeap struct{ runs []*areaRun }

func (h *runHeap) Len() int           { return len(h.runs) }
func (h *runHeap) Less(i, j int) bool { return h.runs[i].pos < h.runs[j].pos }
func (h *runHeap) Swap(i, j int)      { h.runs[i], h.runs[j] = h.runs[j], h.runs[i] }
func (h *runHeap) Push(x any)         { h.runs = append(h.runs, x.(*areaRun)) }
func (h *runHeap) Pop() any {
	r := h.runs[len(h.runs)-1]
	h.runs = h.runs[:len(h.runs)-1]
	return r
}

// areaRuns finds every area under prefixes in the log area index and
// positions a run on each area's first entry after after.
func (t *tx) areaRuns(prefixes []string, after syncengine.Position) *runHeap {
	h := &runHeap{}
	scan := t.logArea.Cursor()
	for _, p := range prefixes {
		for k, _ := scan.Seek([]byte(p)); k != nil && bytes.HasPrefix(k, []byte(p)); {
			if len(k) < posLen {
				k, _ = scan.Next()
				continue
			}
			area := bytes.Clone(k[:len(k)-posLen])
			r := &areaRun{c: t.logArea.Cursor(), area: area}
			if r.set(r.c.Seek(areaPosKey(area, after+1))) {
				h.runs = append(h.runs, r)
			}
			// The next area starts after this one's largest possible key.
			k, _ = scan.Seek(areaPosKey(area, ^syncengine.Position(0)))
			if k != nil && len(k) == len(area)+posLen && bytes.HasPrefix(k, area) {
				k, _ = scan.Next()
			}
		}
	}
	heap.Init(h)
	return h
}

// Compact drops the log entries at or before through (clamped to the end of
// the log), with their log area index keys (every end of a move), in
// transactions of at most compactChunk entries, and records through as the
// compaction point. The dots index is kept, so Seen and MaxCounter are
// unchanged. It returns how many entries it dropped; after an error (ctx
// done, say) the entries dropped so far stay dropped and a later call
// finishes the work.
func (s *Store) Compact(ctx context.Context, through syncengine.Position) (int, error) {
	dropped := 0
	for {
		n := 0
		err := s.update(ctx, func(t *tx) error {
			var err error
			n, err = t.compactChunk(min(through, t.logEnd()))
			return err
		})
		dropped += n
		if err != nil {
			return dropped, fmt.Errorf("boltstore: compact through %d: %w", through, err)
		}
		if n < compactChunk {
			return dropped, nil
		}
	}
}

// compactChunk moves the compaction point to through if that is later, and
// drops up to compactChunk entries at or before the compaction point.
func (t *tx) compactChunk(through syncengine.Position) (int, error) {
	cp := t.compacted()
	if through > cp {
		if err := t.meta.Put(keyCompacted, posKey(through)); err != nil {
			return 0, err
		}
		cp = through
	}
	type entry struct {
		k, area []byte
		pos     syncengine.Position
		record  syncengine.RecordID
		dot     syncengine.Dot
		id      syncengine.ChangeID
	}
	var drop []entry
	c := t.log.Cursor()
	for k, v := c.First(); k != nil && len(drop) < compactChunk; k, v = c.Next() {
		pos := syncengine.Position(binary.BigEndian.Uint64(k))
		if pos > cp {
			break
		}
		ch, err := t.decodeChange(pos, v)
		if err != nil {
			return 0, err
		}
		drop = append(drop, entry{bytes.Clone(k), []byte(ch.Area), pos, ch.RecordID, ch.Dot, ch.ID})
	}
	for _, e := range drop {
		// The record takes back the values it shares with the change.
		if err := t.unshare(e.record, e.dot); err != nil {
			return 0, fmt.Errorf("record %v: %w", e.record, err)
		}
		// The dots index keeps the change's id once the log does not.
		if err := t.dots.Put(dotKey(e.dot), dotValue(e.k, e.id)); err != nil {
			return 0, err
		}
		if err := t.log.Delete(e.k); err != nil {
			return 0, err
		}
		if err := t.logFrom.Delete(e.k); err != nil {
			return 0, err
		}
		if _, err := t.unindexArea(e.area, e.pos); err != nil {
			return 0, err
		}
	}
	return len(drop), nil
}

// CompactAcknowledged compacts the log through the lowest position that every
// registered, non-revoked device has acknowledged (its Cursor.Acked in this
// store), and returns how many entries it dropped. With no such device it
// does nothing: a peer that reads this log must be registered, an upstream
// server included, or its unsent entries could be dropped.
func (s *Store) CompactAcknowledged(ctx context.Context) (int, error) {
	var (
		through syncengine.Position
		peers   int
	)
	err := s.view(ctx, func(t *tx) error {
		through, peers = 0, 0
		return t.forEachDevice(func(d Device) error {
			if d.Revoked {
				return nil
			}
			cur, err := t.Cursor(ctx, d.ID)
			if err != nil {
				return err
			}
			if peers == 0 || cur.Acked < through {
				through = cur.Acked
			}
			peers++
			return nil
		})
	})
	if err != nil || peers == 0 || through == 0 {
		return 0, err
	}
	return s.Compact(ctx, through)
}

// Rejections returns every recorded rejection, ordered by position, then peer.
func (s *Store) Rejections(ctx context.Context) ([]syncengine.Rejection, error) {
	var out []syncengine.Rejection
	err := s.view(ctx, func(t *tx) error {
		out = nil
		return t.rejections.ForEach(func(k, v []byte) error {
			r, err := decodeRejection(k, v)
			out = append(out, r)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b syncengine.Rejection) int {
		return cmp.Or(cmp.Compare(a.Pos, b.Pos), a.Peer.Compare(b.Peer), a.Dot.Compare(b.Dot))
	})
	return out, nil
}

// ChangesAtDots returns, for each of dots the store holds a change for, that
// change's id, from the dots index (which keeps it after compaction) or the
// log. A dot never appended, or indexed before ids were kept (schema 9) and
// compacted away since, is absent from the result. The server uses it to
// tell a retried change (same dot, same id) from a different change reusing
// a dot (a replica restored from an older copy of itself).
func (s *Store) ChangesAtDots(ctx context.Context, dots []syncengine.Dot) (map[syncengine.Dot]syncengine.ChangeID, error) {
	out := make(map[syncengine.Dot]syncengine.ChangeID)
	err := s.view(ctx, func(t *tx) error {
		for _, d := range dots {
			p, id, hasID, ok := dotEntry(t.dots.Get(dotKey(d)))
			if !ok {
				continue
			}
			if hasID {
				out[d] = id
				continue
			}
			v := t.log.Get(p)
			if v == nil {
				continue
			}
			c, err := t.decodeChange(syncengine.Position(binary.BigEndian.Uint64(p)), v)
			if err != nil {
				return err
			}
			out[d] = c.ID
		}
		return nil
	})
	return out, err
}
