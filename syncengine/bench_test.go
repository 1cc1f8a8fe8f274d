package syncengine_test

import (
	"fmt"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// benchRecord returns a record whose ten fields were written by three
// replicas: a created all ten, then b rewrote 1–5 and c rewrote 6–10
// concurrently with b.
func benchRecord(b *testing.B) syncengine.Record {
	b.Helper()
	all, low, high := map[int32]string{}, map[int32]string{}, map[int32]string{}
	for f := int32(1); f <= 10; f++ {
		all[f] = fmt.Sprintf("value of field %d from a", f)
		if f <= 5 {
			low[f] = fmt.Sprintf("value of field %d from b", f)
		} else {
			high[f] = fmt.Sprintf("value of field %d from c", f)
		}
	}
	var r syncengine.Record
	for _, c := range []*syncengine.Change{
		chg(ra, 1, 100, vv(), all),
		chg(rb, 1, 200, vv(ra, 1), low),
		chg(rc, 1, 300, vv(ra, 1), high),
	} {
		var err error
		if r, err = syncengine.Apply(r, c); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

func tenFields(from string) map[int32]string {
	fs := map[int32]string{}
	for f := int32(1); f <= 10; f++ {
		fs[f] = fmt.Sprintf("new value of field %d from %s", f, from)
	}
	return fs
}

// BenchmarkApply applies a 10-field change to a record written by 3 replicas.
// "follows": the change was made after seeing the record (the common case);
// "concurrent": it was made without seeing b's and c's writes, so half its
// fields open conflicts.
func BenchmarkApply(b *testing.B) {
	base := benchRecord(b)
	cases := map[string]*syncengine.Change{
		"follows":    chg(ra, 2, 400, base.Version(), tenFields("a")),
		"concurrent": chg(ra, 2, 400, vv(ra, 1), tenFields("a")),
	}
	for _, name := range []string{"follows", "concurrent"} {
		c := cases[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := syncengine.Apply(base, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRecordEncoding(b *testing.B) {
	r := benchRecord(b)
	data, _ := r.MarshalBinary()
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = r.MarshalBinary()
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got syncengine.Record
			if err := got.UnmarshalBinary(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
