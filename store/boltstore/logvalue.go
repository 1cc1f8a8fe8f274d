package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/fieldsync/fieldsync/syncengine"
)

// A log entry's value is, since schema 10, the packed entry:
//
//	entryPacked, uvarint dictionary id (0: none), then an S2 block of:
//	  the peer the change came from (16 bytes, zero for the store's own
//	  changes and those no peer sent), then the change's binary encoding.
//
// The dictionary is made from the store's own log once it holds dictAfter
// entries (dictionaryFrom) and kept in the meta bucket under its id; every
// entry appended after it uses it. Entries repeat one another (the areas,
// the peers and origins, the field numbers and much of the values), so an
// S2 block with a dictionary of entries spread over the log takes about
// 70 % of the bytes, at about 2.5 µs an entry, where zstd with a dictionary,
// which takes 62 %, costs 22 µs (the county benchmark's changes, one core;
// a dictionary of the last entries alone, 83 %).
//
// In files of schema 9 it is an area envelope (the area's length, 12, and
// its digits) and then the change's binary encoding; the peer is in the
// logfrom bucket.
const entryPacked = 0x80

const (
	// dictAfter is how many entries the log holds before a dictionary is
	// made from them.
	dictAfter = 4096
	// dictSize is the most bytes of entries a dictionary holds (S2's
	// limit is 64 KiB).
	dictSize = 60 << 10
	// dictEntries is about how many entries a dictionary holds (of some
	// 430 bytes each on the county benchmark).
	dictEntries = 140
	// maxEntrySize bounds what a packed entry may decode to, so that a
	// damaged length cannot ask for a huge allocation.
	maxEntrySize = 64 << 20
)

var (
	keyDictCurrent = []byte("dict")     // the id of the dictionary new entries use
	prefixDict     = []byte("dict/")    // + 8-byte id → the dictionary's bytes
	zeroReplica    syncengine.ReplicaID // no peer
)

func dictKey(id uint64) []byte { return append(append([]byte{}, prefixDict...), u64(id)...) }

// dicts holds the dictionaries of a store's log entries that transactions
// have found committed, by id. A dictionary is never changed once
// committed; one made by a transaction that has not committed is that
// transaction's own (tx.newDict).
type dicts struct{ m sync.Map }

func (d *dicts) get(id uint64) *s2.Dict {
	if v, ok := d.m.Load(id); ok {
		return v.(*s2.Dict)
	}
	return nil
}

// dict returns dictionary id of the store, or an error for one the store
// lacks.
func (t *tx) dict(id uint64) (*s2.Dict, error) {
	if t.newDict.d != nil && t.newDict.id == id {
		return t.newDict.d, nil
	}
	if d := t.dicts.get(id); d != nil {
		return d, nil
	}
	b := t.meta.Get(dictKey(id))
	if b == nil {
		return nil, fmt.Errorf("log dictionary %d missing: %w", id, ErrCorrupt)
	}
	d := s2.NewDict(bytes.Clone(b)) // b is bbolt's, valid in this transaction only
	if d == nil {
		return nil, fmt.Errorf("log dictionary %d of %d bytes: %w", id, len(b), ErrCorrupt)
	}
	if !t.btx.Writable() || t.newDict.id != id {
		// Only a transaction's own new dictionary is uncommitted.
		t.dicts.m.Store(id, d)
	}
	return d, nil
}

// packingDict returns the dictionary new entries use and its id, making
// one when the log has grown enough; (0, nil) while there is none.
func (t *tx) packingDict() (uint64, *s2.Dict, error) {
	if t.newDict.d != nil {
		return t.newDict.id, t.newDict.d, nil
	}
	if v := t.meta.Get(keyDictCurrent); len(v) == 8 {
		id := binary.BigEndian.Uint64(v)
		d, err := t.dict(id)
		return id, d, err
	}
	if t.log.Sequence() < dictAfter {
		return 0, nil, nil
	}
	return t.makeDict(1)
}

// makeDict makes dictionary id from entries spread over the log (every
// stride-th, from the last; a run of the last ones would be of one village
// and kind) and makes it the one new entries use.
func (t *tx) makeDict(id uint64) (uint64, *s2.Dict, error) {
	sample, err := t.dictSample()
	if err != nil {
		return 0, nil, err
	}
	d := s2.MakeDictManual(sample, 0)
	if d == nil {
		return 0, nil, nil // too little to make one of: try again later
	}
	if err := t.meta.Put(dictKey(id), d.Bytes()); err != nil {
		return 0, nil, err
	}
	if err := t.meta.Put(keyDictCurrent, u64(id)); err != nil {
		return 0, nil, err
	}
	t.newDict.id, t.newDict.d = id, d
	return id, d, nil
}

// dictSample returns up to dictSize bytes of the bodies of entries spread
// over the log, to make a dictionary of.
func (t *tx) dictSample() ([]byte, error) {
	var sample []byte
	stride := max(1, int(t.log.Sequence())/dictEntries)
	c := t.log.Cursor()
	i := 0
	for k, v := c.Last(); k != nil && len(sample) < dictSize; k, v = c.Prev() {
		if i++; (i-1)%stride != 0 {
			continue
		}
		body, err := t.entryBody(k, v)
		if err != nil {
			return nil, err
		}
		sample = append(sample, body...)
	}
	return sample[:min(len(sample), dictSize)], nil
}

// sealEntry encodes change c, received from peer from (zero: none), as a
// log value: the packed entry.
func (t *tx) sealEntry(c *syncengine.Change, from syncengine.ReplicaID) ([]byte, error) {
	id, d, err := t.packingDict()
	if err != nil {
		return nil, err
	}
	plain := append(t.scratch[:0], from[:]...)
	if plain, err = c.AppendBinary(plain); err != nil {
		return nil, err
	}
	t.scratch = plain
	if len(plain) > maxEntrySize {
		return nil, fmt.Errorf("change of %d bytes: more than a log entry holds (%d)", len(plain), maxEntrySize)
	}
	return packEntry(id, d, plain), nil
}

// packEntry returns a new packed log value of body plain (the peer, then
// the change's encoding) with dictionary id, d (none for id 0).
func packEntry(id uint64, d *s2.Dict, plain []byte) []byte {
	v := make([]byte, 0, 1+binary.MaxVarintLen64+s2.MaxEncodedLen(len(plain)))
	v = binary.AppendUvarint(append(v, entryPacked), id)
	n := len(v)
	var block []byte
	if d != nil {
		block = d.Encode(v[n:cap(v)], plain)
	} else {
		block = s2.Encode(v[n:cap(v)], plain)
	}
	return v[:n+len(block)]
}

// entryBody returns the packed body of the log entry at key k with value v
// (the peer's 16 bytes, then the change's encoding), decoding a packed
// entry, or reading the peer of an entry of schema 9 from the logfrom
// bucket.
func (t *tx) entryBody(k, v []byte) ([]byte, error) {
	if len(v) == 0 || v[0] != entryPacked {
		_, rest, err := openEnvelope(v)
		if err != nil {
			return nil, err
		}
		body := make([]byte, idLen, idLen+len(rest))
		copy(body, t.logFrom.Get(k))
		return append(body, rest...), nil
	}
	return unpackEntry(v, t.dict)
}

// unpackEntry decodes a packed log entry v into its body, with the
// dictionary dictOf gives for the entry's id. A damaged entry is an error
// wrapping ErrCorrupt, never a panic or an allocation beyond maxEntrySize.
func unpackEntry(v []byte, dictOf func(uint64) (*s2.Dict, error)) ([]byte, error) {
	if len(v) == 0 || v[0] != entryPacked {
		return nil, fmt.Errorf("log entry not packed: %w", ErrCorrupt)
	}
	id, n := binary.Uvarint(v[1:])
	if n <= 0 {
		return nil, fmt.Errorf("packed log entry without a dictionary id: %w", ErrCorrupt)
	}
	block := v[1+n:]
	size, err := s2.DecodedLen(block)
	if err != nil || size > maxEntrySize || size < idLen {
		return nil, fmt.Errorf("packed log entry of %d bytes (%v): %w", size, err, ErrCorrupt)
	}
	var body []byte
	if id == 0 {
		body, err = s2.Decode(nil, block)
	} else {
		var d *s2.Dict
		if d, err = dictOf(id); err == nil {
			body, err = d.Decode(nil, block)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("packed log entry: %w: %w", err, ErrCorrupt)
	}
	return body, nil
}

// readEntry decodes the log entry at position pos with value v: the change
// and the peer it came from (zero for none).
func (t *tx) readEntry(pos syncengine.Position, v []byte) (syncengine.Change, syncengine.ReplicaID, error) {
	var (
		c    syncengine.Change
		from syncengine.ReplicaID
	)
	body, err := t.entryBody(posKey(pos), v)
	if err == nil {
		copy(from[:], body)
		err = c.UnmarshalBinary(body[idLen:])
	}
	if err != nil {
		return syncengine.Change{}, zeroReplica, fmt.Errorf("boltstore: log entry %d: %w", pos, err)
	}
	return c, from, nil
}

// decodeChange decodes the change of the log entry at pos with value v.
func (t *tx) decodeChange(pos syncengine.Position, v []byte) (syncengine.Change, error) {
	c, _, err := t.readEntry(pos, v)
	return c, err
}

// resealEntry encodes c as the new value of the log entry at key pk,
// keeping the peer the entry's change came from.
func (t *tx) resealEntry(pk []byte, c *syncengine.Change) ([]byte, error) {
	body, err := t.entryBody(pk, t.log.Get(pk))
	if err != nil {
		return nil, err
	}
	var from syncengine.ReplicaID
	copy(from[:], body)
	return t.sealEntry(c, from)
}

// NoteFrom records the peer the change at pos came from: a pull or relay
// push leaves it out for that peer. The engine appends a received change
// with AppendFrom, which keeps the peer in the entry; NoteFrom writes the
// entry again with it (or, for an entry of schema 9, in the logfrom
// bucket).
func (t *tx) NoteFrom(ctx context.Context, pos syncengine.Position, from syncengine.ReplicaID) error {
	pk, c, err := t.entryAt(ctx, "note the source of the change", pos)
	if err != nil {
		return err
	}
	if v := t.log.Get(pk); len(v) > 0 && v[0] != entryPacked {
		return t.logFrom.Put(pk, from[:])
	}
	v, err := t.sealEntry(&c, from)
	if err != nil {
		return err
	}
	return t.log.Put(pk, v)
}
