package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Records share their values with the log: see the package documentation.

// A records value is the state in syncengine's keyed compact encoding
// (AppendCompactKeyed: its first byte is 3), or, in files of schema 9, an
// area envelope (its first byte the area's length, 12) and the state's
// first encoding.
const recordKeyed = 3

// recordBody returns the encoded state of a records value.
func recordBody(v []byte) ([]byte, error) {
	if len(v) > 0 && v[0] == recordKeyed {
		return v, nil
	}
	_, body, err := openEnvelope(v)
	return body, err
}

// decodeRecord decodes the stored state v of record id, reading the values
// it shares with the log from there, and returns the changes it shares
// them with.
func (t *tx) decodeRecord(id syncengine.RecordID, v []byte) (syncengine.Record, []*syncengine.Change, error) {
	var (
		r      syncengine.Record
		shared []*syncengine.Change
	)
	b, err := recordBody(v)
	if err == nil {
		err = r.UnmarshalCompactKeyed(b, id, func(d syncengine.Dot) (*syncengine.Change, error) {
			c, err := t.loggedChange(d)
			if err == nil {
				shared = append(shared, c)
			}
			return c, err
		})
	}
	if err == nil && r.ID() != id {
		err = fmt.Errorf("state of record %v", r.ID())
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w: %w", err, ErrCorrupt)
		}
		return syncengine.Record{}, nil, fmt.Errorf("boltstore: stored record %v: %w", id, err)
	}
	return r, shared, nil
}

// loggedChange returns the change of dot d from the log, or an error
// wrapping ErrCorrupt when the log does not hold it: a record shares only
// the values of changes the log holds (compaction and the rewriting of an
// entry give the record its values back first).
func (t *tx) loggedChange(d syncengine.Dot) (*syncengine.Change, error) {
	c, ok, err := t.heldChange(d)
	if err == nil && !ok {
		err = fmt.Errorf("change %v not in the log: %w", d, ErrCorrupt)
	}
	return c, err
}

// heldChange returns the change of dot d if the log holds it (false if the
// dots index does not name it or compaction dropped its entry).
func (t *tx) heldChange(d syncengine.Dot) (*syncengine.Change, bool, error) {
	pk, _, _, ok := dotEntry(t.dots.Get(dotKey(d)))
	if !ok {
		return nil, false, nil
	}
	v := t.log.Get(pk)
	if v == nil {
		return nil, false, nil
	}
	c, err := t.decodeChange(syncengine.Position(binary.BigEndian.Uint64(pk)), v)
	if err != nil {
		return nil, false, err
	}
	return &c, true, nil
}

// sealRecord encodes r for the records bucket, sharing the values of the
// changes of shared that made its writes (see AppendCompactSharing), and
// returns the value and the changes it shares.
func (t *tx) sealRecord(r syncengine.Record, shared []*syncengine.Change) ([]byte, []*syncengine.Change, error) {
	t.scratch = r.AppendCompactKeyed(t.scratch[:0], shared)
	v := slices.Clone(t.scratch) // bbolt keeps the value until the commit
	if len(shared) == 0 {
		return v, nil, nil
	}
	dots, err := syncengine.CompactSharedDots(v)
	if err != nil {
		return nil, nil, err
	}
	kept := make([]*syncengine.Change, 0, len(dots))
	for _, c := range shared {
		if slices.Contains(dots, c.Dot) {
			kept = append(kept, c)
		}
	}
	return v, kept, nil
}

// shareWith stores again the state of c's record the PutRecord before c's
// Append stored, sharing the values of c, now in the log, with it: the
// values a change wrote are kept once, in the log, for as long as the log
// holds the change.
func (t *tx) shareWith(c *syncengine.Change) error {
	lr := &t.lastRecord
	if !lr.valid || lr.id != c.RecordID || !lr.hasRec || !lr.exists {
		return nil
	}
	v, shared, err := t.sealRecord(lr.rec, append(slices.Clip(lr.shared), c))
	if err != nil || len(shared) == len(lr.shared) {
		return err // c's values not in the state: nothing to share
	}
	if err := t.records.Put(c.RecordID[:], v); err != nil {
		return err
	}
	lr.shared = shared
	return nil
}

// unshare gives record id back the values it shares with the change of dot
// d, before that change's log entry is dropped or rewritten.
func (t *tx) unshare(id syncengine.RecordID, d syncengine.Dot) error {
	v := t.records.Get(id[:])
	if v == nil {
		return nil
	}
	body, err := recordBody(v)
	if err != nil {
		return err
	}
	dots, err := syncengine.CompactSharedDots(body)
	if err != nil || !slices.Contains(dots, d) {
		return err
	}
	r, shared, err := t.decodeRecord(id, v)
	if err != nil {
		return err
	}
	nv, _, err := t.sealRecord(r, slices.DeleteFunc(shared, func(c *syncengine.Change) bool { return c.Dot == d }))
	if err != nil {
		return err
	}
	if t.lastRecord.id == id {
		t.lastRecord.valid = false
	}
	return t.records.Put(id[:], nv)
}
