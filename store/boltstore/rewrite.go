package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/klauspost/compress/s2"
	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// rewriteBatch is how many keys a transaction of RewriteTo writes.
const rewriteBatch = 20_000

// RewriteTo writes the store, as of one read transaction, into a new file at
// dst in this build's layout, with every page filled: the log entries
// packed with a dictionary made from the whole log, the records in the
// keyed compact encoding sharing the values of the changes the log holds,
// the source of each received change in its entry. It is how a file of an
// older schema, or one whose pages random writes left part empty, is made
// small (fieldsyncd rewrite): a store only ever reuses its free pages, it
// never gives them back. Positions, dots, cursors, sequences and every
// other key are kept, so devices and the indicators' model see the same
// store. dst must not exist; it is removed again if the rewrite fails.
func (s *Store) RewriteTo(ctx context.Context, dst string) (err error) {
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("boltstore: rewrite to %s: the file exists (%v)", dst, err)
	}
	o := (&Options{}).withDefaults()
	db, err := bbolt.Open(dst, 0o600, o.bolt(false))
	if err != nil {
		return fmt.Errorf("boltstore: rewrite to %s: %w", dst, err)
	}
	// The file grows by what each commit needs, not by bbolt's 16 MiB
	// steps: the copy is written once, and its size is what it takes.
	db.AllocSize = 1 << 20
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	err = s.db.View(func(sbtx *bbolt.Tx) error {
		src, err := begin(sbtx, &s.dicts)
		if err != nil {
			return err
		}
		defer src.end()
		w := &rewriter{ctx: ctx, src: src, db: db, txidBase: s.txidBase + uint64(sbtx.ID())}
		for _, step := range []func() error{w.meta, w.log, w.dots, w.records, w.rest, w.flush} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: rewrite to %s: %w", dst, err)
	}
	return nil
}

// rewriter writes the copy of RewriteTo in transactions of rewriteBatch
// keys, each bucket's keys in order, so every page is filled.
type rewriter struct {
	ctx  context.Context
	src  *tx
	db   *bbolt.DB
	btx  *bbolt.Tx
	n    int
	dict *s2.Dict
	// txidBase is the source's last transaction: the copy's count on.
	txidBase uint64
}

// put writes k and v into bucket of the copy, committing every rewriteBatch
// keys.
func (w *rewriter) put(bucket, k, v []byte) error {
	if w.btx == nil {
		btx, err := w.db.Begin(true)
		if err != nil {
			return err
		}
		w.btx = btx
		for _, name := range allBuckets {
			if _, err := btx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
	}
	b := w.btx.Bucket(bucket)
	b.FillPercent = 1.0
	if err := b.Put(k, v); err != nil {
		return err
	}
	if w.n++; w.n >= rewriteBatch {
		return w.flush()
	}
	return nil
}

// flush commits what put wrote.
func (w *rewriter) flush() error {
	if w.btx == nil {
		return w.ctx.Err()
	}
	err := w.btx.Commit()
	w.btx, w.n = nil, 0
	if err != nil {
		return err
	}
	return w.ctx.Err()
}

// meta copies the meta bucket (less the old dictionaries) and writes a
// dictionary made from the whole log, which every entry of the copy uses.
func (w *rewriter) meta() error {
	c := w.src.meta.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if bytes.Equal(k, keyDictCurrent) || bytes.HasPrefix(k, prefixDict) || bytes.Equal(k, keyTxidBase) {
			continue
		}
		if bytes.Equal(k, keySchema) {
			v = u64(schemaVersion)
		}
		if err := w.put(bucketMeta, k, v); err != nil {
			return err
		}
	}
	if err := w.put(bucketMeta, keyTxidBase, u64(w.txidBase)); err != nil {
		return err
	}
	sample, err := w.src.dictSample()
	if err != nil {
		return err
	}
	if w.dict = s2.MakeDictManual(sample, 0); w.dict == nil {
		return nil // too short a log to make one of
	}
	if err := w.put(bucketMeta, dictKey(1), w.dict.Bytes()); err != nil {
		return err
	}
	return w.put(bucketMeta, keyDictCurrent, u64(1))
}

// log copies the log, each entry packed with the copy's dictionary and
// holding the peer it came from.
func (w *rewriter) log() error {
	id := uint64(0)
	if w.dict != nil {
		id = 1
	}
	c := w.src.log.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		body, err := w.src.entryBody(k, v)
		if err != nil {
			return fmt.Errorf("log entry %x: %w", k, err)
		}
		if err := w.put(bucketLog, k, packEntry(id, w.dict, body)); err != nil {
			return err
		}
	}
	return nil
}

// dots copies the dots index: the position alone while the log holds the
// change, the change's id after it once it does not.
func (w *rewriter) dots() error {
	c := w.src.dots.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		pk, _, _, ok := dotEntry(v)
		if !ok {
			return fmt.Errorf("dot index entry %x → %x: %w", k, v, ErrCorrupt)
		}
		if w.src.log.Get(pk) != nil {
			v = pk
		}
		if err := w.put(bucketDots, k, v); err != nil {
			return err
		}
	}
	return nil
}

// records copies the records' states, each sharing the values of the
// changes the log holds that made its writes.
func (w *rewriter) records() error {
	c := w.src.records.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != idLen {
			return fmt.Errorf("record key %x: %w", k, ErrCorrupt)
		}
		r, _, err := w.src.decodeRecord(syncengine.RecordID(k), v)
		if err != nil {
			return err
		}
		var shared []*syncengine.Change
		for _, d := range r.WriteDots() {
			ch, ok, err := w.src.heldChange(d)
			if err != nil {
				return err
			}
			if ok {
				shared = append(shared, ch)
			}
		}
		if err := w.put(bucketRecords, k, r.AppendCompactKeyed(nil, shared)); err != nil {
			return err
		}
	}
	return nil
}

// rest copies every other bucket as it is (logfrom, whose peers the
// entries now hold, is left empty) and every bucket's sequence.
func (w *rewriter) rest() error {
	done := [][]byte{bucketMeta, bucketLog, bucketDots, bucketRecords, bucketLogFrom}
	for _, name := range allBuckets {
		src := w.src.btx.Bucket(name)
		if !slices.ContainsFunc(done, func(n []byte) bool { return bytes.Equal(n, name) }) {
			c := src.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if v == nil && src.Bucket(k) != nil {
					return fmt.Errorf("bucket %s holds a bucket %x: %w", name, k, ErrCorrupt)
				}
				if err := w.put(name, k, v); err != nil {
					return err
				}
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
		err := w.db.Update(func(btx *bbolt.Tx) error {
			b, err := btx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			return b.SetSequence(src.Sequence())
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// RewriteSuffix and BeforeRewriteSuffix name, beside a store's file, the
// copy Rewrite writes and the file it replaced, which it keeps.
const (
	RewriteSuffix       = ".rewrite"
	BeforeRewriteSuffix = ".before-rewrite"
)

// RewriteReport is what Rewrite did.
type RewriteReport struct {
	// Before and After are the sizes of the file before and after.
	Before, After int64
	// Kept is where the file as it was is kept.
	Kept string
	// Buckets is what each bucket of the new file takes.
	Buckets []BucketUsage
}

// Rewrite rewrites the store at path (RewriteTo) and puts the copy in its
// place once it has opened and checked it, keeping the file it replaces at
// path+BeforeRewriteSuffix for the operator to remove once the server runs
// on the copy. The kept file is the store as it was, upgraded to this
// build's schema (an older build cannot open it); once the server has
// committed on the copy, putting it back is a rollback that Open refuses
// like any older copy. The store must not be in use (ErrLocked otherwise).
// A crash at any point leaves a store that opens: the file as it was until
// the copy is in place, then the copy.
func Rewrite(ctx context.Context, path string, opts *Options) (RewriteReport, error) {
	kept := path + BeforeRewriteSuffix
	if _, err := os.Lstat(kept); !errors.Is(err, fs.ErrNotExist) {
		return RewriteReport{}, fmt.Errorf("boltstore: rewrite %s: %s is there from an earlier rewrite: remove it (or move it away) first", path, kept)
	}
	s, err := Open(path, opts)
	if err != nil {
		return RewriteReport{}, err
	}
	defer s.Close() // the file as it was, which the copy replaces
	tmp := path + RewriteSuffix
	for _, f := range []string{tmp, tmp + TxidFile} { // a crashed rewrite's
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return RewriteReport{}, fmt.Errorf("boltstore: rewrite %s: %w", path, err)
		}
	}
	if err := s.RewriteTo(ctx, tmp); err != nil {
		return RewriteReport{}, err
	}
	buckets, err := checkCopy(ctx, tmp)
	if err == nil {
		err = os.Link(path, kept)
	}
	// The copy's transactions count on from the file's (keyTxidBase), so
	// the record of the last commit (TxidFile) holds for both.
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		_ = os.Remove(tmp + TxidFile)
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return RewriteReport{}, fmt.Errorf("boltstore: rewrite %s: %w", path, err)
	}
	rep := RewriteReport{Kept: kept, Buckets: buckets}
	if fi, err := os.Stat(kept); err == nil {
		rep.Before = fi.Size()
	}
	if fi, err := os.Stat(path); err == nil {
		rep.After = fi.Size()
	}
	return rep, nil
}

// checkCopy opens the copy at path, checks it, and returns what each of its
// buckets takes.
func checkCopy(ctx context.Context, path string) ([]BucketUsage, error) {
	c, err := Open(path, nil)
	if err != nil {
		return nil, err
	}
	err = c.Check(ctx)
	var buckets []BucketUsage
	if err == nil {
		buckets, err = c.Usage()
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return buckets, err
}
