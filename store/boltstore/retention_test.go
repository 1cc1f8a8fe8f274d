package boltstore_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

const day = 24 * time.Hour

// retentionStart is the time of the first compaction of the retention tests.
var retentionStart = time.Date(2026, 9, 1, 2, 0, 0, 0, time.UTC)

func putDevices(t *testing.T, s *boltstore.Store, ids ...syncengine.ReplicaID) {
	t.Helper()
	for _, id := range ids {
		if err := s.Registry().PutDevice(t.Context(), boltstore.Device{ID: id, Name: id.String(), Areas: []string{townA}}); err != nil {
			t.Fatal(err)
		}
	}
}

// pulled records that device id's last completed pull delivered through pos.
func pulled(t *testing.T, s *boltstore.Store, id syncengine.ReplicaID, pos syncengine.Position) {
	t.Helper()
	if err := s.Registry().UpdateActivity(t.Context(), id, func(a *boltstore.Activity) { a.PulledThrough = pos }); err != nil {
		t.Fatal(err)
	}
}

func compactRetained(t *testing.T, s *boltstore.Store, r boltstore.Retention) boltstore.RetentionReport {
	t.Helper()
	rep, err := s.CompactRetained(t.Context(), r)
	if err != nil {
		t.Fatalf("CompactRetained(%v, max age %v): %v", r.Now, r.MaxAge, err)
	}
	if cp, err := s.Compacted(t.Context()); err != nil || cp != rep.Through {
		t.Errorf("Compacted = %d, %v; the report says %d", cp, err, rep.Through)
	}
	return rep
}

// TestCompactRetained follows a township's log over two months: one phone
// syncs every day, another is left in a drawer. What every device pulled
// goes first; then what arrived more than 30 days ago, whoever has not
// pulled it; once the drawer phone pulls, the rest.
func TestCompactRetained(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 8))
	daily, drawer, gone := replicaID("daily"), replicaID("drawer"), replicaID("revoked")
	putDevices(t, s, daily, drawer, gone)
	if err := s.Registry().RevokeDevice(ctx, gone); err != nil {
		t.Fatal(err)
	}
	const maxAge = 30 * day
	at := func(d int) time.Time { return retentionStart.Add(time.Duration(d) * day) }

	// Day 0: both phones have the first 10 entries, the drawer phone only 4.
	appendRandom(t, s, rng, 10)
	pulled(t, s, daily, 10)
	pulled(t, s, drawer, 4)
	rep := compactRetained(t, s, boltstore.Retention{Now: at(0), MaxAge: maxAge})
	if rep.Pulled != 4 || rep.Aged != 0 || rep.Dropped != 4 || rep.Through != 4 || !rep.HeldBy.IsZero() {
		t.Fatalf("day 0: %+v; want 4 pulled by all and dropped", rep)
	}
	// Days 10 and 25: more entries; the drawer phone holds them all.
	appendRandom(t, s, rng, 10)
	pulled(t, s, daily, 20)
	if rep := compactRetained(t, s, boltstore.Retention{Now: at(10), MaxAge: maxAge}); rep.Dropped != 0 || rep.Through != 4 {
		t.Fatalf("day 10: %+v; want nothing dropped", rep)
	}
	appendRandom(t, s, rng, 5)
	pulled(t, s, daily, 25)
	compactRetained(t, s, boltstore.Retention{Now: at(25), MaxAge: maxAge})
	marks, err := s.LogMarks(ctx)
	if err != nil || len(marks) != 3 || marks[0].Pos != 10 || !marks[0].At.Equal(at(0)) || marks[2].Pos != 25 {
		t.Fatalf("LogMarks = %+v, %v; want day 0 at 10, day 10 at 20, day 25 at 25", marks, err)
	}
	// Day 35: what was in the log by day 0 is more than 30 days old.
	rep = compactRetained(t, s, boltstore.Retention{Now: at(35), MaxAge: maxAge})
	if rep.Pulled != 4 || rep.Aged != 10 || rep.Dropped != 6 || rep.Through != 10 {
		t.Fatalf("day 35: %+v; want entries through 10 dropped for age", rep)
	}
	// Without a maximum age, only what everyone pulled goes.
	if rep := compactRetained(t, s, boltstore.Retention{Now: at(50)}); rep.Aged != 0 || rep.Dropped != 0 || rep.Through != 10 {
		t.Fatalf("day 50 without a maximum age: %+v; want nothing dropped", rep)
	}
	// Day 45 (a clock set back): day 10's entries are old enough.
	rep = compactRetained(t, s, boltstore.Retention{Now: at(45), MaxAge: maxAge})
	if rep.Aged != 20 || rep.Dropped != 10 || rep.Through != 20 {
		t.Fatalf("day 45: %+v; want entries through 20 dropped for age", rep)
	}
	// The drawer phone comes back: it gets a snapshot (its cursor is before
	// the compacted log) and now has everything.
	if _, _, err := s.ReadLogArea(ctx, []string{townA}, 4, 10); !errors.Is(err, syncengine.ErrCompacted) {
		t.Errorf("reading the log after the drawer phone's position: %v, want ErrCompacted", err)
	}
	pulled(t, s, drawer, 25)
	rep = compactRetained(t, s, boltstore.Retention{Now: at(46), MaxAge: maxAge})
	if rep.Pulled != 25 || rep.Dropped != 5 || rep.Through != 25 {
		t.Fatalf("day 46: %+v; want the rest dropped", rep)
	}
	if marks, err := s.LogMarks(ctx); err != nil || len(marks) != 0 {
		t.Errorf("LogMarks after compacting the whole log = %+v, %v; want none", marks, err)
	}
	if got := readLog(t, s, 25); len(got) != 0 {
		t.Errorf("%d entries left", len(got))
	}
	// The dots index is kept: a retried old change is still recognised.
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		n, err := tx.MaxCounter(ctx, replicaID("phone"))
		if err == nil && n != 25 {
			t.Errorf("MaxCounter after compaction = %d, want 25", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCompactRetainedHeldByUpstream: entries an upstream peer has not
// acknowledged stay, whatever their age.
func TestCompactRetainedHeldByUpstream(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	appendRandom(t, s, rand.New(rand.NewPCG(9, 10)), 20)
	phone, county, next := replicaID("phone"), replicaID("county"), replicaID("new county")
	putDevices(t, s, phone)
	pulled(t, s, phone, 20)

	// A county that has acknowledged nothing yet, named by the caller.
	rep := compactRetained(t, s, boltstore.Retention{Now: retentionStart, MaxAge: day, Upstream: []syncengine.ReplicaID{next}})
	if rep.Pulled != 20 || rep.HeldBy != next || rep.Held != 0 || rep.Dropped != 0 {
		t.Fatalf("with an upstream that acknowledged nothing: %+v; want nothing dropped", rep)
	}
	// A peer with a cursor that is no device: an upstream that has
	// acknowledged 7 entries.
	err := s.Update(ctx, func(tx syncengine.Tx) error {
		return tx.SetCursor(ctx, county, syncengine.Cursor{Received: 3, Acked: 7})
	})
	if err != nil {
		t.Fatal(err)
	}
	rep = compactRetained(t, s, boltstore.Retention{Now: retentionStart.Add(2 * day), MaxAge: day})
	if rep.Aged != 20 || rep.HeldBy != county || rep.Held != 7 || rep.Dropped != 7 || rep.Through != 7 {
		t.Fatalf("with an upstream at 7: %+v; want entries through 7 dropped, no more", rep)
	}
}

// TestLogMarksBounded: hourly marks for longer than the store keeps them are
// thinned, keeping the oldest and the newest, times never going back.
func TestLogMarksBounded(t *testing.T) {
	s := openStore(t)
	rng := rand.New(rand.NewPCG(11, 12))
	const n = 2100
	for i := range n {
		appendRandom(t, s, rng, 1)
		now := retentionStart.Add(time.Duration(i) * time.Hour)
		if i == n-1 {
			now = retentionStart // a clock set back
		}
		compactRetained(t, s, boltstore.Retention{Now: now, MaxAge: 365 * day})
	}
	marks, err := s.LogMarks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) > 2048 || len(marks) < 1024 {
		t.Errorf("%d marks kept, want between 1024 and 2048", len(marks))
	}
	first, last := marks[0], marks[len(marks)-1]
	if first.Pos != 1 || !first.At.Equal(retentionStart) || last.Pos != n || !last.At.Equal(retentionStart.Add((n-2)*time.Hour)) {
		t.Errorf("marks run from %+v to %+v; want the first and the last (its time not before the one before)", first, last)
	}
	for i := 1; i < len(marks); i++ {
		if marks[i].Pos <= marks[i-1].Pos || marks[i].At.Before(marks[i-1].At) {
			t.Fatalf("marks %d and %d out of order: %+v, %+v", i-1, i, marks[i-1], marks[i])
		}
	}
}

// TestLogMarksDamaged: marks that do not decode are dropped, not fatal: they
// only ever let compaction go further.
func TestLogMarksDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s := openAt(t, path)
	appendRandom(t, s, rand.New(rand.NewPCG(13, 14)), 5)
	compactRetained(t, s, boltstore.Retention{Now: retentionStart, MaxAge: day})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(btx *bbolt.Tx) error { return btx.Bucket([]byte("meta")).Put([]byte("logmarks"), []byte("short")) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if marks, err := s.LogMarks(context.Background()); err != nil || len(marks) != 0 {
		t.Fatalf("LogMarks of a damaged value = %+v, %v; want none", marks, err)
	}
	rep := compactRetained(t, s, boltstore.Retention{Now: retentionStart.Add(2 * day), MaxAge: day})
	if rep.Dropped != 0 {
		t.Errorf("compaction after losing the marks: %+v; want nothing dropped", rep)
	}
	if marks, err := s.LogMarks(context.Background()); err != nil || len(marks) != 1 || marks[0].Pos != 5 {
		t.Errorf("LogMarks after a new mark = %+v, %v; want one at 5", marks, err)
	}
}
