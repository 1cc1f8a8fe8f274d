package boltstore

import (
	"fmt"

	"go.etcd.io/bbolt"
)

// BucketUsage is what one of the store's buckets takes in its file.
type BucketUsage struct {
	Name string
	// Keys is the number of keys.
	Keys int
	// Alloc is the bytes of the pages the bucket holds (branch and leaf
	// pages, overflow included); InUse the bytes of them its keys, values
	// and page headers fill.
	Alloc, InUse int64
}

// Usage returns what each bucket takes, in the order of the package
// documentation's layout. It reads every page of the store, in one read
// transaction.
func (s *Store) Usage() ([]BucketUsage, error) {
	var out []BucketUsage
	err := s.db.View(func(btx *bbolt.Tx) error {
		for _, name := range allBuckets {
			b := btx.Bucket(name)
			if b == nil {
				return fmt.Errorf("boltstore: bucket %q missing: %w", name, ErrCorrupt)
			}
			st := b.Stats()
			out = append(out, BucketUsage{
				Name:  string(name),
				Keys:  st.KeyN,
				Alloc: int64(st.BranchAlloc + st.LeafAlloc),
				InUse: int64(st.BranchInuse + st.LeafInuse),
			})
		}
		return nil
	})
	return out, err
}
