package boltstore_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// fillVillages stores n records in each of the four villages, with record ids
// interleaved across villages, and returns each village's records' ids.
func fillVillages(t *testing.T, s *boltstore.Store, n int) map[string][]syncengine.RecordID {
	t.Helper()
	phone := replicaID("census-phone")
	villages := []string{villageA, villageB, villageC, villageD}
	out := make(map[string][]syncengine.RecordID)
	counter := uint64(0)
	for i := range n {
		for j, v := range villages {
			counter++
			id := recordID(uint64(1000 - i*len(villages) - j)) // descending, so area order ≠ insert order
			apply(t, s, change(phone, counter, id, v, syncengine.VersionVector{}, map[int32]string{1: fmt.Sprint(i)}))
			out[v] = append(out[v], id)
		}
	}
	return out
}

func TestSnapshotPagesByTownshipAndVillage(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	byVillage := fillVillages(t, s, 11)
	end, err := s.LogEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		prefix   string
		villages []string
		limit    int
		pages    int
	}{
		{villageA, []string{villageA}, 4, 3},                         // 11 records: 4+4+3
		{villageC, []string{villageC}, 11, 1},                        // exactly one full page, Next nil
		{townA, []string{villageA, villageB}, 5, 5},                  // 22 records
		{townB, []string{villageC, villageD}, 100, 1},                //
		{"", []string{villageA, villageB, villageC, villageD}, 7, 7}, // 44 records
		{"530102003", nil, 5, 1},                                     // an empty township
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/limit=%d", tt.prefix, tt.limit), func(t *testing.T) {
			var want []string
			for _, v := range tt.villages {
				rs := slices.Clone(byVillage[v])
				slices.SortFunc(rs, syncengine.RecordID.Compare)
				for _, id := range rs {
					want = append(want, fmt.Sprintf("%s/%x", v, id[8:]))
				}
			}
			got, pages := snapshotAll(t, s, tt.prefix, tt.limit)
			if g := ids(got); !slices.Equal(g, want) {
				t.Errorf("records\n got %v\nwant %v", g, want)
			}
			if pages != tt.pages {
				t.Errorf("%d pages, want %d", pages, tt.pages)
			}
			page, err := s.Snapshot(ctx, tt.prefix, nil, tt.limit)
			if err != nil || page.AsOf != end {
				t.Errorf("AsOf = %d (%v), want the log end %d", page.AsOf, err, end)
			}
		})
	}
}

func TestSnapshotFollowsAreaMoves(t *testing.T) {
	s := openStore(t)
	phone := replicaID("phone")
	id := recordID(1)
	apply(t, s, change(phone, 1, id, villageA, syncengine.VersionVector{}, map[int32]string{1: "Wang household"}))
	apply(t, s, change(phone, 2, recordID(2), villageA, syncengine.VersionVector{}, map[int32]string{1: "Li household"}))
	// The household moves to village C (another township), then back to B.
	for i, to := range []string{villageC, villageB} {
		base := record(t, s, id).Version()
		apply(t, s, change(phone, uint64(3+i), id, to, base, map[int32]string{2: "moved"}))
		if got := record(t, s, id).Area(); got != to {
			t.Fatalf("record area %s after the move, want %s", got, to)
		}
		for _, v := range []string{villageA, villageB, villageC} {
			got, _ := snapshotAll(t, s, v, 10)
			found := slices.ContainsFunc(got, func(r syncengine.Record) bool { return r.ID() == id })
			if found != (v == to) {
				t.Errorf("after move %d to %s: in the snapshot of %s = %v", i, to, v, found)
			}
		}
	}
	// A delete keeps the record (a tombstone) in its village's snapshot.
	base := record(t, s, id).Version()
	del := change(phone, 9, id, villageB, base, nil)
	del.Delete = true
	apply(t, s, del)
	got, _ := snapshotAll(t, s, villageB, 10)
	if len(got) != 1 || !got[0].Deleted() {
		t.Errorf("snapshot of %s after the delete: %v, want the tombstone", villageB, ids(got))
	}
}

func TestSnapshotRejectsBadPrefixAndToken(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	fillVillages(t, s, 3)
	first, err := s.Snapshot(ctx, villageA, nil, 1)
	if err != nil || first.Next == nil {
		t.Fatalf("first page: next %x, %v", first.Next, err)
	}
	for _, prefix := range []string{"53010200100x", strings.Repeat("1", 13), "abc"} {
		if _, err := s.Snapshot(ctx, prefix, nil, 1); !errors.Is(err, boltstore.ErrInvalidPrefix) {
			t.Errorf("Snapshot(%q) = %v, want ErrInvalidPrefix", prefix, err)
		}
	}
	bad := [][]byte{{}, {9}, append([]byte{2}, first.Next[1:]...), []byte("not a token at all, no")}
	for _, tok := range bad {
		if _, err := s.Snapshot(ctx, villageA, tok, 1); !errors.Is(err, boltstore.ErrInvalidToken) {
			t.Errorf("Snapshot with token %x = %v, want ErrInvalidToken", tok, err)
		}
	}
	// A token of village A's snapshot is not valid for village B's.
	if _, err := s.Snapshot(ctx, villageB, first.Next, 1); !errors.Is(err, boltstore.ErrInvalidToken) {
		t.Errorf("token of another prefix: %v, want ErrInvalidToken", err)
	}
}
