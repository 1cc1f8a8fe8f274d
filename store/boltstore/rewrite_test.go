package boltstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// storeContents is what a store holds, read back through the store (the
// log from its compaction point, each record's state, each dot's change id)
// and, for the buckets kept as they are, byte for byte; with every
// bucket's sequence.
func storeContents(t *testing.T, path string) string {
	t.Helper()
	var out bytes.Buffer
	var ids []syncengine.RecordID
	var dots []syncengine.Dot
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			fmt.Fprintf(&out, "bucket %s sequence %d\n", name, b.Sequence())
			return b.ForEach(func(k, v []byte) error {
				switch string(name) {
				case "records":
					ids = append(ids, syncengine.RecordID(k))
				case "dots":
					dots = append(dots, syncengine.Dot{Replica: syncengine.ReplicaID(k[:16]), Counter: binaryUint(k[16:])})
				case "log", "logfrom":
				case "meta":
					if !bytes.HasPrefix(k, []byte("dict")) && string(k) != "schema" && string(k) != "txidbase" {
						fmt.Fprintf(&out, "meta %q=%x\n", k, v)
					}
				default:
					fmt.Fprintf(&out, "%s %x=%x\n", name, k, v)
				}
				return nil
			})
		})
	})
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cp, err := s.Compacted(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range readLog(t, s, cp) {
		b, _ := e.Change.MarshalBinary()
		fmt.Fprintf(&out, "entry %d from %v: %x\n", e.Pos, e.From, b)
	}
	for _, id := range ids {
		fmt.Fprintf(&out, "record %v: %x\n", id, record(t, s, id).Digest())
	}
	held, err := s.ChangesAtDots(t.Context(), dots)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dots {
		fmt.Fprintf(&out, "dot %v: %v\n", d, held[d])
	}
	return out.String()
}

func binaryUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// Rewrite copies a store, of schema 9 in part, into a file of this build's
// layout and puts it in place: everything reads back the same, the file is
// smaller, the old one is kept, and the store goes on from where it was.
func TestRewriteKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	path := realStore(t, dir)
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	relay, phone := replicaID("relay"), replicaID("phone2")
	var moved syncengine.Position
	for i := range uint64(40) {
		c := change(phone, i+1, recordID(1000-i), villageB, record(t, s, recordID(1000-i)).Version(), map[int32]string{2: "edited"})
		err := s.Update(t.Context(), func(tx syncengine.Tx) error {
			rec, err := tx.Record(t.Context(), c.RecordID)
			if err != nil {
				return err
			}
			next, err := syncengine.Apply(rec, &c)
			if err == nil {
				err = tx.PutRecord(t.Context(), next)
			}
			if err == nil {
				moved, err = tx.(syncengine.FromAppender).AppendFrom(t.Context(), c, relay)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	old := record(t, s, recordID(1000))
	lastEntry := readLog(t, s, moved-1)[0].Change
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The last entry and a record as schema 9 kept them.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		envelope := append([]byte{byte(len(villageB))}, villageB...)
		state, _ := old.MarshalBinary()
		id := old.ID()
		if err := tx.Bucket([]byte("records")).Put(id[:], append(slices.Clone(envelope), state...)); err != nil {
			return err
		}
		entry, err := lastEntry.MarshalBinary()
		if err != nil {
			return err
		}
		if err := tx.Bucket([]byte("log")).Put(binaryPos(moved), append(slices.Clone(envelope), entry...)); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("logfrom")).Put(binaryPos(moved), relay[:]); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binaryPos(9))
	})
	before := storeContents(t, path)
	if !bytes.Contains([]byte(before), []byte(fmt.Sprintf("entry %d from %v", moved, relay))) {
		t.Fatalf("the fixture lacks the entry from the relay:\n%s", before)
	}

	rep, err := boltstore.Rewrite(t.Context(), path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if rep.After >= rep.Before || rep.Kept != path+boltstore.BeforeRewriteSuffix {
		t.Errorf("rewrite: %+v; want a smaller file, the old one kept beside it", rep)
	}
	if _, err := os.Stat(rep.Kept); err != nil {
		t.Errorf("the old file is not kept: %v", err)
	}
	if _, err := os.Stat(path + boltstore.RewriteSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the copy is left beside the store: %v", err)
	}
	if after := storeContents(t, path); after != before {
		t.Fatalf("the rewritten store reads otherwise:\n%s", lineDiff(before, after))
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		for name, first := range map[string]byte{"log": 0x80, "records": 3} {
			err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				if v[0] != first {
					return fmt.Errorf("%s %x not in this build's layout: %x", name, k, v)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
		if n := tx.Bucket([]byte("logfrom")).Stats().KeyN; n != 0 {
			t.Errorf("logfrom keeps %d keys", n)
		}
		return nil
	})
	s = openAt(t, path)
	c := change(phone, 41, recordID(5000), villageA, syncengine.VersionVector{}, map[int32]string{1: "new"})
	if pos := apply(t, s, c); pos != moved+1 {
		t.Errorf("after the rewrite a change went to position %d, want %d", pos, moved+1)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Rewrite(t.Context(), path, &testOptions); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("a second rewrite over the file kept from the first: %v", err)
	}
	// The kept file put back, once the copy has committed, is a rollback.
	if err := os.Rename(path, path+".copy"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(rep.Kept, path); err != nil {
		t.Fatal(err)
	}
	if s, err := boltstore.Open(path, &testOptions); !errors.Is(err, boltstore.ErrRolledBack) {
		if err == nil {
			s.Close()
		}
		t.Errorf("the file from before the rewrite, put back: %v, want ErrRolledBack", err)
	}
	if err := os.Rename(path+".copy", path); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	quick := testOptions
	quick.Timeout = 50 * time.Millisecond
	if _, err := boltstore.Rewrite(t.Context(), path, &quick); !errors.Is(err, boltstore.ErrLocked) {
		t.Errorf("rewrite of a store in use: %v, want ErrLocked", err)
	}
}

// lineDiff returns the lines of a and b that the other lacks.
func lineDiff(a, b string) string {
	as, bs := bytes.Split([]byte(a), []byte("\n")), bytes.Split([]byte(b), []byte("\n"))
	var out []string
	for _, l := range as {
		if !slices.ContainsFunc(bs, func(m []byte) bool { return bytes.Equal(l, m) }) {
			out = append(out, "- "+string(l))
		}
	}
	for _, l := range bs {
		if !slices.ContainsFunc(as, func(m []byte) bool { return bytes.Equal(l, m) }) {
			out = append(out, "+ "+string(l))
		}
	}
	if len(out) > 20 {
		out = out[:20]
	}
	return fmt.Sprint(out)
}
