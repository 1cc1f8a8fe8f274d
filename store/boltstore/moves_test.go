package boltstore_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// readMoves reads every entry after after under prefixes, limit at a time,
// checking that positions increase and that no entry comes twice.
func readMoves(t *testing.T, s *boltstore.Store, prefixes []string, after syncengine.Position, limit int) []syncengine.AreaEntry {
	t.Helper()
	var out []syncengine.AreaEntry
	for range 10000 {
		page, through, err := s.ReadLogAreaMoves(t.Context(), prefixes, after, limit)
		if err != nil {
			t.Fatalf("ReadLogAreaMoves(%v, %d, %d): %v", prefixes, after, limit, err)
		}
		for _, e := range page {
			if e.Pos <= after || e.Pos > through {
				t.Fatalf("entry %d outside (%d, %d]", e.Pos, after, through)
			}
			if n := len(out); n > 0 && out[n-1].Pos >= e.Pos {
				t.Fatalf("entry %d after %d: positions must increase, each once", e.Pos, out[n-1].Pos)
			}
			out = append(out, e)
		}
		after = through
		if len(page) < limit {
			return out
		}
	}
	t.Fatal("ReadLogAreaMoves never ended")
	return nil
}

// moveSummary is an entry as the tests compare it: position, the change's
// area, where the record came from and the move.
func moveSummary(es []syncengine.AreaEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmt.Sprintf("%d %s<-%s %v", e.Pos, e.Change.Area, strings.Join(e.Areas, ","), e.Move)
	}
	return out
}

// A household of village A is edited, moves to village B and is edited
// there. The move is read with village A (out) and with village B (in),
// once with the township that holds both, never with another village.
func TestReadLogAreaMovesSeesBothEndsOfAMove(t *testing.T) {
	s := openStore(t)
	phone := replicaID("phone")
	id := recordID(1)
	pos := []syncengine.Position{
		apply(t, s, change(phone, 1, id, villageA, syncengine.VersionVector{}, map[int32]string{1: "Wang household"})),
	}
	for i, area := range []string{villageA, villageB, villageB} {
		base := record(t, s, id).Version()
		pos = append(pos, apply(t, s, change(phone, uint64(2+i), id, area, base, map[int32]string{3: fmt.Sprint("edit ", i)})))
	}
	apply(t, s, change(phone, 9, recordID(2), villageC, syncengine.VersionVector{}, map[int32]string{1: "Li household"}))

	tests := []struct {
		prefixes []string
		want     []string
	}{
		{[]string{villageA}, []string{
			fmt.Sprintf("%d %s<-%s stays", pos[0], villageA, ""),
			fmt.Sprintf("%d %s<-%s stays", pos[1], villageA, ""),
			fmt.Sprintf("%d %s<-%s moves out", pos[2], villageB, villageA),
		}},
		{[]string{villageB}, []string{
			fmt.Sprintf("%d %s<-%s moves in", pos[2], villageB, villageA),
			fmt.Sprintf("%d %s<-%s stays", pos[3], villageB, ""),
		}},
		{[]string{townA}, []string{
			fmt.Sprintf("%d %s<-%s stays", pos[0], villageA, ""),
			fmt.Sprintf("%d %s<-%s stays", pos[1], villageA, ""),
			fmt.Sprintf("%d %s<-%s stays", pos[2], villageB, villageA),
			fmt.Sprintf("%d %s<-%s stays", pos[3], villageB, ""),
		}},
		{[]string{villageA, villageB}, []string{
			fmt.Sprintf("%d %s<-%s stays", pos[0], villageA, ""),
			fmt.Sprintf("%d %s<-%s stays", pos[1], villageA, ""),
			fmt.Sprintf("%d %s<-%s stays", pos[2], villageB, villageA),
			fmt.Sprintf("%d %s<-%s stays", pos[3], villageB, ""),
		}},
		{[]string{villageD}, nil},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 2, 100} {
			got := moveSummary(readMoves(t, s, tt.prefixes, 0, limit))
			if !slices.Equal(got, tt.want) {
				t.Errorf("%v, limit %d:\n got %q\nwant %q", tt.prefixes, limit, got, tt.want)
			}
		}
	}
	// ReadLogArea reads the same entries, without the moves.
	entries, _, err := s.ReadLogArea(t.Context(), []string{villageA}, 0, 0)
	if err != nil || len(entries) != 3 || entries[2].Pos != pos[2] {
		t.Errorf("ReadLogArea(%s) = %v, %v; want the 3 entries that touched it", villageA, entries, err)
	}
}

// A move reaches the old area's index only when the store saw the record's
// old area in the same transaction: PutRecord of the record's new state, then
// Append of the change. An Append alone is filed under its own area.
func TestAppendWithoutPutRecordIsNoMove(t *testing.T) {
	s := openStore(t)
	phone := replicaID("phone")
	id := recordID(1)
	apply(t, s, change(phone, 1, id, villageA, syncengine.VersionVector{}, map[int32]string{1: "x"}))
	c := change(phone, 2, id, villageB, record(t, s, id).Version(), map[int32]string{2: "y"})
	err := s.Update(t.Context(), func(tx syncengine.Tx) error {
		// Another record is put first: it is not c's record.
		other := change(phone, 3, recordID(2), villageC, syncengine.VersionVector{}, nil)
		next, err := syncengine.Apply(syncengine.Record{}, &other)
		if err != nil {
			return err
		}
		if err := tx.PutRecord(t.Context(), next); err != nil {
			return err
		}
		_, err = tx.Append(t.Context(), c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := readMoves(t, s, []string{villageA}, 1, 10); len(got) != 0 {
		t.Errorf("village A read %v, want nothing after the first entry", moveSummary(got))
	}
}

// Compaction drops both keys of a moved entry; ReplaceChange keeps them, or
// re-files them when the change's area changes.
func TestCompactAndReplaceKeepMovesConsistent(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	phone := replicaID("phone")
	a, b := recordID(1), recordID(2)
	apply(t, s, change(phone, 1, a, villageA, syncengine.VersionVector{}, map[int32]string{1: "a"}))
	apply(t, s, change(phone, 2, b, villageA, syncengine.VersionVector{}, map[int32]string{1: "b"}))
	moveA := change(phone, 3, a, villageB, record(t, s, a).Version(), map[int32]string{2: "to B"})
	posA := apply(t, s, moveA)
	moveB := change(phone, 4, b, villageC, record(t, s, b).Version(), map[int32]string{2: "to C"})
	posB := apply(t, s, moveB)

	// The move of a is re-stamped, its area unchanged: both keys stay.
	restamped := moveA.Clone()
	restamped.Stamp.WallMS += 1000
	// The move of b is rewritten into village D: it now moves b from A to D.
	rewritten := moveB.Clone()
	rewritten.Area = villageD
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		if err := tx.ReplaceChange(ctx, posA, restamped); err != nil {
			return err
		}
		return tx.ReplaceChange(ctx, posB, rewritten)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check after replace: %v", err)
	}
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{villageA, []string{
			fmt.Sprintf("%d %s<-%s moves out", posA, villageB, villageA),
			fmt.Sprintf("%d %s<-%s moves out", posB, villageD, villageA),
		}},
		{villageB, []string{fmt.Sprintf("%d %s<-%s moves in", posA, villageB, villageA)}},
		{villageC, nil},
		{villageD, []string{fmt.Sprintf("%d %s<-%s moves in", posB, villageD, villageA)}},
	} {
		if got := moveSummary(readMoves(t, s, []string{tt.prefix}, 2, 10)); !slices.Equal(got, tt.want) {
			t.Errorf("%s after replace:\n got %q\nwant %q", tt.prefix, got, tt.want)
		}
	}

	// Rewritten into the area it came from, the entry is no move any more.
	back := moveB.Clone()
	back.Area = villageA
	if err := s.Update(ctx, func(tx syncengine.Tx) error { return tx.ReplaceChange(ctx, posB, back) }); err != nil {
		t.Fatal(err)
	}
	if got := moveSummary(readMoves(t, s, []string{villageD}, 0, 10)); len(got) != 0 {
		t.Errorf("%s after the rewrite back: %q, want nothing", villageD, got)
	}
	if got := moveSummary(readMoves(t, s, []string{villageA}, posA, 10)); !slices.Equal(got, []string{fmt.Sprintf("%d %s<-%s stays", posB, villageA, "")}) {
		t.Errorf("%s after the rewrite back: %q", villageA, got)
	}

	if _, err := s.Compact(ctx, posA); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check after compaction: %v", err)
	}
	for _, v := range []string{villageA, villageB} {
		if got := readMoves(t, s, []string{v}, posA, 10); slices.ContainsFunc(got, func(e syncengine.AreaEntry) bool { return e.Pos == posA }) {
			t.Errorf("%s still reads the compacted move", v)
		}
	}
}

// A change that sets no field (a server settling a move) is filed under the
// areas of the upserts it overwrites too: replicas holding those show the
// record there. A change that sets fields is not, so that no other village's
// data follows a write it overwrote.
func TestSettlingChangeIsFiledWhereItsRecordWasShown(t *testing.T) {
	s := openStore(t)
	p1, p2, p3, srv := replicaID("p1"), replicaID("p2"), replicaID("p3"), replicaID("srv")
	id := recordID(1)
	apply(t, s, change(p1, 1, id, villageA, syncengine.VersionVector{}, map[int32]string{1: "x"}))
	base := record(t, s, id).Version()
	// Three concurrent writes put the record in C, D and B.
	apply(t, s, change(p2, 1, id, villageC, base, map[int32]string{9: "c"}))
	apply(t, s, change(p3, 1, id, villageD, base, map[int32]string{8: "d"}))
	apply(t, s, change(srv, 1, id, villageB, base, map[int32]string{2: "b"}))
	all := record(t, s, id).Version()
	settle := apply(t, s, change(srv, 2, id, villageB, all, nil))
	edit := apply(t, s, change(srv, 3, id, villageC, record(t, s, id).Version(), nil))
	// An edit with fields, over a write in B, from C: filed under B alone.
	withFields := apply(t, s, change(srv, 4, id, villageA, record(t, s, id).Version(), map[int32]string{7: "a"}))

	// Whichever of the three shows, the settling change overwrote C and D.
	wantFrom := []string{villageC, villageD}
	for _, tt := range []struct {
		prefixes []string
		want     []string
	}{
		{[]string{villageB}, []string{
			fmt.Sprintf("%d %s<-%s moves in", settle, villageB, strings.Join(wantFrom, ",")),
			fmt.Sprintf("%d %s<-%s moves out", edit, villageC, villageB),
		}},
		{[]string{townB}, []string{
			fmt.Sprintf("%d %s<-%s moves out", settle, villageB, strings.Join(wantFrom, ",")),
			fmt.Sprintf("%d %s<-%s moves in", edit, villageC, villageB),
			fmt.Sprintf("%d %s<-%s moves out", withFields, villageA, villageC),
		}},
		{[]string{villageA}, []string{
			fmt.Sprintf("%d %s<-%s moves in", withFields, villageA, villageC),
		}},
	} {
		got := moveSummary(readMoves(t, s, tt.prefixes, settle-1, 10))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%v:\n got %q\nwant %q", tt.prefixes, got, tt.want)
		}
	}
	if _, err := s.Compact(t.Context(), withFields); err != nil {
		t.Fatal(err)
	}
}

// Check finds a move whose second key is missing or names another area.
func TestCheckFindsBrokenMoves(t *testing.T) {
	moved := func(t *testing.T) (string, syncengine.Position) {
		t.Helper()
		path := realStore(t, t.TempDir())
		s := openAt(t, path)
		phone := replicaID("mover")
		id := recordID(1 << 40)
		apply(t, s, change(phone, 1, id, villageA, syncengine.VersionVector{}, map[int32]string{1: "x"}))
		pos := apply(t, s, change(phone, 2, id, villageB, record(t, s, id).Version(), map[int32]string{2: "y"}))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return path, pos
	}
	key := func(area string, pos syncengine.Position) []byte {
		return binary.BigEndian.AppendUint64([]byte(area), uint64(pos))
	}
	tests := []struct {
		name string
		fn   func(pos syncengine.Position) func(*bbolt.Tx) error
	}{
		{"old area key removed", func(pos syncengine.Position) func(*bbolt.Tx) error {
			return func(tx *bbolt.Tx) error { return tx.Bucket([]byte("logarea")).Delete(key(villageA, pos)) }
		}},
		{"old area key names another area", func(pos syncengine.Position) func(*bbolt.Tx) error {
			return func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte("logarea")).Put(key(villageA, pos), []byte(villageC))
			}
		}},
		{"new area key names a bad area", func(pos syncengine.Position) func(*bbolt.Tx) error {
			return func(tx *bbolt.Tx) error { return tx.Bucket([]byte("logarea")).Put(key(villageB, pos), []byte("53x")) }
		}},
		{"stray key under a third area", func(pos syncengine.Position) func(*bbolt.Tx) error {
			return func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte("logarea")).Put(key(villageD, pos), []byte(villageB))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, pos := moved(t)
			if err := openAndCheck(t, path); err != nil {
				t.Fatalf("before: %v", err)
			}
			rawUpdate(t, path, tt.fn(pos))
			if err := openAndCheck(t, path); !errors.Is(err, boltstore.ErrCorrupt) {
				t.Errorf("Check: %v, want ErrCorrupt", err)
			}
		})
	}
}

// A store of schema 2 opens as schema 3: its entries read as no moves, and
// moves made after the upgrade are indexed.
func TestOpenUpgradesSchema2(t *testing.T) {
	path := realStore(t, t.TempDir())
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 2))
	})
	s := openAt(t, path)
	phone := replicaID("mover")
	id := recordID(1 << 41)
	apply(t, s, change(phone, 1, id, villageA, syncengine.VersionVector{}, map[int32]string{1: "x"}))
	pos := apply(t, s, change(phone, 2, id, villageC, record(t, s, id).Version(), map[int32]string{2: "y"}))
	got, _, err := s.ReadLogAreaMoves(t.Context(), []string{villageA}, pos-1, 10)
	if err != nil || len(got) != 1 || got[0].Move != syncengine.MovesOut {
		t.Errorf("read of the old village after the upgrade: %v, %v; want the move out", got, err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var schema uint64
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		schema = binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("schema")))
		return nil
	})
	if schema != 10 {
		t.Errorf("schema after the upgrade = %d, want 10 (the current one)", schema)
	}
}

// moveModel is what a randomised run expects of the log: per position, the
// change's area and the area the record came from.
type moveModel struct {
	area, from map[syncengine.Position]string
}

// Records move at random between the villages of two townships, with edits,
// compactions and re-stamps in between. Every read of every prefix set, at
// every limit, returns exactly the entries whose change's area or old area is
// under the prefixes, once each, with the move as the model says; Check
// passes throughout.
func TestReadLogAreaMovesRandomised(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (set it in the test to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	s := openStore(t)
	ctx := t.Context()
	villages := []string{villageA, villageB, villageC, villageD}
	phone := replicaID("phone")
	m := moveModel{area: map[syncengine.Position]string{}, from: map[syncengine.Position]string{}}
	counter := uint64(0)
	for step := range 400 {
		counter++
		id := recordID(uint64(rng.IntN(12)))
		r := record(t, s, id)
		area := r.Area()
		if area == "" || rng.IntN(3) == 0 {
			area = villages[rng.IntN(len(villages))]
		}
		pos := apply(t, s, change(phone, counter, id, area, r.Version(), map[int32]string{3: fmt.Sprint(step)}))
		m.area[pos] = area
		if old := r.Area(); old != "" && old != area {
			m.from[pos] = old
		}
		switch rng.IntN(40) {
		case 0:
			if _, err := s.Compact(ctx, pos-min(pos, syncengine.Position(rng.IntN(20)))); err != nil {
				t.Fatal(err)
			}
		case 1:
			// Re-stamp the last entry, as a relay's clock correction does.
			e := readLog(t, s, pos-1)[0]
			c := e.Change.Clone()
			c.Stamp.WallMS++
			if err := s.Update(ctx, func(tx syncengine.Tx) error { return tx.ReplaceChange(ctx, e.Pos, c) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	end, _ := s.LogEnd(ctx)
	compacted, _ := s.Compacted(ctx)
	for _, prefixes := range [][]string{{villageA}, {villageB}, {townA}, {townB}, {villageA, villageC}, {townB, villageA}, {""}} {
		under := func(a string) bool {
			return a != "" && slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(a, p) })
		}
		var want []string
		for p := compacted + 1; p <= end; p++ {
			area, from := m.area[p], m.from[p]
			if !under(area) && !under(from) {
				continue
			}
			mv := syncengine.Stays
			switch {
			case from != "" && under(area) && !under(from):
				mv = syncengine.MovesIn
			case from != "" && under(from) && !under(area):
				mv = syncengine.MovesOut
			}
			want = append(want, fmt.Sprintf("%d %s<-%s %v", p, area, from, mv))
		}
		for _, limit := range []int{1, 5, 1000} {
			got := moveSummary(readMoves(t, s, prefixes, compacted, limit))
			if !slices.Equal(got, want) {
				t.Errorf("seed %d: %v limit %d:\n got %q\nwant %q", seed, prefixes, limit, got, want)
			}
		}
	}
}

// ForgetOutside deletes the records outside the prefixes, except those with
// a change of the store's own that the upstream has not acknowledged, and
// keeps the log.
func TestForgetOutside(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	self, county, phone := s.Replica(), replicaID("county"), replicaID("phone")
	keep := []syncengine.RecordID{recordID(1), recordID(2)}
	gone := []syncengine.RecordID{recordID(3), recordID(4)}
	apply(t, s, change(phone, 1, keep[0], villageA, syncengine.VersionVector{}, map[int32]string{1: "a"}))
	apply(t, s, change(phone, 2, keep[1], villageB, syncengine.VersionVector{}, map[int32]string{1: "b"}))
	apply(t, s, change(phone, 3, gone[0], villageC, syncengine.VersionVector{}, map[int32]string{1: "c"}))
	acked := apply(t, s, change(self, 1, gone[1], villageD, syncengine.VersionVector{}, map[int32]string{1: "d"}))
	pending := recordID(5)
	apply(t, s, change(self, 2, pending, villageD, syncengine.VersionVector{}, map[int32]string{1: "e"}))
	if err := s.Update(ctx, func(tx syncengine.Tx) error {
		return tx.SetCursor(ctx, county, syncengine.Cursor{Acked: acked})
	}); err != nil {
		t.Fatal(err)
	}
	logBefore := readLog(t, s, 0)
	end := logBefore[len(logBefore)-1].Pos

	for _, prefixes := range [][]string{nil, {""}, {townA, ""}} {
		if n, err := s.ForgetOutside(ctx, prefixes, county, end); err != nil || n != 0 {
			t.Errorf("ForgetOutside(%q) = %d, %v; want nothing forgotten", prefixes, n, err)
		}
	}
	if _, err := s.ForgetOutside(ctx, []string{"53x"}, county, end); !errors.Is(err, boltstore.ErrInvalidPrefix) {
		t.Errorf("bad prefix: %v, want ErrInvalidPrefix", err)
	}
	// Changes outside the prefixes after through (a move not yet pulled by
	// every device of the old area) keep their records.
	if n, err := s.ForgetOutside(ctx, []string{townA}, county, end-2); err != nil || n != 1 {
		t.Errorf("ForgetOutside(%s) through %d = %d, %v; want the record whose change is before it", townA, end-2, n, err)
	}
	n, err := s.ForgetOutside(ctx, []string{townA}, county, end)
	if err != nil || n != len(gone)-1 {
		t.Fatalf("ForgetOutside(%s) = %d, %v; want %d", townA, n, err, len(gone)-1)
	}
	for _, id := range gone {
		if r := record(t, s, id); !r.IsEmpty() {
			t.Errorf("record %v kept: %v", id, r)
		}
	}
	for _, id := range append(keep, pending) {
		if r := record(t, s, id); r.IsEmpty() {
			t.Errorf("record %v forgotten", id)
		}
	}
	if got, _ := snapshotAll(t, s, townB, 10); len(got) != 1 || got[0].ID() != pending {
		t.Errorf("snapshot of %s: %v, want the pending record alone", townB, ids(got))
	}
	if got := readLog(t, s, 0); len(got) != len(logBefore) {
		t.Errorf("log has %d entries, want the %d it had", len(got), len(logBefore))
	}
	if seen, err := seenDot(t, s, syncengine.Dot{Replica: phone, Counter: 3}); err != nil || !seen {
		t.Errorf("dot of a forgotten record: seen %v, %v; want still seen", seen, err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// Once the county acknowledged it, the pending record goes too.
	if err := s.Update(ctx, func(tx syncengine.Tx) error {
		return tx.SetCursor(ctx, county, syncengine.Cursor{Acked: acked + 1})
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ForgetOutside(ctx, []string{villageA, villageB}, county, end); err != nil || n != 1 {
		t.Errorf("second ForgetOutside = %d, %v; want 1", n, err)
	}
}

func seenDot(t *testing.T, s *boltstore.Store, d syncengine.Dot) (bool, error) {
	t.Helper()
	var seen bool
	err := s.View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		seen, err = tx.Seen(t.Context(), d)
		return err
	})
	return seen, err
}
