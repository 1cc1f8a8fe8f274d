package boltstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// schemaVersion is the schema this build writes and reads. A change of layout
// bumps it and adds the step from the previous version to upgrades.
//
//   - 2: the enrolcodes bucket (enrolment codes survive a restart).
//   - 3: a log entry whose change moved its record to another area is also
//     filed under the area it left, and the values of the log area index
//     name the other end of such a move. A version 2 file is a valid version
//     3 file (its entries predate the moves index and are read as no moves),
//     so the upgrade only records the version; the bump keeps older builds,
//     whose Check and Compact do not know the second key, from opening it.
//   - 4: the origins bucket (which relay may push a replica's changes).
//   - 5: the audit and audittime buckets (the audit trail of admin actions).
//   - 6: the staff bucket (who may sign in to the web page).
//   - 7: the devicereports bucket (the registries townships report).
//   - 8: the logfrom bucket (the peer each received change came from, so
//     that no peer is sent back what it sent).
//   - 9: a dots index value holds the change id after the position, and a
//     rejection its reason and field errors. Version 8 values read as
//     before (no id, no reason), so the upgrade only records the version;
//     the bump keeps older builds, which refuse the longer values, from
//     opening it.
//   - 10: a record's state is stored in the compact encoding, sharing the
//     values of the changes the log holds (syncengine.Record.
//     AppendCompactSharing; see "Records share their values with the log"
//     in the package documentation). States of version 9 read as before and
//     are stored compactly when their record next changes. A log entry
//     holds the peer its change came from and is packed with S2 and a
//     dictionary made from the log (logvalue.go); a dots index value holds
//     the change id only once compaction has dropped the entry. Entries of
//     version 9 read as before (their peer in logfrom). The bump keeps
//     older builds, which know none of it, from opening the file.
const schemaVersion = 10

// upgrades migrate a store from the version of the key to the next one, in
// the transaction given.
var upgrades = map[uint64]func(*bbolt.Tx) error{
	1: func(btx *bbolt.Tx) error {
		_, err := btx.CreateBucketIfNotExists(bucketEnrolCodes)
		return err
	},
	2: func(*bbolt.Tx) error { return nil },
	3: func(btx *bbolt.Tx) error {
		_, err := btx.CreateBucketIfNotExists(bucketOrigins)
		return err
	},
	4: func(btx *bbolt.Tx) error {
		if _, err := btx.CreateBucketIfNotExists(bucketAudit); err != nil {
			return err
		}
		_, err := btx.CreateBucketIfNotExists(bucketAuditTime)
		return err
	},
	5: createMissingBuckets,
	6: createMissingBuckets,
	7: createMissingBuckets,
	8: func(*bbolt.Tx) error { return nil },
	9: func(*bbolt.Tx) error { return nil },
}

// createMissingBuckets creates every bucket of this build that the store
// lacks. A step that only adds buckets uses it, so it is right whatever
// order two such bumps land in, and whichever of them a store already took.
func createMissingBuckets(btx *bbolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := btx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// damaged returns the error for a damaged store file.
func damaged(path, format string, args ...any) error {
	return fmt.Errorf("boltstore: %s: %w (%s): %s", path, ErrCorrupt, fmt.Sprintf(format, args...), restoreAdvice)
}

// foreign returns the error for a file that is not a fieldsync store.
func foreign(path, format string, args ...any) error {
	return fmt.Errorf("boltstore: %s: %w (%s): %s", path, ErrNotStore, fmt.Sprintf(format, args...), restoreAdvice)
}

// protect runs fn, turning a panic or a memory fault (bbolt reading a damaged
// page, or past the end of a shortened file) into an error wrapping ErrCorrupt.
func protect(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, "%v", r)
		}
	}()
	return fn()
}

// createIfEmpty creates a new store at path if no file is there or the file
// is empty. The store is written to a temporary file beside path, synced and
// then linked (or, over an empty file, renamed) into place, so a crash during
// creation never leaves a half-initialised store behind.
func createIfEmpty(path string, o *Options) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("boltstore: open %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("boltstore: open %s: not a regular file", path)
	case fi.Size() > 0:
		return nil
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("boltstore: create %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful link or rename, a no-op or harmless
	if err := f.Close(); err != nil {
		return fmt.Errorf("boltstore: create %s: %w", path, err)
	}
	if err := initialize(tmp, o); err != nil {
		return fmt.Errorf("boltstore: create %s: %w", path, err)
	}
	if fi == nil {
		err = os.Link(tmp, path)
	} else {
		err = os.Rename(tmp, path)
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("boltstore: create %s: %w", path, err)
	}
	return syncDir(dir)
}

// initialize writes a new, empty store of the current schema into the empty
// file at path.
func initialize(path string, o *Options) error {
	db, err := bbolt.Open(path, 0o600, o.bolt(false))
	if err != nil {
		return err
	}
	replica := o.Replica
	if replica.IsZero() {
		if _, err := rand.Read(replica[:]); err != nil {
			_ = db.Close()
			return err
		}
	}
	err = db.Update(func(btx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := btx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := btx.Bucket(bucketMeta)
		if err := meta.Put(keySchema, u64(schemaVersion)); err != nil {
			return err
		}
		return meta.Put(keyReplica, replica[:])
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("boltstore: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("boltstore: sync %s: %w", dir, err)
	}
	return nil
}

// bbolt's file format, as far as precheck reads it: a page header of 16
// bytes, then on pages 0 and 1 the meta (magic, version, page size, flags,
// root bucket page and sequence, freelist page, high-water page id, txid,
// checksum), in the machine's byte order.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltMetaOffset = 16
	boltMetaSize   = 64
	boltNoFreelist = ^uint64(0)
)

type boltMeta struct {
	magic, version, pageSize   uint32
	root, freelist, pgid, txid uint64
	valid                      bool
	// damagedPage, in the meta precheck returns, is the meta page (0 or 1)
	// that does not validate, or -1.
	damagedPage int
}

func parseMeta(b []byte) boltMeta {
	if len(b) < boltMetaOffset+boltMetaSize {
		return boltMeta{}
	}
	m := b[boltMetaOffset : boltMetaOffset+boltMetaSize]
	ne := binary.NativeEndian
	bm := boltMeta{
		magic: ne.Uint32(m[0:]), version: ne.Uint32(m[4:]), pageSize: ne.Uint32(m[8:]),
		root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:]),
	}
	h := fnv.New64a()
	h.Write(m[:56])
	bm.valid = bm.magic == boltMagic && bm.version == boltVersion && h.Sum64() == ne.Uint64(m[56:])
	return bm
}

// precheck reads the meta pages of the bbolt file at path and refuses, before
// bbolt maps it, a file that is not a bbolt file, whose meta pages are both
// damaged, or that is shorter than its meta says (a truncated copy, which
// bbolt would map and fault on). It returns the meta bbolt will open the file
// at, with the meta page that is damaged, if one is.
func precheck(path string) (boltMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return boltMeta{}, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return boltMeta{}, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	size := fi.Size()
	buf := make([]byte, 4096)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return boltMeta{}, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	metas := []boltMeta{parseMeta(buf[:n])}
	// The second meta page is one page in; try every page size bbolt allows.
	for ps := int64(1024); ps <= 1<<24 && ps+boltMetaOffset+boltMetaSize <= size; ps <<= 1 {
		if n, err := f.ReadAt(buf[:boltMetaOffset+boltMetaSize], ps); err == nil || n == boltMetaOffset+boltMetaSize {
			if m := parseMeta(buf[:n]); m.valid && int64(m.pageSize) == ps {
				metas = append(metas, m)
			}
		}
	}
	var best boltMeta
	for _, m := range metas {
		if m.valid && (!best.valid || m.txid > best.txid) {
			best = m
		}
	}
	if err := checkMeta(path, best, metas[0].magic == boltMagic, size); err != nil {
		return boltMeta{}, err
	}
	// bbolt opens a file whose newer meta page is damaged at the older one
	// without a word. That is right after a commit torn by a power cut (it
	// was never acknowledged), and wrong after damage to a page that held a
	// commit: the caller tells them apart by the last commit recorded beside
	// the store.
	best.damagedPage = -1
	for page := range 2 {
		n, err := f.ReadAt(buf[:boltMetaOffset+boltMetaSize], int64(page)*int64(best.pageSize))
		if m := parseMeta(buf[:n]); (err != nil && n < boltMetaOffset+boltMetaSize) || !m.valid {
			best.damagedPage = page
		}
	}
	return best, nil
}

func checkMeta(path string, m boltMeta, magic bool, size int64) error {
	switch {
	case !m.valid && magic:
		return damaged(path, "both bbolt meta pages are invalid")
	case !m.valid:
		return foreign(path, "not a bbolt database")
	case m.pageSize < 512 || m.pageSize&(m.pageSize-1) != 0:
		return damaged(path, "page size %d", m.pageSize)
	case m.root >= m.pgid || (m.freelist >= m.pgid && m.freelist != boltNoFreelist):
		return damaged(path, "meta page points past the high-water mark")
	case uint64(size) < m.pgid*uint64(m.pageSize):
		// bbolt grows the file, synced, before it commits a meta page that
		// uses the new pages, so a shorter file lost its end.
		return damaged(path, "truncated: %d bytes, the data needs %d", size, m.pgid*uint64(m.pageSize))
	}
	return nil
}

// inspect opens the file read-only and, under protect, checks its schema and
// reads every page, so that bbolt's open for writing, which rebuilds the
// freelist by walking the pages on a goroutine no recover can guard, only
// walks pages that are known to be sound. It returns the schema version,
// the replica id and the file's transaction id base (keyTxidBase).
func inspect(path string, o *Options) (have uint64, replica syncengine.ReplicaID, base uint64, err error) {
	db, err := openBolt(path, o, true)
	if err != nil {
		return 0, replica, 0, err
	}
	err = protect(path, func() error {
		return db.View(func(btx *bbolt.Tx) error {
			v, err := checkSchema(btx, path)
			if err != nil {
				return err
			}
			have = v
			copy(replica[:], btx.Bucket(bucketMeta).Get(keyReplica))
			if b := btx.Bucket(bucketMeta).Get(keyTxidBase); len(b) == 8 {
				base = binary.BigEndian.Uint64(b)
			}
			_, err = readAllPages(context.Background(), btx)
			return err
		})
	})
	if cerr := protect(path, db.Close); err == nil {
		err = cerr
	}
	return have, replica, base, err
}

// openBolt opens the checked file with bbolt, closing the file again if bbolt
// panics on it.
func openBolt(path string, o *Options, readOnly bool) (*bbolt.DB, error) {
	var file *os.File
	bo := o.bolt(readOnly)
	bo.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	var db *bbolt.DB
	err := protect(path, func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, bo)
		return err
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, ErrCorrupt):
		if file != nil {
			_ = file.Close() // releases the lock; bbolt's mapping is lost
		}
		return nil, err
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("boltstore: open %s: %w (waited %v for its lock)", path, ErrLocked, o.Timeout)
	case errors.Is(err, bbolt.ErrInvalid), errors.Is(err, bbolt.ErrChecksum),
		errors.Is(err, bbolt.ErrVersionMismatch), errors.Is(err, bbolt.ErrInvalidMapping):
		return nil, damaged(path, "%v", err)
	}
	return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
}

// checkSchema reads the schema version and refuses a store from a newer
// build or one without this build's buckets. It returns the version found.
func checkSchema(btx *bbolt.Tx, path string) (uint64, error) {
	meta := btx.Bucket(bucketMeta)
	if meta == nil {
		return 0, foreign(path, "a bbolt database without fieldsync's meta bucket")
	}
	v := meta.Get(keySchema)
	if len(v) != 8 {
		return 0, damaged(path, "no schema version")
	}
	have := binary.BigEndian.Uint64(v)
	if have > schemaVersion {
		return 0, fmt.Errorf("boltstore: open %s: %w: schema version %d, this build knows up to %d: upgrade fieldsync before opening this store", path, ErrNewerSchema, have, schemaVersion)
	}
	if len(meta.Get(keyReplica)) != len(syncengine.ReplicaID{}) {
		return 0, damaged(path, "no replica id")
	}
	if have == schemaVersion {
		for _, name := range allBuckets {
			if btx.Bucket(name) == nil {
				return 0, damaged(path, "bucket %q missing", name)
			}
		}
	}
	return have, nil
}

// migrate checks the schema and applies the upgrades the store needs, all in
// one transaction.
func migrate(btx *bbolt.Tx, path string) error {
	have, err := checkSchema(btx, path)
	if err != nil {
		return err
	}
	for v := have; v < schemaVersion; v++ {
		up, ok := upgrades[v]
		if !ok {
			return damaged(path, "schema version %d cannot be upgraded", have)
		}
		if err := up(btx); err != nil {
			return fmt.Errorf("boltstore: open %s: upgrade schema %d: %w", path, v, err)
		}
	}
	if have < schemaVersion {
		return btx.Bucket(bucketMeta).Put(keySchema, u64(schemaVersion))
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// readAllPages reads every key and value of every bucket, so that a damaged
// page faults or panics now, under protect, rather than in a later request.
// It returns a checksum of what it read, which callers ignore.
func readAllPages(ctx context.Context, btx *bbolt.Tx) (uint32, error) {
	var sum uint32
	var walk func(b *bbolt.Bucket) error
	walk = func(b *bbolt.Bucket) error {
		c := b.Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			sum = crc32.Update(sum, castagnoli, k)
			if v == nil {
				if child := b.Bucket(k); child != nil {
					if err := walk(child); err != nil {
						return err
					}
				}
				continue
			}
			sum = crc32.Update(sum, castagnoli, v)
		}
		return nil
	}
	err := btx.ForEach(func(name []byte, b *bbolt.Bucket) error { return walk(b) })
	return sum, err
}
