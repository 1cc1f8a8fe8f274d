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
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
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
