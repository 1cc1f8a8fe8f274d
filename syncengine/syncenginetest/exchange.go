package syncenginetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// replica is a store with the clock of the replica it belongs to.
type replica struct {
	store syncengine.Store
	clock *syncengine.Clock
	wall  int64
}

func (r *replica) write(t *testing.T, n int, area string, fields map[int32][]byte) syncengine.Change {
	t.Helper()
	r.wall += 1000
	max := uint64(0)
	view(t, r.store, func(tx syncengine.ReadTx) error {
		var err error
		max, err = tx.MaxCounter(t.Context(), r.clock.Replica())
		return err
	})
	c, err := WriteLocal(t.Context(), r.store, r.clock, r.wall, syncengine.Edit{
		ID: changeID(r.clock.Replica(), max+1+1000), Record: recordID(n), Kind: kindHousehold, Area: area, Fields: fields,
	})
	if err != nil {
		t.Fatalf("WriteLocal: %v", err)
	}
	return c
}

// send moves every change of from's log that to has not acknowledged, in
// batches of limit, delivering each batch twice (a retry after a lost answer).
func send(t *testing.T, from, to *replica, limit int, exclude bool) {
	t.Helper()
	ctx := t.Context()
	self, peer := from.clock.Replica(), to.clock.Replica()
	for {
		var after syncengine.Position
		view(t, from.store, func(tx syncengine.ReadTx) error {
			c, err := tx.Cursor(ctx, peer)
			after = c.Acked
			return err
		})
		opts := syncengine.SendOptions{Limit: limit}
		if exclude {
			opts.Exclude = peer
		}
		b, err := syncengine.NextBatch(ctx, from.store, self, after, opts)
		if err != nil {
			t.Fatalf("NextBatch: %v", err)
		}
		if b.Through == after {
			return
		}
		var rc syncengine.Receipt
		for range 2 {
			if rc, err = syncengine.ReceiveBatch(ctx, to.store, b, syncengine.ReceiveOptions{}); err != nil {
				t.Fatalf("ReceiveBatch: %v", err)
			}
		}
		if err := syncengine.Acknowledge(ctx, from.store, peer, rc); err != nil {
			t.Fatalf("Acknowledge: %v", err)
		}
	}
}

// digests returns the digest of every record 1..n in s.
func digests(t *testing.T, s syncengine.Store, n int) [][32]byte {
	t.Helper()
	var out [][32]byte
	view(t, s, func(tx syncengine.ReadTx) error {
		for i := 1; i <= n; i++ {
			r, err := tx.Record(t.Context(), recordID(i))
			if err != nil {
				return err
			}
			out = append(out, r.Digest())
		}
		return nil
	})
	return out
}

func logDots(t *testing.T, s syncengine.Store) []syncengine.Dot {
	t.Helper()
	var dots []syncengine.Dot
	view(t, s, func(tx syncengine.ReadTx) error {
		es, err := tx.ReadLog(t.Context(), 0, 10000)
		for _, e := range es {
			dots = append(dots, e.Change.Dot)
		}
		return err
	})
	slices.SortFunc(dots, syncengine.Dot.Compare)
	return dots
}

// testExchange drives two stores through the engine's push and pull: a phone
// and a township that both edit, with concurrent edits of one household and
// every batch delivered twice. Both must end with identical records and every
// change exactly once in each log.
func testExchange(t *testing.T, newStore NewStore) {
	phone := &replica{store: newStore(t), clock: syncengine.NewClock(replicaA, 0), wall: 1_790_000_000_000}
	town := &replica{store: newStore(t), clock: syncengine.NewClock(replicaB, 0), wall: 1_790_000_000_500}
	const records = 12
	var made []syncengine.Dot
	for i := 1; i <= records; i++ {
		made = append(made, phone.write(t, i, village, map[int32][]byte{4: field(4, fmt.Sprint("户主", i))}).Dot)
	}
	send(t, phone, town, 5, false)
	send(t, town, phone, 5, true)
	// Offline, both change household 3's head name; the township also fixes an address.
	made = append(made,
		phone.write(t, 3, village, map[int32][]byte{4: field(4, "张德华")}).Dot,
		town.write(t, 3, village, map[int32][]byte{4: field(4, "张德明")}).Dot,
		town.write(t, 5, village, map[int32][]byte{5: field(5, "新寨村二组")}).Dot,
	)
	send(t, phone, town, 4, false)
	send(t, town, phone, 4, true)
	if got, want := digests(t, phone.store, records), digests(t, town.store, records); !slices.Equal(got, want) {
		t.Fatal("phone and township hold different records after exchanging everything")
	}
	slices.SortFunc(made, syncengine.Dot.Compare)
	for name, s := range map[string]syncengine.Store{"phone": phone.store, "township": town.store} {
		if got := logDots(t, s); !slices.Equal(got, made) {
			t.Errorf("%s log holds %d changes, want each of the %d made exactly once", name, len(got), len(made))
		}
	}
	view(t, town.store, func(tx syncengine.ReadTx) error {
		r, err := tx.Record(t.Context(), recordID(3))
		if err != nil {
			return err
		}
		if cs := r.Conflicts(); len(cs) != 1 || cs[0].ID.Field != 4 || len(cs[0].Writes) != 2 {
			t.Errorf("household 3 conflicts = %v, want one on field 4 with both names", cs)
		}
		return nil
	})
}

// RetentionStore is a store that serves snapshots and drops acknowledged log
// entries.
type RetentionStore interface {
	syncengine.Store
	// Snapshot reads one page of the records under prefix (see
	// syncengine.SnapshotPage).
	Snapshot(ctx context.Context, prefix string, token []byte, limit int) (syncengine.SnapshotPage, error)
	// LogEnd returns the position of the last entry ever appended.
	LogEnd(ctx context.Context) (syncengine.Position, error)
	// Compact drops log entries at or before through and returns how many.
	Compact(ctx context.Context, through syncengine.Position) (int, error)
}

// RunRetention runs the snapshot and retention conformance tests.
func RunRetention(t *testing.T, newStore func(t *testing.T) RetentionStore) {
	t.Run("SnapshotPages", func(t *testing.T) { testSnapshotPages(t, newStore(t)) })
	t.Run("Compact", func(t *testing.T) { testCompact(t, newStore(t)) })
}

// Areas of two townships of one county.
var snapshotAreas = []string{"532523101201", "532523101202", "532523102201", "532523101201", "532523102203"}

func fill(t *testing.T, s syncengine.Store, n int) []syncengine.Position {
	t.Helper()
	var pos []syncengine.Position
	update(t, s, func(tx syncengine.Tx) error {
		for i := 1; i <= n; i++ {
			c := change(replicaA, uint64(i), i, snapshotAreas[i%len(snapshotAreas)], map[int32][]byte{4: field(4, fmt.Sprint("户主", i))})
			r, err := syncengine.Apply(syncengine.Record{}, &c)
			if err != nil {
				return err
			}
			if err := tx.PutRecord(t.Context(), r); err != nil {
				return err
			}
			p, err := tx.Append(t.Context(), c)
			if err != nil {
				return err
			}
			pos = append(pos, p)
		}
		return nil
	})
	return pos
}

func testSnapshotPages(t *testing.T, s RetentionStore) {
	ctx := t.Context()
	const n = 40
	pos := fill(t, s, n)
	for _, prefix := range []string{"532523101201", "532523101", "532523102", "532523", "532524"} {
		want := map[syncengine.RecordID]bool{}
		for i := 1; i <= n; i++ {
			if a := snapshotAreas[i%len(snapshotAreas)]; len(a) >= len(prefix) && a[:len(prefix)] == prefix {
				want[recordID(i)] = true
			}
		}
		got := map[syncengine.RecordID]bool{}
		var token []byte
		lastKey := ""
		for pages := 0; ; pages++ {
			page, err := s.Snapshot(ctx, prefix, token, 3)
			if err != nil {
				t.Fatalf("Snapshot(%s): %v", prefix, err)
			}
			if page.AsOf != pos[n-1] {
				t.Errorf("Snapshot(%s) AsOf = %d, want the log end %d", prefix, page.AsOf, pos[n-1])
			}
			for _, r := range page.Records {
				key := r.Area() + r.ID().String()
				if got[r.ID()] || key <= lastKey {
					t.Errorf("Snapshot(%s) returned %v twice or out of order", prefix, r.ID())
				}
				got[r.ID()], lastKey = true, key
			}
			if token = page.Next; token == nil {
				break
			}
			if pages > n {
				t.Fatalf("Snapshot(%s) never ends", prefix)
			}
		}
		if len(got) != len(want) {
			t.Errorf("Snapshot(%s) returned %d records, want %d", prefix, len(got), len(want))
		}
		for id := range want {
			if !got[id] {
				t.Errorf("Snapshot(%s) missed %v", prefix, id)
			}
		}
	}
	if end, err := s.LogEnd(ctx); end != pos[n-1] || err != nil {
		t.Errorf("LogEnd = %d, %v; want %d", end, err, pos[n-1])
	}
}

func testCompact(t *testing.T, s RetentionStore) {
	ctx := t.Context()
	pos := fill(t, s, 20)
	dropped, err := s.Compact(ctx, pos[9])
	if err != nil || dropped != 10 {
		t.Fatalf("Compact(%d) = %d, %v; want 10 dropped", pos[9], dropped, err)
	}
	view(t, s, func(tx syncengine.ReadTx) error {
		if _, err := tx.ReadLog(ctx, 0, 100); !errors.Is(err, syncengine.ErrCompacted) {
			t.Errorf("ReadLog from before the compaction point: %v, want ErrCompacted", err)
		}
		es, err := tx.ReadLog(ctx, pos[9], 100)
		if err != nil || len(es) != 10 || es[0].Pos != pos[10] {
			t.Errorf("ReadLog from the compaction point = %d entries, %v; want the 10 kept", len(es), err)
		}
		if seen, err := tx.Seen(ctx, syncengine.Dot{Replica: replicaA, Counter: 1}); !seen || err != nil {
			t.Errorf("Seen(dropped change) = %v, %v; want true: a retried old change must not be stored again", seen, err)
		}
		if r, err := tx.Record(ctx, recordID(1)); err != nil || r.IsEmpty() {
			t.Errorf("Record 1 after compaction = %v, %v; records must stay", r, err)
		}
		return nil
	})
	err = s.Update(ctx, func(tx syncengine.Tx) error {
		_, err := tx.Append(ctx, change(replicaA, 1, 1, village, nil))
		return err
	})
	if !errors.Is(err, syncengine.ErrDotExists) {
		t.Errorf("re-appending a dropped change: %v, want ErrDotExists", err)
	}
	next := appendAll(t, s, change(replicaA, 21, 21, village, nil))[0]
	if next <= pos[19] {
		t.Errorf("position %d after compaction reuses one at or before %d", next, pos[19])
	}
	if end, err := s.LogEnd(ctx); end != next || err != nil {
		t.Errorf("LogEnd = %d, %v; want %d", end, err, next)
	}
}
