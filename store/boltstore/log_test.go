package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// appendRandom appends n changes in random villages (in transactions of 1000)
// and returns each entry's area by position.
func appendRandom(t *testing.T, s *boltstore.Store, rng *rand.Rand, n int) map[syncengine.Position]string {
	t.Helper()
	ctx := t.Context()
	villages := []string{villageA, villageB, villageC, villageD}
	phone := replicaID("phone")
	areas := make(map[syncengine.Position]string)
	end, err := s.LogEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counter := uint64(end)
	for done := 0; done < n; {
		err := s.Update(ctx, func(tx syncengine.Tx) error {
			for i := 0; i < 1000 && done < n; i++ {
				counter++
				v := villages[rng.IntN(len(villages))]
				c := change(phone, counter, recordID(counter), v, syncengine.VersionVector{}, map[int32]string{1: "x"})
				pos, err := tx.Append(ctx, c)
				if err != nil {
					return err
				}
				areas[pos] = v
				done++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return areas
}

func TestReadLogAreaReadsOnlyItsAreasInLogOrder(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	s := openStore(t)
	ctx := t.Context()
	areas := appendRandom(t, s, rng, 500)
	end := syncengine.Position(500)

	tests := [][]string{
		{villageA},
		{townA},
		{villageA, villageC},
		{townB, villageD, villageC}, // covered prefixes read once
		{""},
		{"530102003"}, // nothing there
	}
	for _, prefixes := range tests {
		for _, limit := range []int{1, 7, 1000} {
			t.Run(fmt.Sprintf("%v/limit=%d", prefixes, limit), func(t *testing.T) {
				var want, got []syncengine.Position
				for p := syncengine.Position(1); p <= end; p++ {
					if slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(areas[p], pre) }) {
						want = append(want, p)
					}
				}
				after := syncengine.Position(0)
				for range 1000 {
					page, through, err := s.ReadLogArea(ctx, prefixes, after, limit)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range page {
						if e.Pos <= after || e.Pos > through {
							t.Fatalf("entry %d outside (%d, %d]", e.Pos, after, through)
						}
						if e.Change.Area != areas[e.Pos] {
							t.Fatalf("entry %d in %s, want %s", e.Pos, e.Change.Area, areas[e.Pos])
						}
						got = append(got, e.Pos)
					}
					if len(page) < limit && through != end {
						t.Fatalf("short page scanned through %d, want the log end %d", through, end)
					}
					after = through
					if len(page) < limit {
						break
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("positions\n got %v\nwant %v", got, want)
				}
			})
		}
	}
	if _, _, err := s.ReadLogArea(ctx, []string{"53x"}, 0, 1); !errors.Is(err, boltstore.ErrInvalidPrefix) {
		t.Errorf("bad prefix: %v, want ErrInvalidPrefix", err)
	}
	if _, through, err := s.ReadLogArea(ctx, []string{villageA}, end+5, 1); err != nil || through != end+5 {
		t.Errorf("read after the end: through %d, %v; want %d", through, err, end+5)
	}
}

func TestCompactDropsEntriesAndKeepsDots(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	phone := replicaID("phone")
	var changes []syncengine.Change
	for i := range 25 {
		c := change(phone, uint64(i+1), recordID(uint64(i)), []string{villageA, villageC}[i%2], syncengine.VersionVector{}, map[int32]string{1: "x"})
		changes = append(changes, c)
		apply(t, s, c)
	}
	dropped, err := s.Compact(ctx, 10)
	if err != nil || dropped != 10 {
		t.Fatalf("Compact(10) = %d, %v; want 10", dropped, err)
	}
	if cp, err := s.Compacted(ctx); err != nil || cp != 10 {
		t.Errorf("Compacted = %d, %v; want 10", cp, err)
	}
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		if _, err := tx.ReadLog(ctx, 5, 10); !errors.Is(err, syncengine.ErrCompacted) {
			t.Errorf("ReadLog after 5: %v, want ErrCompacted", err)
		}
		if es, err := tx.ReadLog(ctx, 10, 100); err != nil || len(es) != 15 || es[0].Pos != 11 {
			t.Errorf("ReadLog after 10: %d entries, %v; want 11..25", len(es), err)
		}
		seen, err := tx.Seen(ctx, changes[0].Dot)
		if err != nil || !seen {
			t.Errorf("Seen(compacted change) = %v, %v; want true", seen, err)
		}
		if n, err := tx.MaxCounter(ctx, phone); err != nil || n != 25 {
			t.Errorf("MaxCounter = %d, %v; want 25", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadLogArea(ctx, []string{villageA}, 9, 10); !errors.Is(err, syncengine.ErrCompacted) {
		t.Errorf("ReadLogArea after 9: %v, want ErrCompacted", err)
	}
	if es, _, err := s.ReadLogArea(ctx, []string{townA}, 10, 100); err != nil || len(es) != 8 {
		t.Errorf("ReadLogArea(townA) after 10: %d entries, %v; want 8", len(es), err)
	}
	// The id of a compacted change is still known by its dot, so a change
	// reusing the dot is told from a retry.
	held, err := s.ChangesAtDots(ctx, []syncengine.Dot{changes[0].Dot, changes[20].Dot, {Replica: phone, Counter: 99}})
	if err != nil || len(held) != 2 || held[changes[0].Dot] != changes[0].ID || held[changes[20].Dot] != changes[20].ID {
		t.Errorf("ChangesAtDots = %v, %v; want the ids of the compacted change and the kept one", held, err)
	}
	// A retried old change is still recognised: the engine skips it, and
	// Append refuses it.
	err = s.Update(ctx, func(tx syncengine.Tx) error {
		_, err := tx.Append(ctx, changes[3])
		return err
	})
	if !errors.Is(err, syncengine.ErrDotExists) {
		t.Errorf("append of a compacted dot: %v, want ErrDotExists", err)
	}
	// Positions go on from where they were; compacting again is idempotent
	// and clamps to the end of the log.
	if pos := apply(t, s, change(phone, 26, recordID(99), villageA, syncengine.VersionVector{}, nil)); pos != 26 {
		t.Errorf("next position %d, want 26", pos)
	}
	if n, err := s.Compact(ctx, 5); err != nil || n != 0 {
		t.Errorf("Compact(5) after Compact(10) = %d, %v; want 0", n, err)
	}
	if n, err := s.Compact(ctx, 1000); err != nil || n != 16 {
		t.Errorf("Compact(1000) = %d, %v; want 16", n, err)
	}
	if cp, _ := s.Compacted(ctx); cp != 26 {
		t.Errorf("Compacted = %d, want 26 (the log end)", cp)
	}
	// Records are untouched: a snapshot still has every one.
	if got, _ := snapshotAll(t, s, "", 100); len(got) != 26 {
		t.Errorf("snapshot after compaction has %d records, want 26", len(got))
	}
}

func TestCompactInSeveralTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 20,500 entries")
	}
	s := openStore(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	appendRandom(t, s, rng, 20500)
	dropped, err := s.Compact(ctx, 20400)
	if err != nil || dropped != 20400 {
		t.Fatalf("Compact = %d, %v; want 20400", dropped, err)
	}
	if got := readLog(t, s, 20400); len(got) != 100 {
		t.Errorf("%d entries left, want 100", len(got))
	}
	es, through, err := s.ReadLogArea(ctx, []string{""}, 20400, 1000)
	if err != nil || len(es) != 100 || through != 20500 {
		t.Errorf("ReadLogArea = %d entries through %d, %v; want 100 through 20500", len(es), through, err)
	}
}

func TestCompactAcknowledged(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(3, 4))
	appendRandom(t, s, rng, 30)

	if n, err := s.CompactAcknowledged(ctx); err != nil || n != 0 {
		t.Fatalf("with no devices: %d, %v; want nothing", n, err)
	}
	a, b, c := replicaID("phone-a"), replicaID("phone-b"), replicaID("phone-c")
	for _, id := range []syncengine.ReplicaID{a, b, c} {
		if err := s.Registry().PutDevice(ctx, boltstore.Device{ID: id, Name: id.String(), Areas: []string{townA}}); err != nil {
			t.Fatal(err)
		}
	}
	setAcked := func(peer syncengine.ReplicaID, acked syncengine.Position) {
		t.Helper()
		err := s.Update(ctx, func(tx syncengine.Tx) error {
			return tx.SetCursor(ctx, peer, syncengine.Cursor{Acked: acked})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setAcked(a, 20)
	setAcked(b, 8)
	// c has never synced: nothing can go.
	if n, err := s.CompactAcknowledged(ctx); err != nil || n != 0 {
		t.Fatalf("with a device that acknowledged nothing: %d, %v; want 0", n, err)
	}
	if err := s.Registry().RevokeDevice(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CompactAcknowledged(ctx); err != nil || n != 8 {
		t.Fatalf("after revoking c: %d, %v; want 8 (b's acked)", n, err)
	}
	setAcked(b, 25)
	if n, err := s.CompactAcknowledged(ctx); err != nil || n != 12 {
		t.Fatalf("after b acked 25: %d, %v; want 12 (through a's 20)", n, err)
	}
	if cp, _ := s.Compacted(ctx); cp != 20 {
		t.Errorf("compacted through %d, want 20", cp)
	}
}

func TestCompactStopsWhenContextIsDone(t *testing.T) {
	s := openStore(t)
	appendRandom(t, s, rand.New(rand.NewPCG(5, 6)), 10)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Compact(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Compact with a done context: %v, want context.Canceled", err)
	}
}
