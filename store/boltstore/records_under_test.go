package boltstore_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// RecordsUnder reads the records of the given kinds under a county, township
// or village prefix, in (area, id) order, tombstones included, and refuses a
// prefix that is not digits.
func TestRecordsUnder(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	const kindProblem syncengine.Kind = 7
	phone := replicaID("ledger-phone")
	villages := []string{villageA, villageB, villageC, villageD}
	want := map[string][]string{} // village → "area/id" of its problems
	n := uint64(0)
	for i := range 3 {
		for j, v := range villages {
			n++
			id := recordID(uint64(500 - i*len(villages) - j)) // descending, so area order ≠ insert order
			c := change(phone, n, id, v, syncengine.VersionVector{}, map[int32]string{1: fmt.Sprint(i)})
			if i != 1 {
				c.Kind = kindProblem
				want[v] = append(want[v], fmt.Sprintf("%s/%x", v, id[8:]))
			}
			apply(t, s, c)
		}
	}
	// A deleted problem stays, as a tombstone.
	gone := recordID(500)
	n++
	del := change(phone, n, gone, villageA, record(t, s, gone).Version(), nil)
	del.Kind, del.Delete = kindProblem, true
	apply(t, s, del)
	for _, v := range villages {
		slices.Sort(want[v])
	}

	for _, tt := range []struct {
		prefix   string
		villages []string
	}{
		{"", villages},
		{villageA[:6], villages},
		{townA, []string{villageA, villageB}},
		{villageC, []string{villageC}},
		{"530102003", nil},
	} {
		got, err := s.RecordsUnder(ctx, tt.prefix, kindProblem)
		if err != nil {
			t.Fatalf("RecordsUnder(%q): %v", tt.prefix, err)
		}
		var w []string
		for _, v := range tt.villages {
			w = append(w, want[v]...)
		}
		if g := ids(got); !slices.Equal(g, w) {
			t.Errorf("RecordsUnder(%q)\n got %v\nwant %v", tt.prefix, g, w)
		}
		for _, r := range got {
			if r.Kind() != kindProblem {
				t.Errorf("RecordsUnder(%q) returned a record of kind %d", tt.prefix, r.Kind())
			}
			if r.ID() == gone && !r.Deleted() {
				t.Errorf("RecordsUnder(%q): the deleted problem is live", tt.prefix)
			}
		}
	}
	if got, err := s.RecordsUnder(ctx, townA, kindHousehold, kindProblem); err != nil || len(got) != 6 {
		t.Errorf("RecordsUnder(%s, both kinds) = %d records, %v; want 6", townA, len(got), err)
	}
	if got, err := s.RecordsUnder(ctx, townA); err != nil || len(got) != 0 {
		t.Errorf("RecordsUnder without kinds = %d records, %v; want none", len(got), err)
	}
	for _, bad := range []string{"53x", "5301020010011"} {
		if _, err := s.RecordsUnder(ctx, bad, kindProblem); !errors.Is(err, boltstore.ErrInvalidPrefix) {
			t.Errorf("RecordsUnder(%q) = %v, want ErrInvalidPrefix", bad, err)
		}
	}
}
