package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/klauspost/compress/s2"
	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/moves"
	"github.com/fieldsync/fieldsync/syncengine"
)

var (
	_ syncengine.ReadTx = (*tx)(nil)
	_ syncengine.Tx     = (*tx)(nil)
)

// errTxDone is returned by a tx used after its Update or View call returned.
var errTxDone = errors.New("boltstore: transaction used after it ended")

// tx is a syncengine.Tx over one bbolt transaction, with the store's buckets
// looked up once. It is only valid until end is called, when the function it
// was passed to returns; read-only when btx is.
type tx struct {
	btx  *bbolt.Tx
	done bool

	meta, log, logArea, dots, records, recArea *bbolt.Bucket
	cursors, rejections, devices, devTokens    *bbolt.Bucket
	enrolCodes, origins, audit, auditTime      *bbolt.Bucket
	logFrom                                    *bbolt.Bucket

	// The engine reads a record and then writes it, and asks whether a dot
	// was seen and then appends it; these remember the answers so that the
	// write does not look the same key up again. Only this tx writes them.
	lastRecord struct {
		id     syncengine.RecordID
		area   string
		exists bool
		valid  bool
		rec    syncengine.Record // its state, when Record decoded it
		hasRec bool
		// shared are the changes of the log whose values its stored
		// value shares (syncengine.Record.AppendCompactSharing).
		shared []*syncengine.Change
	}
	unseen  syncengine.Dot // the last dot Seen reported absent, or zero
	scratch []byte         // encoding buffer, reused within the tx

	// dicts are the store's committed log dictionaries; newDict is one
	// this transaction made (published when it commits).
	dicts   *dicts
	newDict struct {
		id uint64
		d  *s2.Dict
	}

	// putFrom is the state record id had before the last PutRecord of it
	// (zero if it was not stored). The engine puts a record's
	// new state and then appends the change that made it (ReceiveBatch,
	// WriteLocalTx): Append files that change under the areas it took the
	// record out of too (movedFrom), so that pulls of those areas see it.
	putFrom struct {
		id    syncengine.RecordID
		rec   syncengine.Record
		valid bool
	}
}

func begin(btx *bbolt.Tx, d *dicts) (*tx, error) {
	t := &tx{btx: btx, dicts: d}
	for _, b := range []struct {
		name []byte
		dst  **bbolt.Bucket
	}{
		{bucketMeta, &t.meta}, {bucketLog, &t.log}, {bucketLogArea, &t.logArea},
		{bucketDots, &t.dots}, {bucketRecords, &t.records}, {bucketRecArea, &t.recArea},
		{bucketCursors, &t.cursors}, {bucketRejections, &t.rejections},
		{bucketDevices, &t.devices}, {bucketDevTokens, &t.devTokens},
		{bucketEnrolCodes, &t.enrolCodes}, {bucketOrigins, &t.origins},
		{bucketAudit, &t.audit}, {bucketAuditTime, &t.auditTime},
		{bucketLogFrom, &t.logFrom},
	} {
		if *b.dst = btx.Bucket(b.name); *b.dst == nil {
			return nil, fmt.Errorf("boltstore: bucket %q missing: %w", b.name, ErrCorrupt)
		}
	}
	if btx.Writable() {
		// Pages split where these leave them. The log, its sources and the
		// dots of each origin take keys in order: full pages. Records take
		// theirs at random (ids are not made in the order they arrive):
		// split in halves, their pages end about 68 % full, against 42 %
		// split at 90 %; the record area index, whose keys run by village,
		// ends 79 % full split at 100 %, 76 % at 90 %, 58 % in halves
		// (measured on the county benchmark).
		t.log.FillPercent = 1.0
		t.dots.FillPercent = 1.0
		t.records.FillPercent = 0.5
		t.logArea.FillPercent = 0.9
		t.recArea.FillPercent = 1.0
		t.logFrom.FillPercent = 1.0
	}
	return t, nil
}

func (t *tx) end() { t.done = true }

// asTx returns in as the store's own transaction type, or an error naming fn
// for a transaction of another store.
func asTx(in syncengine.Tx, fn string) (*tx, error) {
	t, ok := in.(*tx)
	if !ok {
		return nil, fmt.Errorf("boltstore: %s in a %T, not a boltstore transaction", fn, in)
	}
	return t, nil
}

func (t *tx) check(ctx context.Context) error {
	if t.done {
		return errTxDone
	}
	return ctx.Err()
}

// compacted returns the position through which the log was compacted.
func (t *tx) compacted() syncengine.Position {
	if v := t.meta.Get(keyCompacted); len(v) == 8 {
		return syncengine.Position(binary.BigEndian.Uint64(v))
	}
	return 0
}

// logEnd returns the last position assigned, 0 for an empty log.
func (t *tx) logEnd() syncengine.Position { return syncengine.Position(t.log.Sequence()) }

// Record returns the stored state of record id, or the zero Record.
func (t *tx) Record(ctx context.Context, id syncengine.RecordID) (syncengine.Record, error) {
	if err := t.check(ctx); err != nil {
		return syncengine.Record{}, err
	}
	v := t.records.Get(id[:])
	if v == nil {
		t.remember(id, "", false)
		return syncengine.Record{}, nil
	}
	r, shared, err := t.decodeRecord(id, v)
	if err != nil {
		t.lastRecord.valid = false
		return syncengine.Record{}, err
	}
	t.remember(id, r.Area(), true)
	t.lastRecord.rec, t.lastRecord.hasRec, t.lastRecord.shared = r, true, shared
	return r, nil
}

// remember notes that record id is stored in area, or not stored; its state
// is noted apart (lastRecord.rec), known for a record not stored.
func (t *tx) remember(id syncengine.RecordID, area string, exists bool) {
	t.lastRecord.id, t.lastRecord.area, t.lastRecord.exists, t.lastRecord.valid = id, area, exists, true
	t.lastRecord.rec, t.lastRecord.hasRec, t.lastRecord.shared = syncengine.Record{}, !exists, nil
}

// Seen reports whether a change with dot d was ever appended; compaction
// keeps the dots of the changes it drops.
func (t *tx) Seen(ctx context.Context, d syncengine.Dot) (bool, error) {
	if err := t.check(ctx); err != nil {
		return false, err
	}
	if t.dots.Get(dotKey(d)) != nil {
		return true, nil
	}
	t.unseen = d
	return false, nil
}

// MaxCounter returns the highest dot counter of origin ever appended, or 0.
func (t *tx) MaxCounter(ctx context.Context, origin syncengine.ReplicaID) (uint64, error) {
	if err := t.check(ctx); err != nil {
		return 0, err
	}
	end := dotKey(syncengine.Dot{Replica: origin, Counter: ^uint64(0)})
	c := t.dots.Cursor()
	k, _ := c.Seek(end)
	switch {
	case k == nil:
		k, _ = c.Last()
	case !bytes.Equal(k, end):
		k, _ = c.Prev()
	}
	if len(k) != dotLen || !bytes.Equal(k[:idLen], origin[:]) {
		return 0, nil
	}
	return binary.BigEndian.Uint64(k[idLen:]), nil
}

// ReadLog returns up to limit entries after position after. It returns an
// error wrapping syncengine.ErrCompacted if after is before the compaction
// point.
func (t *tx) ReadLog(ctx context.Context, after syncengine.Position, limit int) ([]syncengine.Entry, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	if cp := t.compacted(); after < cp {
		return nil, fmt.Errorf("boltstore: read log after %d, compacted through %d: %w", after, cp, syncengine.ErrCompacted)
	}
	var out []syncengine.Entry
	c := t.log.Cursor()
	for k, v := c.Seek(posKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
		pos := syncengine.Position(binary.BigEndian.Uint64(k))
		ch, from, err := t.readEntry(pos, v)
		if err != nil {
			return nil, err
		}
		out = append(out, syncengine.Entry{Pos: pos, Change: ch, From: from})
	}
	return out, nil
}

// Cursor returns what the store remembers about peer, zero if nothing.
func (t *tx) Cursor(ctx context.Context, peer syncengine.ReplicaID) (syncengine.Cursor, error) {
	if err := t.check(ctx); err != nil {
		return syncengine.Cursor{}, err
	}
	v := t.cursors.Get(peer[:])
	switch len(v) {
	case 0:
		return syncengine.Cursor{}, nil
	case 2 * posLen:
		return syncengine.Cursor{
			Received: syncengine.Position(binary.BigEndian.Uint64(v)),
			Acked:    syncengine.Position(binary.BigEndian.Uint64(v[posLen:])),
		}, nil
	}
	return syncengine.Cursor{}, fmt.Errorf("boltstore: cursor of %v has %d bytes: %w", peer, len(v), ErrCorrupt)
}

// PutRecord stores r, moving its key in the area index if its area changed.
func (t *tx) PutRecord(ctx context.Context, r syncengine.Record) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	id, area := r.ID(), r.Area()
	if !t.lastRecord.valid || t.lastRecord.id != id || !t.lastRecord.hasRec {
		// Not read in this transaction (the engine reads a record before it
		// puts it, so this is rare): read it now, for putFrom and for the
		// values it shares with the log.
		if _, err := t.Record(ctx, id); err != nil {
			return fmt.Errorf("boltstore: record %v: %w", id, err)
		}
	}
	prev := t.lastRecord
	// The writes the new state keeps of changes whose values the stored
	// state shared stay shared; Append shares the new change's.
	v, shared, err := t.sealRecord(r, prev.shared)
	if err != nil {
		return err
	}
	t.putFrom.id, t.putFrom.rec, t.putFrom.valid = id, prev.rec, true
	t.remember(id, area, true)
	t.lastRecord.rec, t.lastRecord.hasRec, t.lastRecord.shared = r, true, shared
	if prev.exists && prev.area != area {
		if err := t.recArea.Delete(areaIDKey([]byte(prev.area), id)); err != nil {
			return err
		}
	}
	if err := t.records.Put(id[:], v); err != nil {
		return fmt.Errorf("boltstore: put record %v: %w", id, err)
	}
	if !prev.exists || prev.area != area {
		return t.recArea.Put(areaIDKey([]byte(area), id), nil)
	}
	return nil
}

var _ syncengine.FromAppender = (*tx)(nil)

// Append is AppendFrom for a change no peer sent: the store's own.
func (t *tx) Append(ctx context.Context, c syncengine.Change) (syncengine.Position, error) {
	return t.AppendFrom(ctx, c, zeroReplica)
}

// AppendFrom adds c, received from peer from (zero: none), at the end of
// the log and indexes its dot and area. When the
// last PutRecord of this transaction was of c's record and found it in
// another area than c.Area, c moves the record: it is filed in the log area
// index under that area too, and under the areas of the existence writes it
// overwrites (see movedFrom). It returns an
// error wrapping syncengine.ErrDotExists if the dot was ever appended before,
// even if compaction has dropped that entry since.
func (t *tx) AppendFrom(ctx context.Context, c syncengine.Change, from syncengine.ReplicaID) (syncengine.Position, error) {
	if err := t.check(ctx); err != nil {
		return 0, err
	}
	dk := dotKey(c.Dot)
	if (c.Dot != t.unseen || c.Dot.IsZero()) && t.dots.Get(dk) != nil {
		return 0, fmt.Errorf("boltstore: append %v: %w", c.Dot, syncengine.ErrDotExists)
	}
	t.unseen = syncengine.Dot{}
	justPut := t.putFrom.valid && t.putFrom.id == c.RecordID
	moved := t.movedFrom(&c)
	v, err := t.sealEntry(&c, from)
	if err != nil {
		return 0, fmt.Errorf("boltstore: append: %w", err)
	}
	seq, err := t.log.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("boltstore: append: %w", err)
	}
	pos := syncengine.Position(seq)
	pk := posKey(pos)
	if err := t.log.Put(pk, v); err != nil {
		return 0, fmt.Errorf("boltstore: append: %w", err)
	}
	if err := t.dots.Put(dk, pk); err != nil {
		return 0, fmt.Errorf("boltstore: append: %w", err)
	}
	if err := t.indexArea(c.Area, moved, pos); err != nil {
		return 0, fmt.Errorf("boltstore: append: %w", err)
	}
	if justPut {
		if err := t.shareWith(&c); err != nil {
			return 0, fmt.Errorf("boltstore: append: %w", err)
		}
	}
	return pos, nil
}

// movedFrom returns the areas c took its record out of (moves.From), from
// the state the PutRecord that preceded c's Append in this transaction
// replaced; nil when there was no such PutRecord of c's record. It consumes
// what PutRecord remembered.
func (t *tx) movedFrom(c *syncengine.Change) []string {
	pf := t.putFrom
	t.putFrom.valid, t.putFrom.rec = false, syncengine.Record{}
	if !pf.valid || pf.id != c.RecordID {
		return nil
	}
	return moves.From(pf.rec, c)
}

// indexArea files the log entry at pos in the log area index: under area,
// the change's own, with the value from (the areas the change took its
// record out of, each of syncengine.AreaLen bytes, empty for most changes),
// and under each of from with the value area. A key's value thus names the
// other end of a move: where the record came from on the key of its new
// area, where it went on the key of an old one.
func (t *tx) indexArea(area string, from []string, pos syncengine.Position) error {
	if err := t.logArea.Put(areaPosKey([]byte(area), pos), []byte(strings.Join(from, ""))); err != nil {
		return err
	}
	for _, f := range from {
		if err := t.logArea.Put(areaPosKey([]byte(f), pos), []byte(area)); err != nil {
			return err
		}
	}
	return nil
}

// unindexArea removes the log area index keys of the entry at pos, whose
// change is in area, and returns the areas it took its record out of.
func (t *tx) unindexArea(area []byte, pos syncengine.Position) ([]string, error) {
	k := areaPosKey(area, pos)
	from := splitAreas(t.logArea.Get(k))
	if err := t.logArea.Delete(k); err != nil {
		return nil, err
	}
	for _, f := range from {
		if err := t.logArea.Delete(areaPosKey([]byte(f), pos)); err != nil {
			return nil, err
		}
	}
	return from, nil
}

// splitAreas splits the value of a log area index key of a change's own area
// into the areas it names (nil for an empty or malformed value).
func splitAreas(v []byte) []string {
	if len(v)%syncengine.AreaLen != 0 {
		return nil
	}
	out := make([]string, 0, len(v)/syncengine.AreaLen)
	for ; len(v) > 0; v = v[syncengine.AreaLen:] {
		out = append(out, string(v[:syncengine.AreaLen]))
	}
	return out
}

// ReplaceChange overwrites the change at pos with c, which must have the same
// dot; otherwise, or if pos holds no entry, it returns an error wrapping
// syncengine.ErrNoEntry.
func (t *tx) ReplaceChange(ctx context.Context, pos syncengine.Position, c syncengine.Change) error {
	pk, prev, err := t.entryAt(ctx, "replace", pos)
	if err != nil {
		return err
	}
	if prev.Dot != c.Dot {
		return fmt.Errorf("boltstore: replace at %d: holds %v, not %v: %w", pos, prev.Dot, c.Dot, syncengine.ErrNoEntry)
	}
	if err := t.unshare(prev.RecordID, prev.Dot); err != nil {
		return fmt.Errorf("boltstore: replace at %d: %w", pos, err)
	}
	v, err := t.resealEntry(pk, &c)
	if err != nil {
		return fmt.Errorf("boltstore: replace at %d: %w", pos, err)
	}
	if err := t.log.Put(pk, v); err != nil {
		return fmt.Errorf("boltstore: replace at %d: %w", pos, err)
	}
	if prev.Area == c.Area {
		return nil
	}
	// The entry keeps the areas it took its record out of, but c's own.
	from, err := t.unindexArea([]byte(prev.Area), pos)
	if err != nil {
		return err
	}
	from = slices.DeleteFunc(from, func(a string) bool { return a == c.Area })
	return t.indexArea(c.Area, from, pos)
}

// entryAt returns the key and the change of the log entry at pos, which
// op (a word for the error) is about to rewrite, or an error wrapping
// syncengine.ErrNoEntry when pos holds none.
func (t *tx) entryAt(ctx context.Context, op string, pos syncengine.Position) ([]byte, syncengine.Change, error) {
	if err := t.check(ctx); err != nil {
		return nil, syncengine.Change{}, err
	}
	pk := posKey(pos)
	v := t.log.Get(pk)
	if v == nil {
		return nil, syncengine.Change{}, fmt.Errorf("boltstore: %s at %d: %w", op, pos, syncengine.ErrNoEntry)
	}
	c, err := t.decodeChange(pos, v)
	return pk, c, err
}

// SetCursor stores what the store remembers about peer.
func (t *tx) SetCursor(ctx context.Context, peer syncengine.ReplicaID, c syncengine.Cursor) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	v := make([]byte, 0, 2*posLen)
	v = binary.BigEndian.AppendUint64(v, uint64(c.Received))
	v = binary.BigEndian.AppendUint64(v, uint64(c.Acked))
	return t.cursors.Put(peer[:], v)
}

var _ syncengine.Renumberer = (*tx)(nil)

// RenumberChange replaces the log entry at pos, whose dot is old, with c,
// the same change under another dot of the same origin, and moves its dot
// index entry (syncengine.Renumber: a township restored from an older copy
// of its store numbers its own unsent changes again).
func (t *tx) RenumberChange(ctx context.Context, pos syncengine.Position, old syncengine.Dot, c syncengine.Change) error {
	pk, prev, err := t.entryAt(ctx, "renumber", pos)
	if err != nil {
		return err
	}
	if prev.Dot != old || c.Dot.Replica != old.Replica || prev.Area != c.Area {
		return fmt.Errorf("boltstore: renumber at %d: holds %v in %s, not %v: %w", pos, prev.Dot, prev.Area, old, syncengine.ErrNoEntry)
	}
	if err := t.unshare(prev.RecordID, old); err != nil {
		return fmt.Errorf("boltstore: renumber at %d: %w", pos, err)
	}
	nv, err := t.resealEntry(pk, &c)
	if err != nil {
		return fmt.Errorf("boltstore: renumber at %d: %w", pos, err)
	}
	if err := t.log.Put(pk, nv); err != nil {
		return err
	}
	if err := t.dots.Delete(dotKey(old)); err != nil {
		return err
	}
	return t.dots.Put(dotKey(c.Dot), pk)
}

// PutRejection records r, replacing any rejection of the same dot by the
// same peer.
//
// The value is the change's position and id, then the outcome byte; with its
// high bit set (rejectionDetailed) a uvarint-prefixed reason and field errors
// (syncengine.AppendFieldErrors) follow, and the detail is the rest. Values
// written before reasons were kept have the outcome alone before the detail.
func (t *tx) PutRejection(ctx context.Context, r syncengine.Rejection) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	k := make([]byte, 0, idLen+dotLen)
	k = append(append(k, r.Peer[:]...), dotKey(r.Dot)...)
	v := make([]byte, 0, posLen+idLen+1+len(r.Detail))
	v = binary.BigEndian.AppendUint64(v, uint64(r.Pos))
	v = append(v, r.ID[:]...)
	v = append(v, byte(r.Outcome)|rejectionDetailed)
	v = binary.AppendUvarint(v, uint64(len(r.Reason)))
	v = append(v, r.Reason...)
	v = syncengine.AppendFieldErrors(v, r.Fields)
	v = append(v, r.Detail...)
	return t.rejections.Put(k, v)
}

// rejectionDetailed marks, in a rejection's outcome byte, a value with a
// reason and field errors.
const rejectionDetailed = 0x80

func decodeRejection(k, v []byte) (syncengine.Rejection, error) {
	bad := fmt.Errorf("boltstore: rejection of %d+%d bytes: %w", len(k), len(v), ErrCorrupt)
	if len(k) != idLen+dotLen || len(v) < posLen+idLen+1 {
		return syncengine.Rejection{}, bad
	}
	var r syncengine.Rejection
	copy(r.Peer[:], k)
	copy(r.Dot.Replica[:], k[idLen:])
	r.Dot.Counter = binary.BigEndian.Uint64(k[idLen+idLen:])
	r.Pos = syncengine.Position(binary.BigEndian.Uint64(v))
	copy(r.ID[:], v[posLen:])
	o := v[posLen+idLen]
	r.Outcome = syncengine.Outcome(o &^ rejectionDetailed)
	rest := v[posLen+idLen+1:]
	if o&rejectionDetailed != 0 {
		n, m := binary.Uvarint(rest)
		if m <= 0 || n > uint64(len(rest)-m) {
			return syncengine.Rejection{}, bad
		}
		r.Reason, rest = string(rest[m:m+int(n)]), rest[m+int(n):]
		var err error
		if r.Fields, rest, err = syncengine.ParseFieldErrors(rest); err != nil {
			return syncengine.Rejection{}, fmt.Errorf("%w: %w", bad, err)
		}
	}
	r.Detail = string(rest)
	return r, nil
}

// RecordsInArea returns the stored states of the records of the given kinds
// whose area code is exactly area (a village's 12 digits), deleted ones
// included, in record-id order. It reads the transaction's own writes.
func (t *tx) RecordsInArea(ctx context.Context, area string, kinds ...syncengine.Kind) ([]syncengine.Record, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	var out []syncengine.Record
	prefix := []byte(area)
	c := t.recArea.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+idLen {
			continue // a longer area code sharing the prefix
		}
		v := t.records.Get(k[len(prefix):])
		if v == nil {
			continue
		}
		r, _, err := t.decodeRecord(syncengine.RecordID(k[len(prefix):]), v)
		if err != nil {
			return nil, fmt.Errorf("boltstore: records of area %s: %w", area, err)
		}
		if slices.Contains(kinds, r.Kind()) {
			out = append(out, r)
		}
	}
	return out, nil
}
