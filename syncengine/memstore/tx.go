package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync/syncengine"
)

// tx is a transaction: reads fall through to the committed state, writes go to
// an overlay that commit copies into it. It is only valid inside the Update or
// View call that made it.
type tx struct {
	base     *state
	writable bool
	done     bool

	records    map[syncengine.RecordID][]byte
	appended   [][]byte
	replaced   map[syncengine.Position][]byte
	byDot      map[syncengine.Dot]syncengine.Position
	maxCounter map[syncengine.ReplicaID]uint64
	cursors    map[syncengine.ReplicaID]syncengine.Cursor
	rejections map[rejectionKey]syncengine.Rejection
	from       map[syncengine.Position]syncengine.ReplicaID
	meta       map[string][]byte
}

func newTx(base *state, writable bool) *tx {
	t := &tx{base: base, writable: writable}
	if writable {
		t.records = make(map[syncengine.RecordID][]byte)
		t.replaced = make(map[syncengine.Position][]byte)
		t.byDot = make(map[syncengine.Dot]syncengine.Position)
		t.maxCounter = make(map[syncengine.ReplicaID]uint64)
		t.cursors = make(map[syncengine.ReplicaID]syncengine.Cursor)
		t.rejections = make(map[rejectionKey]syncengine.Rejection)
		t.from = make(map[syncengine.Position]syncengine.ReplicaID)
		t.meta = make(map[string][]byte)
	}
	return t
}

func (t *tx) close() { t.done = true }

func (t *tx) check(ctx context.Context, write bool) error {
	switch {
	case t.done:
		return fmt.Errorf("memstore: transaction used after it ended")
	case write && !t.writable:
		return fmt.Errorf("memstore: write in read-only transaction")
	}
	return ctx.Err()
}

func (t *tx) commit() {
	b := t.base
	for pos, from := range t.from {
		b.from[pos] = from
	}
	for id, r := range t.records {
		b.records[id] = r
	}
	for pos, c := range t.replaced {
		b.log[pos-1] = c
	}
	b.log = append(b.log, t.appended...)
	for d, p := range t.byDot {
		b.byDot[d] = p
	}
	for r, n := range t.maxCounter {
		b.maxCounter[r] = n
	}
	for p, c := range t.cursors {
		b.cursors[p] = c
	}
	for k, r := range t.rejections {
		b.rejections[k] = r
	}
	for k, v := range t.meta {
		b.meta[k] = v
	}
}

func (t *tx) Meta(ctx context.Context, key string) ([]byte, error) {
	if err := t.check(ctx, false); err != nil {
		return nil, err
	}
	v, ok := t.meta[key]
	if !ok {
		v = t.base.meta[key]
	}
	return slices.Clone(v), nil
}

func (t *tx) SetMeta(ctx context.Context, key string, value []byte) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	if key == "" || strings.ContainsRune(key, 0) {
		return fmt.Errorf("memstore: meta key %q", key)
	}
	t.meta[key] = append([]byte{}, value...)
	return nil
}

func (t *tx) Record(ctx context.Context, id syncengine.RecordID) (syncengine.Record, error) {
	if err := t.check(ctx, false); err != nil {
		return syncengine.Record{}, err
	}
	b, ok := t.records[id]
	if !ok {
		b, ok = t.base.records[id]
	}
	if !ok {
		return syncengine.Record{}, nil
	}
	return mustRecord(b), nil
}

// RecordsInArea scans every record: the reference store keeps no area index.
func (t *tx) RecordsInArea(ctx context.Context, area string, kinds ...syncengine.Kind) ([]syncengine.Record, error) {
	if err := t.check(ctx, false); err != nil {
		return nil, err
	}
	ids := make(map[syncengine.RecordID]bool)
	for id := range t.base.records {
		ids[id] = true
	}
	for id := range t.records {
		ids[id] = true
	}
	var out []syncengine.Record
	for _, id := range slices.SortedFunc(maps.Keys(ids), syncengine.RecordID.Compare) {
		r, _ := t.Record(ctx, id)
		if r.Area() == area && slices.Contains(kinds, r.Kind()) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (t *tx) position(d syncengine.Dot) (syncengine.Position, bool) {
	if p, ok := t.byDot[d]; ok {
		return p, true
	}
	p, ok := t.base.byDot[d]
	return p, ok
}

func (t *tx) Seen(ctx context.Context, d syncengine.Dot) (bool, error) {
	if err := t.check(ctx, false); err != nil {
		return false, err
	}
	_, ok := t.position(d)
	return ok, nil
}

func (t *tx) MaxCounter(ctx context.Context, origin syncengine.ReplicaID) (uint64, error) {
	if err := t.check(ctx, false); err != nil {
		return 0, err
	}
	if n, ok := t.maxCounter[origin]; ok {
		return n, nil
	}
	return t.base.maxCounter[origin], nil
}

// entry returns the encoded change at pos (1-based), seeing the overlay.
func (t *tx) entry(pos syncengine.Position) ([]byte, bool) {
	if b, ok := t.replaced[pos]; ok {
		return b, true
	}
	n := syncengine.Position(len(t.base.log))
	switch {
	case pos == 0:
		return nil, false
	case pos <= n:
		return t.base.log[pos-1], true
	case pos-n <= syncengine.Position(len(t.appended)):
		return t.appended[pos-n-1], true
	}
	return nil, false
}

func (t *tx) ReadLog(ctx context.Context, after syncengine.Position, limit int) ([]syncengine.Entry, error) {
	if err := t.check(ctx, false); err != nil {
		return nil, err
	}
	var out []syncengine.Entry
	for pos := after + 1; len(out) < limit; pos++ {
		b, ok := t.entry(pos)
		if !ok {
			break
		}
		from, ok := t.from[pos]
		if !ok {
			from = t.base.from[pos]
		}
		out = append(out, syncengine.Entry{Pos: pos, Change: mustChange(b), From: from})
	}
	return out, nil
}

func (t *tx) Cursor(ctx context.Context, peer syncengine.ReplicaID) (syncengine.Cursor, error) {
	if err := t.check(ctx, false); err != nil {
		return syncengine.Cursor{}, err
	}
	if c, ok := t.cursors[peer]; ok {
		return c, nil
	}
	return t.base.cursors[peer], nil
}

func (t *tx) PutRecord(ctx context.Context, r syncengine.Record) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	b, err := r.MarshalBinary()
	if err != nil {
		return err
	}
	t.records[r.ID()] = b
	return nil
}

func (t *tx) Append(ctx context.Context, c syncengine.Change) (syncengine.Position, error) {
	if err := t.check(ctx, true); err != nil {
		return 0, err
	}
	if _, ok := t.position(c.Dot); ok {
		return 0, fmt.Errorf("memstore: append %v: %w", c.Dot, syncengine.ErrDotExists)
	}
	b, err := c.MarshalBinary()
	if err != nil {
		return 0, fmt.Errorf("memstore: append: %w", err)
	}
	t.appended = append(t.appended, b)
	pos := syncengine.Position(len(t.base.log) + len(t.appended))
	t.byDot[c.Dot] = pos
	if n, _ := t.MaxCounter(ctx, c.Origin); c.Dot.Counter > n {
		t.maxCounter[c.Origin] = c.Dot.Counter
	}
	return pos, nil
}

// NoteFrom records the peer the change at pos came from.
func (t *tx) NoteFrom(ctx context.Context, pos syncengine.Position, from syncengine.ReplicaID) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	t.from[pos] = from
	return nil
}

func (t *tx) ReplaceChange(ctx context.Context, pos syncengine.Position, c syncengine.Change) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	old, ok := t.entry(pos)
	if !ok || mustChange(old).Dot != c.Dot {
		return fmt.Errorf("memstore: replace at %d: %w", pos, syncengine.ErrNoEntry)
	}
	b, err := c.MarshalBinary()
	if err != nil {
		return fmt.Errorf("memstore: replace: %w", err)
	}
	if n := syncengine.Position(len(t.base.log)); pos > n {
		t.appended[pos-n-1] = b
	} else {
		t.replaced[pos] = b
	}
	return nil
}

func (t *tx) SetCursor(ctx context.Context, peer syncengine.ReplicaID, c syncengine.Cursor) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	t.cursors[peer] = c
	return nil
}

func (t *tx) PutRejection(ctx context.Context, r syncengine.Rejection) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	r.Fields = slices.Clone(r.Fields)
	t.rejections[rejectionKey{r.Peer, r.Dot}] = r
	return nil
}
