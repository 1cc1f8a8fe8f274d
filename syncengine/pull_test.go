package syncengine_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
)

// areaLog is a small AreaLog over a node's memstore for the pull tests: it
// replays the log to know where each record was before each change.
type areaLog struct {
	*node
	*memstore.Store
	compacted   syncengine.Position
	snapshotRds int // Snapshot calls
}

func newAreaLog(t *testing.T, now *int64, name string) *areaLog {
	n := newNode(t, now, name, 0)
	return &areaLog{node: n, Store: n.store}
}

func (l *areaLog) entries(ctx context.Context) ([]syncengine.Entry, error) {
	var all []syncengine.Entry
	err := l.store.View(ctx, func(tx syncengine.ReadTx) error {
		for after := syncengine.Position(0); ; {
			page, err := tx.ReadLog(ctx, after, 100)
			if err != nil {
				return err
			}
			all = append(all, page...)
			if len(page) < 100 {
				return nil
			}
			after = page[len(page)-1].Pos
		}
	})
	return all, err
}

func (l *areaLog) LogEnd(ctx context.Context) (syncengine.Position, error) {
	es, err := l.entries(ctx)
	if err != nil || len(es) == 0 {
		return 0, err
	}
	return es[len(es)-1].Pos, nil
}

// Snapshot pages the records under prefix in (area, id) order; a token is
// the last key read.
func (l *areaLog) Snapshot(ctx context.Context, prefix string, token []byte, limit int) (syncengine.SnapshotPage, error) {
	l.snapshotRds++
	if token != nil && !strings.HasPrefix(string(token), prefix) {
		return syncengine.SnapshotPage{}, fmt.Errorf("token %q: %w", token, syncengine.ErrBadPullCursor)
	}
	es, err := l.entries(ctx)
	if err != nil {
		return syncengine.SnapshotPage{}, err
	}
	page := syncengine.SnapshotPage{}
	if len(es) > 0 {
		page.AsOf = es[len(es)-1].Pos
	}
	var recs []syncengine.Record
	for _, e := range es {
		r := l.record(e.Change.RecordID)
		if strings.HasPrefix(r.Area(), prefix) && !slices.ContainsFunc(recs, func(x syncengine.Record) bool { return x.ID() == r.ID() }) {
			recs = append(recs, r)
		}
	}
	key := func(r syncengine.Record) string { return r.Area() + r.ID().String() }
	slices.SortFunc(recs, func(a, b syncengine.Record) int { return cmp.Compare(key(a), key(b)) })
	for _, r := range recs {
		if token != nil && key(r) <= string(token) {
			continue
		}
		if len(page.Records) == limit {
			page.Next = []byte(key(page.Records[limit-1]))
			break
		}
		page.Records = append(page.Records, r)
	}
	return page, nil
}

func (l *areaLog) ReadLogAreaMoves(ctx context.Context, prefixes []string, after syncengine.Position, limit int) ([]syncengine.AreaEntry, syncengine.Position, error) {
	if after < l.compacted {
		return nil, 0, fmt.Errorf("after %d: %w", after, syncengine.ErrCompacted)
	}
	es, err := l.entries(ctx)
	if err != nil {
		return nil, 0, err
	}
	through := after
	if len(es) > 0 {
		through = max(after, es[len(es)-1].Pos)
	}
	var out []syncengine.AreaEntry
	was := map[syncengine.RecordID]string{}
	for _, e := range es {
		prev := was[e.Change.RecordID]
		was[e.Change.RecordID] = e.Change.Area
		if e.Pos <= after || len(out) == limit {
			continue
		}
		ae := syncengine.AreaEntry{Entry: e}
		if prev != "" && prev != e.Change.Area {
			ae.Areas = []string{prev}
		}
		in, wasIn := syncengine.InAreas(e.Change.Area, prefixes), prev != "" && syncengine.InAreas(prev, prefixes)
		switch {
		case !in && !wasIn:
			continue
		case len(ae.Areas) > 0 && in && !wasIn:
			ae.Move = syncengine.MovesIn
		case len(ae.Areas) > 0 && wasIn && !in:
			ae.Move = syncengine.MovesOut
		}
		out = append(out, ae)
		if len(out) == limit {
			through = e.Pos
		}
	}
	return out, through, nil
}

// recordEncoder sends engine values as they are: each record costs 100
// bytes, each change 10.
type recordEncoder struct{}

func (recordEncoder) EncodeRecord(r syncengine.Record) (syncengine.Record, int) { return r, 100 }
func (recordEncoder) EncodeChange(c syncengine.Change) (syncengine.Change, int, error) {
	return c, 10, nil
}

type page = syncengine.PullPage[syncengine.Record, syncengine.Change]

// pullPages runs a pull of scope for puller after cur, and returns its pages
// (stopping after stop pages when stop > 0: the send fails).
func pullPages(t *testing.T, l *areaLog, s syncengine.MoveSettler, puller syncengine.ReplicaID, scope []string, cur syncengine.PullCursor, changed bool, limit, stop int) ([]page, syncengine.PullCursor, error) {
	t.Helper()
	sc, err := syncengine.ParseScope(scope)
	if err != nil {
		t.Fatal(err)
	}
	var pages []page
	p := syncengine.Puller[syncengine.Record, syncengine.Change]{Log: l, Encoder: recordEncoder{}, Settler: s}
	end, err := p.Pull(t.Context(), syncengine.PullRequest{Puller: puller, Scope: sc, Cursor: cur, ScopeChanged: changed, Limit: limit}, func(pg page) error {
		if stop > 0 && len(pages) == stop {
			return errCut
		}
		pages = append(pages, pg)
		return nil
	})
	return pages, end, err
}

var errCut = errors.New("link cut")

// store is what a puller does with the pages: each stored in one
// transaction, as syncclient does, and the cursor kept.
func store(t *testing.T, to *node, from syncengine.ReplicaID, pages []page) (syncengine.PulledResult, syncengine.PullCursor) {
	t.Helper()
	var sum syncengine.PulledResult
	var cur syncengine.PullCursor
	for _, pg := range pages {
		err := to.store.Update(t.Context(), func(tx syncengine.Tx) error {
			res, err := syncengine.ReceivePulledTx(t.Context(), tx, syncengine.Pulled{Sender: from, Records: pg.Records, Changes: pg.Changes}, syncengine.PulledOptions{Clock: to.clock, WallMS: to.wall(), Compare: true})
			sum.Applied, sum.Duplicates, sum.Malformed = sum.Applied+res.Applied, sum.Duplicates+res.Duplicates, sum.Malformed+res.Malformed
			sum.Changed = sum.Changed || res.Changed
			return err
		})
		if err != nil {
			t.Fatalf("store page: %v", err)
		}
		cur = pg.Cursor
	}
	return sum, cur
}

func shape(pages []page) []string {
	var out []string
	for _, pg := range pages {
		s := fmt.Sprintf("%dr%dc", len(pg.Records), len(pg.Changes))
		if pg.Begin != syncengine.NoSnapshot {
			s = fmt.Sprintf("begin(%d) ", pg.Begin) + s
		}
		if pg.End {
			s += " end"
		}
		if pg.Departures {
			s = "departures " + s
		}
		if pg.CaughtUp {
			s += " caught up"
		}
		out = append(out, s)
	}
	return out
}

// A phone with no cursor gets a snapshot of its village in pages of the
// limit, then the log after it; the records it stores equal the server's;
// a pull cut short goes on from the last page's cursor with nothing twice;
// a pull from the final cursor is one empty caught-up page.
func TestPullSnapshotThenLog(t *testing.T) {
	var now int64 = morning
	srv := newAreaLog(t, &now, "township")
	phone := newNode(t, &now, "phone", 0)
	for i := range 5 {
		srv.write(recordID(uint64(i+1)), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "a"})
	}
	srv.write(recordID(9), kindPerson, areaVillageB, syncengine.VersionVector{}, map[int32]string{3: "b"})

	pages, _, err := pullPages(t, srv, nil, phone.id, []string{areaVillageA}, syncengine.PullCursor{}, false, 250, 2)
	if !errors.Is(err, errCut) {
		t.Fatalf("cut pull: %v", err)
	}
	if got, want := shape(pages), []string{"begin(1) 2r0c", "2r0c"}; !slices.Equal(got, want) {
		t.Fatalf("pages before the cut %v, want %v", got, want)
	}
	_, cur := store(t, phone, srv.id, pages)
	now += minute
	srv.write(recordID(6), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "a"})
	srv.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "edited"})

	pages, end, err := pullPages(t, srv, nil, phone.id, []string{areaVillageA}, cur, false, 250, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot's last page reads record 6 too (written meanwhile); the
	// log after the snapshot's start brings both changes again, as no-ops.
	if got, want := shape(pages), []string{"2r0c end", "0r2c caught up"}; !slices.Equal(got, want) {
		t.Fatalf("pages after the cut %v, want %v", got, want)
	}
	res, _ := store(t, phone, srv.id, pages)
	if res.Applied != 2 || res.Malformed != 0 {
		t.Errorf("stored %+v, want both log changes applied", res)
	}
	for i := range 6 {
		assertSameRecord(t, recordID(uint64(i+1)), srv.node, phone)
	}
	if r := phone.record(recordID(9)); !r.IsEmpty() {
		t.Errorf("the phone of village A holds village B's record %v", r.ID())
	}
	if c := phone.cursor(srv.node); c != (syncengine.Cursor{}) {
		t.Errorf("a pull moved the phone's cursor for the server to %+v: its changes have no position there", c)
	}
	// Log pages hold what the limit allows: here one change each.
	for i := range 3 {
		srv.write(recordID(uint64(i+1)), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "again"})
	}
	pages, end, err = pullPages(t, srv, nil, phone.id, []string{areaVillageA}, end, false, 15, 0)
	if got, want := shape(pages), []string{"0r1c", "0r1c", "0r1c caught up"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("log pages at a limit of 15 bytes: %v, %v; want %v", got, err, want)
	}
	// No limit given: the default, not pages of nothing.
	if pages, _, err := pullPages(t, srv, nil, phone.id, []string{areaVillageA}, syncengine.PullCursor{}, false, 0, 0); err != nil || !slices.Equal(shape(pages), []string{"begin(1) 6r0c", "0r0c end", "0r0c caught up"}) {
		t.Errorf("a pull without a limit: %v, %v", shape(pages), err)
	}
	pages, again, err := pullPages(t, srv, nil, phone.id, []string{areaVillageA}, end, false, 250, 0)
	if err != nil || !slices.Equal(shape(pages), []string{"0r0c caught up"}) || !reflect.DeepEqual(again, end) {
		t.Errorf("pull from the final cursor: %v, %+v, %v; want one empty caught-up page at %+v", shape(pages), again, err, end)
	}
}

// The puller's own changes, and those the server received from it, are not
// sent back; the changes it stores are noted as the server's, so it never
// pushes them back either.
func TestPullSendsNoEcho(t *testing.T) {
	var now int64 = morning
	srv := newAreaLog(t, &now, "county")
	town, phone := newNode(t, &now, "township", 0), newNode(t, &now, "phone", 0)
	town.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "own"})
	phone.write(recordID(3), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "relayed"})
	push(t, phone, town, 0)
	push(t, town, srv.node, 0)
	srv.write(recordID(2), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "county's"})
	end, err := srv.LogEnd(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pages, _, err := pullPages(t, srv, nil, town.id, []string{areaVillageA}, syncengine.PullCursor{Phase: syncengine.PullLog}, false, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) != 1 || len(pages[0].Changes) != 1 || pages[0].Changes[0].Origin != srv.id || pages[0].Cursor.Pos != end {
		t.Fatalf("pull: %v, want only the county's change, through %d", shape(pages), end)
	}
	store(t, town, srv.id, pages)
	b, err := syncengine.NextBatch(t.Context(), town.store, town.id, 0, syncengine.SendOptions{Exclude: srv.id})
	if err != nil || len(b.Changes) != 2 || slices.ContainsFunc(b.Changes, func(e syncengine.Entry) bool { return e.Change.Origin == srv.id }) {
		t.Errorf("the township's next push: %v, %v; want its own and its phone's change only", b.Changes, err)
	}
}

// A page's records are merged (Changed says whether a stored state moved);
// a change already held is a duplicate; a change that cannot be applied is
// passed by and the rest of the page kept.
func TestReceivePulled(t *testing.T) {
	var now int64 = morning
	srv, phone := newNode(t, &now, "township", 0), newNode(t, &now, "phone", 0)
	c1 := srv.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "x"})
	c2 := srv.write(recordID(2), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "y"})
	bad := c2
	bad.Dot.Counter, bad.Kind = 99, kindHousehold // another kind than record 2's
	rec := srv.record(recordID(1))
	pg := page{Records: []syncengine.Record{rec}, Changes: []syncengine.Change{c1, c2, bad}}
	res, _ := store(t, phone, srv.id, []page{pg})
	if !res.Changed || res.Applied != 2 || res.Malformed != 1 {
		t.Errorf("first store: %+v, want changed, c1 (a no-op on the merged record, logged) and c2 applied, the other kind malformed", res)
	}
	res, _ = store(t, phone, srv.id, []page{{Records: []syncengine.Record{rec}, Changes: []syncengine.Change{c2}}})
	if res.Changed || res.Applied != 0 || res.Duplicates != 1 {
		t.Errorf("second store: %+v, want nothing changed, c2 a duplicate", res)
	}
	assertSameRecord(t, recordID(2), srv, phone)

	// A change passed by as malformed does not move the puller's clock.
	future := c1
	future.Dot.Counter, future.Stamp.WallMS, future.Stamp.Counter = 100, now+day, 0
	future.Kind = kindHousehold
	before := phone.clock.Last()
	if res, _ := store(t, phone, srv.id, []page{{Changes: []syncengine.Change{future}}}); res.Malformed != 1 {
		t.Fatalf("a change of another kind stored: %+v", res)
	}
	if after := phone.clock.Last(); after != before {
		t.Errorf("a malformed change a day ahead moved the clock from %v to %v", before, after)
	}
}

// A record moved into the puller's areas comes whole, at the start of a page,
// before the change that brought it; one moved out comes as the change
// alone; a record the settler says the puller would forget does not come.
func TestPullMoves(t *testing.T) {
	var now int64 = morning
	srv := newAreaLog(t, &now, "township")
	phoneB := newNode(t, &now, "phone B", 0)
	srv.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "moves"})
	srv.write(recordID(2), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "raced"})
	srv.write(recordID(3), kindPerson, areaVillageB, syncengine.VersionVector{}, map[int32]string{3: "stays"})
	_, startB, err := pullPages(t, srv, nil, phoneB.id, []string{areaVillageB}, syncengine.PullCursor{}, false, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	startA, err := srv.LogEnd(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.write(recordID(3), kindPerson, areaVillageB, syncengine.VersionVector{}, map[int32]string{3: "edited"})
	srv.write(recordID(1), kindPerson, areaVillageB, syncengine.VersionVector{}, nil)
	srv.write(recordID(2), kindPerson, areaVillageB, syncengine.VersionVector{}, nil)

	away := awaySettler{away: recordID(2)}
	pages, _, err := pullPages(t, srv, &away, phoneB.id, []string{areaVillageB}, startB, false, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := shape(pages), []string{"0r1c", "1r1c caught up"}; !slices.Equal(got, want) {
		t.Fatalf("village B's pull %v, want the edit, then the moved record whole with its move", got)
	}
	if pages[1].Records[0].ID() != recordID(1) || pages[1].Changes[0].RecordID != recordID(1) {
		t.Errorf("the page of the move holds %v and %v, want record 1 and its move", pages[1].Records[0].ID(), pages[1].Changes[0].RecordID)
	}
	store(t, phoneB, srv.id, pages)
	assertSameRecord(t, recordID(1), srv.node, phoneB)
	if away.settled == 0 {
		t.Errorf("the settler was not shown the moved records")
	}

	pages, _, err = pullPages(t, srv, nil, replicaID("phone A"), []string{areaVillageA}, syncengine.PullCursor{Phase: syncengine.PullLog, Pos: startA}, false, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := shape(pages); !slices.Equal(got, []string{"0r2c caught up"}) || pages[0].Changes[0].Area != areaVillageB {
		t.Errorf("village A's pull %v, want the two changes that moved records out, alone", got)
	}
}

// awaySettler settles nothing and says one record is away; it counts the
// calls that had records to look at.
type awaySettler struct {
	away    syncengine.RecordID
	settled int
}

func (a *awaySettler) Settle(_ context.Context, recs []syncengine.Record) (int, error) {
	if len(recs) > 0 {
		a.settled++
	}
	return 0, nil
}

func (a *awaySettler) Away(r syncengine.Record, _ []string) bool { return r.ID() == a.away }

// A cursor before the compacted log restarts with a snapshot; a cursor of
// other areas first gets the changes that took records out of the new
// areas since it (with its own cursor), then a snapshot of them; a cursor
// the pull did not make is refused.
func TestPullFallsBackToSnapshot(t *testing.T) {
	var now int64 = morning
	srv := newAreaLog(t, &now, "township")
	phone := replicaID("phone")
	const areaVillageC = "530102001003"
	srv.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "x"})
	srv.write(recordID(2), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "y"})
	old := syncengine.PullCursor{Phase: syncengine.PullLog, Pos: 2}
	srv.write(recordID(1), kindPerson, areaVillageC, syncengine.VersionVector{}, nil)

	srv.compacted = 3
	pages, _, err := pullPages(t, srv, nil, phone, []string{areaVillageA}, old, false, 1000, 0)
	if got, want := shape(pages), []string{"begin(2) 1r0c", "0r0c end", "0r0c caught up"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("compacted: %v, %v; want %v", got, err, want)
	}

	srv.compacted = 0
	pages, _, err = pullPages(t, srv, nil, phone, []string{areaVillageA, areaVillageB}, old, true, 1000, 0)
	if got, want := shape(pages), []string{"departures 0r1c", "begin(3) 1r0c", "0r0c end", "0r0c caught up"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("areas changed: %v, %v; want %v", got, err, want)
	}
	if !reflect.DeepEqual(pages[0].Cursor, syncengine.PullCursor{Phase: syncengine.PullLog, Pos: 3}) || pages[0].Changes[0].Area != areaVillageC {
		t.Errorf("the departures' cursor %+v, want the old cursor moved past the move out", pages[0].Cursor)
	}

	for name, cur := range map[string]syncengine.PullCursor{
		"unknown phase":    {Phase: 9},
		"past the areas":   {Phase: syncengine.PullSnapshot, Prefix: 2},
		"page of the last": {Phase: syncengine.PullSnapshot, Prefix: 1, Page: []byte("x")},
		"other prefix":     {Phase: syncengine.PullSnapshot, Page: []byte("1")},
	} {
		if _, _, err := pullPages(t, srv, nil, phone, []string{areaVillageA}, cur, false, 1000, 0); !errors.Is(err, syncengine.ErrBadPullCursor) {
			t.Errorf("%s: %v, want ErrBadPullCursor", name, err)
		}
	}
}

// A snapshot page with a move the settler settles is read again, with the
// settled record; one larger than the limit goes alone.
func TestPullSettlesAndLimits(t *testing.T) {
	var now int64 = morning
	srv := newAreaLog(t, &now, "township")
	for i := range 3 {
		srv.write(recordID(uint64(i+1)), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "x"})
	}
	st := &onceSettler{srv: srv.node}
	pages, _, err := pullPages(t, srv, st, replicaID("phone"), []string{areaVillageA}, syncengine.PullCursor{}, false, 50, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := shape(pages), []string{"begin(1) 1r0c", "1r0c", "1r0c end", "0r1c caught up"}; !slices.Equal(got, want) {
		t.Errorf("pages %v, want %v (one record a page at a limit below its size, then the settling change)", got, want)
	}
	if st.calls < 2 || srv.snapshotRds < 5 {
		t.Errorf("settler called %d times, %d snapshot reads: the settled page was not read again", st.calls, srv.snapshotRds)
	}
	if v := pages[0].Records[0]; string(v.Values()[3]) != "settled" {
		t.Errorf("the first record went as %q, want its settled state", v.Values()[3])
	}

	// A move read from the log and settled there: the settling change,
	// appended after the page read, comes in the same pull.
	after, err := srv.LogEnd(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.write(recordID(2), kindPerson, areaVillageB, syncengine.VersionVector{}, nil)
	st2 := &onceSettler{srv: srv.node, id: recordID(2)}
	pages, _, err = pullPages(t, srv, st2, replicaID("phone"), []string{areaVillageA, areaVillageB}, syncengine.PullCursor{Phase: syncengine.PullLog, Pos: after}, false, 1000, 0)
	if got := shape(pages); err != nil || !slices.Equal(got, []string{"0r2c caught up"}) || !st2.done {
		t.Errorf("pull of a move the server settles: %v, %v; want the move and its settling change", got, err)
	}
}

// onceSettler settles record 1 the first time it is shown it, with a change
// of the server.
type onceSettler struct {
	srv   *node
	id    syncengine.RecordID // zero: record 1
	calls int
	done  bool
}

func (s *onceSettler) Settle(_ context.Context, recs []syncengine.Record) (int, error) {
	s.calls++
	id := s.id
	if id.IsZero() {
		id = recordID(1)
	}
	i := slices.IndexFunc(recs, func(r syncengine.Record) bool { return r.ID() == id })
	if s.done || i < 0 {
		return 0, nil
	}
	s.done = true
	s.srv.write(id, kindPerson, recs[i].Area(), syncengine.VersionVector{}, map[int32]string{3: "settled"})
	return 1, nil
}

func (*onceSettler) Away(syncengine.Record, []string) bool { return false }

// bulkTx is a memstore transaction with the bulk methods, counting their
// calls.
type bulkTx struct {
	syncengine.Tx
	reads, fresh *int
}

func (b bulkTx) Records(ctx context.Context, ids []syncengine.RecordID) ([]syncengine.Record, error) {
	*b.reads++
	out := make([]syncengine.Record, len(ids))
	for i, id := range ids {
		r, err := b.Record(ctx, id)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

func (b bulkTx) PutNewRecord(ctx context.Context, r syncengine.Record) error {
	*b.fresh++
	return b.PutRecord(ctx, r)
}

// A page's records are read in one go where the store can, records held
// nowhere are stored as new, and a record that comes twice in a page is
// merged with itself stored, not read before it was.
func TestReceivePulledInBulk(t *testing.T) {
	var now int64 = morning
	srv, phone := newNode(t, &now, "township", 0), newNode(t, &now, "phone", 0)
	srv.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "x"})
	srv.write(recordID(2), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "y"})
	first := srv.record(recordID(1))
	srv.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{4: "z"})
	r1, r2 := srv.record(recordID(1)), srv.record(recordID(2))
	var reads, fresh int
	storeBulk := func(recs ...syncengine.Record) {
		t.Helper()
		err := phone.store.Update(t.Context(), func(tx syncengine.Tx) error {
			_, err := syncengine.ReceivePulledTx(t.Context(), bulkTx{tx, &reads, &fresh}, syncengine.Pulled{Sender: srv.id, Records: recs}, syncengine.PulledOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	storeBulk(first, r2)
	if reads != 1 || fresh != 2 {
		t.Errorf("a page of two new records: %d bulk reads, %d new puts; want 1 and 2", reads, fresh)
	}
	storeBulk(r1, first)
	if reads != 1 || fresh != 2 {
		t.Errorf("a page with a record twice: %d bulk reads, %d new puts; want no more", reads, fresh)
	}
	assertSameRecord(t, recordID(1), srv, phone)
	assertSameRecord(t, recordID(2), srv, phone)
}
