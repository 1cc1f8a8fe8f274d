package boltstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Benchmarks of the server's store on this machine's disk, fsync on:
//
//	go test -run '^$' -bench . -benchmem ./store/boltstore/
//
// Ingest and RawPut at the same batch size give the ratio of the store's
// ingest rate to bbolt's bare put rate.

var benchSizes = []int{1, 100, 1000}

// benchChanges returns n changes of one phone, as a batch's entries at
// positions 1..n: 70% create a household record in one of 50 villages, 30%
// update one made earlier (causally after its last change); each sets 10
// fields of 10-40 bytes.
func benchChanges(n int, seed uint64) []syncengine.Entry {
	rng := rand.New(rand.NewPCG(seed, 42))
	phone := replicaID("bench-phone")
	type rec struct {
		id   syncengine.RecordID
		area string
		last syncengine.Dot
	}
	var recs []rec
	out := make([]syncengine.Entry, n)
	for i := range n {
		counter := uint64(i + 1)
		var r *rec
		if len(recs) == 0 || rng.IntN(10) < 7 {
			recs = append(recs, rec{id: recordID(counter), area: fmt.Sprintf("%s%03d", townA, 1+rng.IntN(50))})
			r = &recs[len(recs)-1]
		} else {
			r = &recs[rng.IntN(len(recs))]
		}
		base := syncengine.NewVersionVector()
		if !r.last.IsZero() {
			base = syncengine.NewVersionVector(r.last)
		}
		fields := make(map[int32]string, 10)
		for f := range 10 {
			fields[int32(f+1)] = strings.Repeat(string(rune('a'+f)), 10+rng.IntN(31))
		}
		c := change(phone, counter, r.id, r.area, base, fields)
		r.last = c.Dot
		out[i] = syncengine.Entry{Pos: syncengine.Position(counter), Change: c}
	}
	return out
}

func meanEncodedSize(es []syncengine.Entry) int {
	total := 0
	for _, e := range es {
		b, _ := e.Change.MarshalBinary()
		total += len(b)
	}
	return total / len(es)
}

// BenchmarkIngest measures the server taking in a phone's changes through
// syncengine.ReceiveBatch, one transaction per batch; ns/op is per change.
func BenchmarkIngest(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "server.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			entries := benchChanges(b.N, 1)
			sender := replicaID("bench-phone")
			ctx := context.Background()
			b.SetBytes(int64(meanEncodedSize(entries)))
			b.ResetTimer()
			for lo := 0; lo < len(entries); lo += size {
				hi := min(lo+size, len(entries))
				batch := syncengine.Batch{Sender: sender, After: syncengine.Position(lo), Through: syncengine.Position(hi), Changes: entries[lo:hi]}
				rc, err := syncengine.ReceiveBatch(ctx, s, batch, syncengine.ReceiveOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if rc.Through != batch.Through {
					b.Fatalf("receipt through %d, want %d", rc.Through, batch.Through)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// BenchmarkRawPut measures bare bbolt puts with the store's options: 8-byte
// keys, values the mean size of an encoded benchmark change, one Update per
// batch; ns/op is per put. Keys are sequential (a log: bbolt's best case) or
// uniformly random (every put lands on its own page: close to its worst).
func BenchmarkRawPut(b *testing.B) {
	size := meanEncodedSize(benchChanges(1000, 1))
	for _, keys := range []string{"sequential", "random"} {
		for _, batch := range benchSizes {
			b.Run(fmt.Sprintf("keys=%s/batch=%d", keys, batch), func(b *testing.B) {
				benchRawPut(b, size, batch, keys == "random")
			})
		}
	}
}

func benchRawPut(b *testing.B, size, batch int, random bool) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bbolt.Options{
		FreelistType: bbolt.FreelistMapType, InitialMmapSize: boltstore.DefaultInitialMmapSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	bucket := []byte("log")
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	b.SetBytes(int64(size))
	b.ResetTimer()
	for lo := 0; lo < b.N; lo += batch {
		err := db.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(bucket)
			for i := lo; i < min(lo+batch, b.N); i++ {
				k := uint64(i)
				if random {
					k = rng.Uint64()
				}
				v := make([]byte, size)
				v[0] = byte(i)
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, k), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// BenchmarkSnapshotVillage reads, page by page, the snapshot of one village
// holding 20,000 records, in a store that holds two more villages of the same
// size; ns/op is per full village read.
func BenchmarkSnapshotVillage(b *testing.B) {
	const perVillage = 20000
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "server.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	villages := []string{villageA, villageB, villageC}
	entries := benchChanges(perVillage*len(villages), 2)
	ctx := context.Background()
	for lo := 0; lo < len(entries); lo += 5000 {
		err := s.Update(ctx, func(tx syncengine.Tx) error {
			for i := lo; i < lo+5000; i++ {
				c := entries[i].Change
				c.Area, c.Context = villages[i%len(villages)], syncengine.NewVersionVector()
				c.RecordID = recordID(uint64(i + 1))
				r, err := syncengine.Apply(syncengine.Record{}, &c)
				if err != nil {
					return err
				}
				if err := tx.PutRecord(ctx, r); err != nil {
					return err
				}
				if _, err := tx.Append(ctx, c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, limit := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("records=%d/page=%d", perVillage, limit), func(b *testing.B) {
			for range b.N {
				n := 0
				for token := []byte(nil); ; {
					page, err := s.Snapshot(ctx, villageB, token, limit)
					if err != nil {
						b.Fatal(err)
					}
					n += len(page.Records)
					if token = page.Next; token == nil {
						break
					}
				}
				if n != perVillage {
					b.Fatalf("read %d records, want %d", n, perVillage)
				}
			}
			b.ReportMetric(float64(b.N*perVillage)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
