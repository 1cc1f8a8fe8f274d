// Package factstore keeps the indicators' facts (indicators.FactsOf) of a
// server's records in a bbolt file of their own beside the store: a read
// model that catches up from the store's log, in the background and before
// each report, and survives restarts with its log position. The facts are
// filed by the village their unit counts in, so a report reads the facts of
// its villages in key order and never a record; and each village's figures
// as of a day are kept in memory until a change touches the village, so the
// county's indicators as of today cost a walk over the villages.
//
// The file holds, in the bucket "indicators":
//
//	units:   unit key → the place its facts are filed under
//	facts:   place (12 bytes) | len(unit key) | unit key | fact key → value
//	records: record id → the (unit key, fact key) pairs of its facts
//	meta:    "store" → the store's replica id, "version" → Version,
//	         "through" → the log position the facts are in step with
//
// where place is the village, or twelve 0xFF bytes for the units placed in
// none (a unit whose own record is not held, or whose area is not a
// village's). A file of another store or version, ahead of the store's log
// (a store restored from an older copy) or behind its compaction is rebuilt
// from the store's records.
package factstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

var (
	bucketRoot    = []byte("indicators")
	bucketUnits   = []byte("units")
	bucketFacts   = []byte("facts")
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyStore      = []byte("store")
	keyVersion    = []byte("version")
	keyThrough    = []byte("through")
	// nowhere is the place of the units placed in no village.
	nowhere = bytes.Repeat([]byte{0xFF}, 12)
)

// Version is the layout of the file's facts (indicators.FactsOf's encoding
// included): a file of another version is rebuilt.
const Version = 1

// File is the model's file in a server's data directory.
const File = "indicators.db"

// catchUpBatch is how many log entries one catch-up transaction takes.
const catchUpBatch = 5000

// Model is the indicators' read model of one store.
type Model struct {
	store *boltstore.Store
	db    *bbolt.DB

	catching sync.Mutex // one catch-up at a time

	mu       sync.Mutex
	versions map[string]uint64 // village ("" for none) → changes applied
	changes  uint64            // villages touched, over all applies
	warmed   struct {
		key     string
		changes uint64
	}
	cache map[string]map[string]cached // part key → village → part
	keys  []string                     // part keys cached, oldest first
}

type cached struct {
	version uint64
	part    *indicators.Part
}

// maxDays is how many days (part keys) of village figures are kept.
const maxDays = 4

// Open opens the model of store in the file at path, creating it, and
// rebuilding it from the store's records when it is not of that store, of
// another version, ahead of the store's log or behind its compaction; then
// catches up with the log.
func Open(ctx context.Context, store *boltstore.Store, path string) (*Model, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("factstore: open %s: %w", path, err)
	}
	m := &Model{store: store, db: db, versions: map[string]uint64{}, cache: map[string]map[string]cached{}}
	if err := m.check(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := m.CatchUp(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return m, nil
}

// Close closes the model's file.
func (m *Model) Close() error { return m.db.Close() }

// check rebuilds the file when it is not in step with the store's log.
func (m *Model) check(ctx context.Context) error {
	end, err := m.store.LogEnd(ctx)
	if err != nil {
		return err
	}
	compacted, err := m.store.Compacted(ctx)
	if err != nil {
		return err
	}
	replica := m.store.Replica()
	ok := false
	if err := m.db.View(func(btx *bbolt.Tx) error {
		through, good := m.through(btx)
		ok = good && bytes.Equal(btx.Bucket(bucketRoot).Bucket(bucketMeta).Get(keyStore), replica[:]) && through <= end && through >= compacted
		return nil
	}); err != nil {
		return err
	}
	if ok {
		return nil
	}
	return m.rebuild(ctx, end)
}

// through returns the log position the file is in step with, false for a
// file without one or of another version.
func (m *Model) through(btx *bbolt.Tx) (syncengine.Position, bool) {
	root := btx.Bucket(bucketRoot)
	if root == nil {
		return 0, false
	}
	meta := root.Bucket(bucketMeta)
	if meta == nil || !bytes.Equal(meta.Get(keyVersion), u64(Version)) {
		return 0, false
	}
	v := meta.Get(keyThrough)
	if len(v) != 8 {
		return 0, false
	}
	return syncengine.Position(binary.BigEndian.Uint64(v)), true
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// rebuild files the facts of every record of the store afresh, in step with
// the log through end (read before the records: a change after it is taken
// again by the next catch-up).
func (m *Model) rebuild(ctx context.Context, end syncengine.Position) error {
	err := m.db.Update(func(btx *bbolt.Tx) error {
		if btx.Bucket(bucketRoot) != nil {
			if err := btx.DeleteBucket(bucketRoot); err != nil {
				return err
			}
		}
		root, err := btx.CreateBucket(bucketRoot)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketUnits, bucketFacts, bucketRecords, bucketMeta} {
			if _, err := root.CreateBucket(name); err != nil {
				return err
			}
		}
		replica := m.store.Replica()
		return root.Bucket(bucketMeta).Put(keyStore, replica[:])
	})
	if err != nil {
		return fmt.Errorf("factstore: rebuild: %w", err)
	}
	var token []byte
	for {
		page, err := m.store.Snapshot(ctx, "", token, catchUpBatch)
		if err != nil {
			return fmt.Errorf("factstore: rebuild: %w", err)
		}
		recs := make([]state, len(page.Records))
		for i, r := range page.Records {
			recs[i] = state{r.ID(), r}
		}
		if err := m.apply(recs, 0, false); err != nil {
			return fmt.Errorf("factstore: rebuild: %w", err)
		}
		if page.Next == nil {
			break
		}
		token = page.Next
	}
	return m.db.Update(func(btx *bbolt.Tx) error {
		meta := btx.Bucket(bucketRoot).Bucket(bucketMeta)
		if err := meta.Put(keyVersion, u64(Version)); err != nil {
			return err
		}
		return meta.Put(keyThrough, u64(uint64(end)))
	})
}

// CatchUp files the facts of the records changed in the store's log since
// the file's position, as they are now, in transactions of catchUpBatch log
// entries; a log compacted meanwhile past that position rebuilds the file.
func (m *Model) CatchUp(ctx context.Context) error {
	m.catching.Lock()
	defer m.catching.Unlock()
	for {
		var through syncengine.Position
		if err := m.db.View(func(btx *bbolt.Tx) error {
			through, _ = m.through(btx)
			return nil
		}); err != nil {
			return err
		}
		var recs []state
		var last syncengine.Position
		more := false
		err := m.store.View(ctx, func(tx syncengine.ReadTx) error {
			entries, err := tx.ReadLog(ctx, through, catchUpBatch)
			if err != nil {
				return err
			}
			more = len(entries) == catchUpBatch
			seen := map[syncengine.RecordID]bool{}
			for _, e := range entries {
				last = e.Pos
				if seen[e.Change.RecordID] {
					continue
				}
				seen[e.Change.RecordID] = true
				r, err := tx.Record(ctx, e.Change.RecordID)
				if err != nil {
					return err
				}
				recs = append(recs, state{e.Change.RecordID, r})
			}
			return nil
		})
		if errors.Is(err, syncengine.ErrCompacted) {
			end, err := m.store.LogEnd(ctx)
			if err != nil {
				return err
			}
			if err := m.rebuild(ctx, end); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("factstore: catch up: %w", err)
		}
		if last == 0 {
			return nil
		}
		if err := m.apply(recs, last, true); err != nil {
			return fmt.Errorf("factstore: catch up: %w", err)
		}
		if !more {
			return nil
		}
	}
}

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

// Warm computes the parts of the report o asks for that are not kept (those
// of the villages changed since), so that the next report with the same day
// and options finds them all; it does nothing when nothing changed since it
// last warmed the same.
func (m *Model) Warm(ctx context.Context, o indicators.Options) error {
	if err := m.CatchUp(ctx); err != nil {
		return err
	}
	key := fmt.Sprintf("%s|%s|%s|%+v", o.Area, survey.FormatDate(survey.Today(o.AsOf)), survey.FormatDate(survey.Today(o.HealthCheckFrom)), o.Rules)
	m.mu.Lock()
	changes := m.changes
	done := m.warmed.key == key && m.warmed.changes == changes
	m.mu.Unlock()
	if done {
		return nil
	}
	if _, err := m.Compute(ctx, o, nil); err != nil {
		return err
	}
	m.mu.Lock()
	m.warmed.key, m.warmed.changes = key, changes
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

// Compute computes the report o asks for from the facts, with the devices of
// the server's registry. Figures of villages nothing touched since they were
// computed for the same day and options are not computed again.
func (m *Model) Compute(ctx context.Context, o indicators.Options, devices []indicators.Device) (indicators.Report, error) {
	if err := m.CatchUp(ctx); err != nil {
		return indicators.Report{}, err
	}
	m.mu.Lock()
	versions := make(map[string]uint64, len(m.versions))
	for k, v := range m.versions {
		versions[k] = v
	}
	m.mu.Unlock()
	// One read transaction per worker, all begun while no catch-up can
	// commit, so that they read the same facts.
	workers := min(runtime.GOMAXPROCS(0), 4)
	var srcs []indicators.Source
	m.catching.Lock()
	for range workers {
		btx, err := m.db.Begin(false)
		if err != nil {
			m.catching.Unlock()
			return indicators.Report{}, err
		}
		defer func() { _ = btx.Rollback() }()
		b := btx.Bucket(bucketRoot)
		srcs = append(srcs, &source{units: b.Bucket(bucketUnits), facts: b.Bucket(bucketFacts)})
	}
	m.catching.Unlock()
	return indicators.Compute(srcs[0], o, devices, &cacheView{m, versions}, srcs[1:]...)
}

// cacheView is the cache as of the versions read before a report's
// transaction began: a part computed from that transaction is kept under
// those versions, so a change committed meanwhile makes it stale.
type cacheView struct {
	m        *Model
	versions map[string]uint64
}

func (c *cacheView) Part(village, key string, compute func() (*indicators.Part, error)) (*indicators.Part, error) {
	m, version := c.m, c.versions[village]
	m.mu.Lock()
	e, ok := m.cache[key][village]
	m.mu.Unlock()
	if ok && e.version == version {
		return e.part, nil
	}
	p, err := compute()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	byVillage := m.cache[key]
	if byVillage == nil {
		byVillage = map[string]cached{}
		m.cache[key] = byVillage
		m.keys = append(m.keys, key)
		if len(m.keys) > maxDays {
			delete(m.cache, m.keys[0])
			m.keys = m.keys[1:]
		}
	}
	if e, ok := byVillage[village]; !ok || e.version <= version {
		byVillage[village] = cached{version, p}
	}
	return p, nil
}

// source is an indicators.Source over the buckets in one read transaction.
type source struct {
	units, facts *bbolt.Bucket
	unit         indicators.Unit // reused from unit to unit
}

func (s *source) Villages(prefix string) ([]string, error) {
	if s.facts == nil {
		return nil, nil
	}
	var out []string
	c := s.facts.Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && len(k) >= 12 && bytes.HasPrefix(k, []byte(prefix)); {
		v := k[:12]
		if bytes.Equal(v, nowhere) {
			break
		}
		out = append(out, string(v))
		k, _ = c.Seek(append(bytes.Clone(v), 0xFF))
	}
	return out, nil
}

func (s *source) Village(village string, fn func(indicators.Unit) error) error {
	return s.walk([]byte(village), fn)
}

func (s *source) Orphans(fn func(indicators.Unit) error) error { return s.walk(nowhere, fn) }

// walk calls fn with each unit filed under place.
func (s *source) walk(place []byte, fn func(indicators.Unit) error) error {
	if s.facts == nil {
		return nil
	}
	u := &s.unit
	flush := func() error {
		if u.Key == nil {
			return nil
		}
		err := fn(*u)
		u.Key, u.Own, u.Facts = nil, nil, u.Facts[:0]
		return err
	}
	c := s.facts.Cursor()
	for k, v := c.Seek(place); k != nil && bytes.HasPrefix(k, place); k, v = c.Next() {
		if len(k) < 14 || len(k) < 13+int(k[12]) {
			return fmt.Errorf("factstore: fact key %x: %w", k, boltstore.ErrCorrupt)
		}
		n := int(k[12])
		unit, key := k[13:13+n], k[13+n:]
		if !bytes.Equal(unit, u.Key) {
			if err := flush(); err != nil {
				return err
			}
			u.Key = unit
		}
		if len(key) == 1 && key[0] == 0 {
			u.Own = v
		} else if len(key) > 0 {
			u.Facts = append(u.Facts, indicators.KV{Key: key, Value: v})
		}
	}
	return flush()
}

func (s *source) Own(unit string) ([]byte, error) {
	if s.units == nil || !unitFits(unit) {
		return nil, nil
	}
	place := s.units.Get([]byte(unit)) // nowhere for a unit of no village
	if len(place) != 12 {
		return nil, nil
	}
	return s.facts.Get(factKey(place, unit, ownKey)), nil
}
