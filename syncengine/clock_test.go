package syncengine_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

func TestClockNowIsStrictlyIncreasing(t *testing.T) {
	c := syncengine.NewClock(replicaID("a"), 0)
	walls := []int64{1000, 1000, 999, 1001, 500, 2000}
	var prev syncengine.Stamp
	for i, w := range walls {
		s := c.Now(w)
		if i > 0 && s.Compare(prev) <= 0 {
			t.Fatalf("Now(%d) = %v, not after %v", w, s, prev)
		}
		prev = s
	}
	if got, want := prev, (syncengine.Stamp{WallMS: 2000, Replica: replicaID("a")}); got != want {
		t.Errorf("last = %v, want %v", got, want)
	}
}

func TestClockStampsFollowObservedStamps(t *testing.T) {
	c := syncengine.NewClock(replicaID("a"), 0)
	remote := syncengine.Stamp{WallMS: 5000, Counter: 7, Replica: replicaID("b")}
	if err := c.Observe(remote, 1000); err != nil {
		t.Fatal(err)
	}
	if s := c.Now(1000); s.Compare(remote) <= 0 {
		t.Errorf("Now after observing %v = %v, want later", remote, s)
	}
}

func TestClockRefusesStampsBeyondMaxSkew(t *testing.T) {
	c := syncengine.NewClock(replicaID("server"), 5*minute)
	ok := syncengine.Stamp{WallMS: morning + 5*minute, Replica: replicaID("p")}
	if err := c.Observe(ok, morning); err != nil {
		t.Errorf("Observe at the skew limit: %v", err)
	}
	ahead := syncengine.Stamp{WallMS: morning + 3*day, Replica: replicaID("p")}
	err := c.Observe(ahead, morning)
	if !errors.Is(err, syncengine.ErrClockSkew) {
		t.Fatalf("Observe 3 days ahead: err = %v, want ErrClockSkew", err)
	}
	if got := c.Last().WallMS; got >= ahead.WallMS {
		t.Errorf("clock advanced to %d by a refused stamp", got)
	}
}

func TestClockCounterOverflowMovesToNextMillisecond(t *testing.T) {
	c := syncengine.NewClock(replicaID("a"), 0)
	c.Restore(syncengine.Stamp{WallMS: 10, Counter: ^uint32(0)})
	if got, want := c.Now(5), (syncengine.Stamp{WallMS: 11, Replica: replicaID("a")}); got != want {
		t.Errorf("Now = %v, want %v", got, want)
	}
}

func TestRestampShiftsFutureStampsAndKeepsOrder(t *testing.T) {
	phone := replicaID("phone")
	st := func(wall int64, counter uint32) syncengine.Stamp {
		return syncengine.Stamp{WallMS: wall, Counter: counter, Replica: phone}
	}
	server, local := morning, morning+3*day
	pending := []syncengine.Change{
		{Stamp: st(morning-day, 0)},            // made before the clock went wrong: kept
		{Stamp: st(morning+3*day-2*hour, 0)},   // fast: shifted to 06:00
		{Stamp: st(morning+3*day-2*hour, 1)},   // same ms: order kept by counter
		{Stamp: st(morning+3*day-1*hour, 0)},   // shifted to 07:00
		{Stamp: st(morning+3*day+1*minute, 0)}, // beyond even the shift: capped at the present
	}
	got, n := syncengine.Restamp(pending, server, local)
	want := []syncengine.Stamp{
		st(morning-day, 0), st(morning-2*hour, 0), st(morning-2*hour, 1), st(morning-hour, 0), st(morning, 0),
	}
	for i := range want {
		if got[i].Stamp != want[i] {
			t.Errorf("stamp %d = %v, want %v", i, got[i].Stamp, want[i])
		}
	}
	if n != 4 {
		t.Errorf("changed = %d, want 4", n)
	}
	if pending[1].Stamp != st(morning+3*day-2*hour, 0) {
		t.Errorf("Restamp modified its input")
	}
	again, n := syncengine.Restamp(got, server, local)
	if n != 0 {
		t.Errorf("second Restamp changed %d stamps, want 0 (idempotent); got %v", n, again)
	}
}

func TestRestampKeepsOrderWhenShiftedStampsFallBehindKeptOnes(t *testing.T) {
	phone := replicaID("phone")
	// Made at 05:00 true time with a correct clock, then the clock jumped
	// three days ahead and a change was made at 07:00 true time.
	pending := []syncengine.Change{
		{Stamp: syncengine.Stamp{WallMS: morning - 3*hour, Replica: phone}},
		{Stamp: syncengine.Stamp{WallMS: morning + 3*day - hour, Replica: phone}},
	}
	got, _ := syncengine.Restamp(pending, morning, morning+3*day)
	if got[1].Stamp.Compare(got[0].Stamp) <= 0 {
		t.Errorf("order lost: %v then %v", got[0].Stamp, got[1].Stamp)
	}
}

func TestClockCorrectLowersAFastHighWaterMark(t *testing.T) {
	c := syncengine.NewClock(replicaID("phone"), 0)
	c.Now(morning + 3*day)
	c.Correct(morning, morning+3*day, syncengine.Stamp{})
	if got := c.Now(morning + 3*day + minute); got.WallMS != morning+minute {
		t.Errorf("Now after correction = %d, want %d", got.WallMS, morning+minute)
	}
	if got, want := c.Offset(), -3*day; got != want {
		t.Errorf("offset = %d, want %d", got, want)
	}
}

func TestClockIsSafeForConcurrentUse(t *testing.T) {
	c := syncengine.NewClock(replicaID("server"), 0)
	const goroutines, each = 4, 200
	stamps := make(chan syncengine.Stamp, goroutines*each)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				stamps <- c.Now(morning + int64(i%3))
				_ = c.Observe(syncengine.Stamp{WallMS: morning + int64(g), Replica: replicaID("p")}, morning)
			}
		})
	}
	wg.Wait()
	close(stamps)
	seen := map[syncengine.Stamp]bool{}
	for s := range stamps {
		if seen[s] {
			t.Fatalf("stamp %v issued twice", s)
		}
		seen[s] = true
	}
}

func TestClockSkewGuardHoldsForExtremeStamps(t *testing.T) {
	c := syncengine.NewClock(replicaID("server"), 5*minute)
	far := syncengine.Stamp{WallMS: 1<<63 - 1, Replica: replicaID("p")}
	if err := c.Observe(far, -morning); !errors.Is(err, syncengine.ErrClockSkew) {
		t.Errorf("Observe(max stamp) err = %v, want ErrClockSkew", err)
	}
}
