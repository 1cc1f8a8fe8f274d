package factstore

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// ConditionsRecorded is when a person's conditions were last written (the
// stamp of the winning write of Person.conditions), zero for another record:
// what indicators.FactsOf wants.
func ConditionsRecorded(r syncengine.Record) time.Time {
	if fieldsyncv1.RecordKind(r.Kind()) != fieldsyncv1.RecordKind_RECORD_KIND_PERSON {
		return time.Time{}
	}
	ws := r.Writes(personConditions)
	if len(ws) == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ws[0].Stamp.WallMS)
}

// personConditions is the field number of Person.conditions.
var personConditions = int32((&fieldsyncv1.Person{}).ProtoReflect().Descriptor().Fields().ByName("conditions").Number())

// counted are the kinds of record the indicators read.
var counted = func() map[syncengine.Kind]bool {
	m := map[syncengine.Kind]bool{}
	for _, k := range []fieldsyncv1.RecordKind{
		fieldsyncv1.RecordKind_RECORD_KIND_PERSON, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD,
		fieldsyncv1.RecordKind_RECORD_KIND_CLINIC, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT,
		fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP,
		fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM, fieldsyncv1.RecordKind_RECORD_KIND_RISK_FLAG,
	} {
		m[syncengine.Kind(k)] = true
	}
	return m
}()

// factsOf are the facts of a record state; none for a record not held,
// deleted, of a kind not counted or that does not decode (the server keeps
// such a record, but no indicator can read it).
func factsOf(r syncengine.Record) []indicators.Fact {
	if !r.Exists() || !counted[r.Kind()] {
		return nil
	}
	rec, err := wire.FromState(r)
	if err != nil {
		return nil
	}
	return indicators.FactsOf(rec, ConditionsRecorded(r))
}

// state is a record's state, zero when the store holds none.
type state struct {
	id syncengine.RecordID
	r  syncengine.Record
}

// apply files the facts of records' states in place of those they had, in
// one transaction, and notes the villages touched, whose figures are
// computed again; with setThrough, the file is then in step with the log
// through through.
func (m *Model) apply(recs []state, through syncengine.Position, setThrough bool) error {
	type prepared struct {
		id    syncengine.RecordID
		facts []indicators.Fact
	}
	// Decoded outside the file's write transaction.
	prep := make([]prepared, 0, len(recs))
	for _, r := range recs {
		prep = append(prep, prepared{r.id, factsOf(r.r)})
	}
	dirty := map[string]bool{}
	err := m.db.Update(func(btx *bbolt.Tx) error {
		root := btx.Bucket(bucketRoot)
		w := &writer{units: root.Bucket(bucketUnits), facts: root.Bucket(bucketFacts), records: root.Bucket(bucketRecords), dirty: dirty}
		for _, p := range prep {
			if err := w.record(p.id, p.facts); err != nil {
				return err
			}
		}
		if setThrough {
			return root.Bucket(bucketMeta).Put(keyThrough, u64(uint64(through)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	for v := range dirty {
		m.versions[v]++
		m.changes++
	}
	m.mu.Unlock()
	return nil
}

// writer files facts in one transaction.
type writer struct {
	units, facts, records *bbolt.Bucket
	dirty                 map[string]bool
}

// record files a record's facts in place of those it had.
func (w *writer) record(id syncengine.RecordID, newFacts []indicators.Fact) error {
	var oldFacts []indicators.Fact
	for _, k := range decodeKeys(w.records.Get(id[:])) {
		v := w.facts.Get(factKey(w.where(k[0]), k[0], k[1]))
		if v == nil && k[1] != ownKey {
			continue // filed nowhere any more
		}
		oldFacts = append(oldFacts, indicators.Fact{Unit: k[0], Key: k[1], Value: v})
	}
	if len(oldFacts) == 0 && len(newFacts) == 0 {
		return nil
	}
	// A unit's own record first: it says where the unit's facts live.
	for _, f := range newFacts {
		if f.Own() {
			if err := w.place(f.Unit, []byte(indicators.Placement(f.Area)), true); err != nil {
				return err
			}
		}
	}
	for _, f := range oldFacts {
		if f.Own() && !slices.ContainsFunc(newFacts, func(n indicators.Fact) bool { return n.Own() && n.Unit == f.Unit }) {
			if err := w.place(f.Unit, nil, false); err != nil {
				return err
			}
			if err := w.household(f); err != nil {
				return err
			}
		}
	}
	for _, f := range oldFacts {
		if !slices.ContainsFunc(newFacts, func(n indicators.Fact) bool { return n.Unit == f.Unit && n.Key == f.Key }) {
			if err := w.del(f); err != nil {
				return err
			}
		}
	}
	var keys [][2]string
	for _, f := range newFacts {
		if !unitFits(f.Unit) {
			continue
		}
		keys = append(keys, [2]string{f.Unit, f.Key})
		i := slices.IndexFunc(oldFacts, func(o indicators.Fact) bool { return o.Unit == f.Unit && o.Key == f.Key })
		if i >= 0 && bytes.Equal(oldFacts[i].Value, f.Value) {
			continue
		}
		if err := w.put(f); err != nil {
			return err
		}
		if err := w.household(f); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return w.records.Delete(id[:])
	}
	return w.records.Put(id[:], encodeKeys(keys))
}

// ownKey is a unit's own fact's key.
const ownKey = "\x00"

func encodeKeys(keys [][2]string) []byte {
	var b []byte
	for _, k := range keys {
		for _, s := range k {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

func decodeKeys(b []byte) [][2]string {
	var out [][2]string
	for len(b) > 0 {
		var k [2]string
		for i := range k {
			n, w := binary.Uvarint(b)
			if w <= 0 || n > uint64(len(b)-w) {
				return out
			}
			k[i], b = string(b[w:w+int(n)]), b[w+int(n):]
		}
		out = append(out, k)
	}
	return out
}

// where returns the place of a unit's facts: units holds it for a unit
// whose own record is held (nowhere for one not of a village), none for
// another.
func (w *writer) where(unit string) []byte {
	if p := w.units.Get([]byte(unit)); len(p) == 12 {
		return p
	}
	return nowhere
}

// touch notes that a place's figures changed.
func (w *writer) touch(place []byte) {
	if bytes.Equal(place, nowhere) {
		w.dirty[""] = true
		return
	}
	w.dirty[string(place)] = true
}

func factKey(place []byte, unit, key string) []byte {
	k := make([]byte, 0, 12+1+len(unit)+len(key))
	k = append(k, place...)
	k = append(k, byte(len(unit)))
	k = append(k, unit...)
	return append(k, key...)
}

// unitFits reports whether a unit key can be filed (its length in a byte).
func unitFits(unit string) bool { return len(unit) > 0 && len(unit) < 256 }

// place files a unit's facts under village (or nowhere, when village is not
// a village's code), moving those filed elsewhere; held says whether the
// unit's own record is held.
func (w *writer) place(unit string, village []byte, held bool) error {
	if !unitFits(unit) {
		return nil
	}
	to := nowhere
	if held && len(village) == 12 {
		to = village
	}
	from := w.where(unit)
	if !bytes.Equal(from, to) {
		prefix := factKey(from, unit, "")
		var moved [][2][]byte
		c := w.facts.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			moved = append(moved, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		}
		for _, kv := range moved {
			if err := w.facts.Delete(kv[0]); err != nil {
				return err
			}
			if err := w.facts.Put(append(bytes.Clone(to), kv[0][12:]...), kv[1]); err != nil {
				return err
			}
		}
		if len(moved) > 0 {
			w.touch(from)
		}
		w.touch(to)
	}
	if !held {
		return w.units.Delete([]byte(unit))
	}
	if !bytes.Equal(w.units.Get([]byte(unit)), to) {
		return w.units.Put([]byte(unit), to)
	}
	return nil
}

func (w *writer) put(f indicators.Fact) error {
	if !unitFits(f.Unit) {
		return nil
	}
	p := w.where(f.Unit)
	w.touch(p)
	return w.facts.Put(factKey(p, f.Unit, f.Key), f.Value)
}

func (w *writer) del(f indicators.Fact) error {
	if !unitFits(f.Unit) {
		return nil
	}
	p := w.where(f.Unit)
	w.touch(p)
	return w.facts.Delete(factKey(p, f.Unit, f.Key))
}

// household notes, when f is a household's own fact, the places of its
// members, who count differently when it changes, and the units placed in no
// village, whose flags may count where it is.
func (w *writer) household(f indicators.Fact) error {
	if !f.Own() || !strings.HasPrefix(f.Unit, "h") {
		return nil
	}
	w.touch(nowhere)
	return w.touchMembers(f.Unit)
}

// touchMembers notes the places of a household's members.
func (w *writer) touchMembers(household string) error {
	prefix := factKey(w.where(household), household, "")
	c := w.facts.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		f := indicators.Fact{Unit: household, Key: string(k[len(prefix):])}
		if person, ok := f.Member(); ok {
			w.touch(w.where(person))
		}
	}
	return nil
}
