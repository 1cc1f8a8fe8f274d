package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// TestServerKilledDuringPushes proves that a server process killed at any
// moment keeps every write it acknowledged, once. Phones push a generated
// county in large batches to a fieldsyncd process, which is killed with
// SIGKILL at seeded random moments just after the phones set out to push, most
// often with pushes in flight, and restarted on the same address. After every kill, before the restart, the store opens,
// passes boltstore's Check, holds each change once, and holds every record of
// every Sync that had succeeded with nothing pending, as saved. At the end,
// after the phones synced until clean and the server stopped, every change is
// on the server once and every phone holds its village exactly as the server.
func TestServerKilledDuringPushes(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	kills := (4 + rng.IntN(4)) * scale()
	bin := fieldsyncdBinary(t)
	dir := filepath.Join(t.TempDir(), "data")
	d := startDaemon(t, bin, dir)
	// Every kind of record a village makes but people, who are many and small.
	// Problems and risk flags are not typed in: the visits and audits raise
	// them as they are saved.
	cty := newCounty(t, seed, 40, func(r *fieldsyncv1.Record) bool {
		return r.GetPerson() == nil && r.GetProblem() == nil && r.GetRiskFlag() == nil
	})

	// Two phones in village 0, one in village 1, enrolled with codes from
	// the AdminService. Each phone's records come in kills+1 portions, one
	// released after each restart, so that every kill finds pushes to cut.
	var phones []*pusher
	for i, v := range []int{0, 0, 1} {
		dev := openDevice(t, fmt.Sprintf("phone%d-village%d", i, v), cty.villages[v:v+1], quickRetry(3)...)
		dev.enroll(t, d.addr, d.addDevice(t, dev.name, dev.areas))
		p := &pusher{device: dev, rng: rand.New(rand.NewPCG(seed, 300+uint64(i))), allSaved: make(chan struct{})}
		p.savedPhase.Store(-1)
		phones = append(phones, p)
	}
	for v, recs := range cty.records {
		mine := phones[2:]
		if v == 0 {
			mine = phones[:2]
		}
		for i, r := range recs {
			p := mine[i%len(mine)]
			p.todo = append(p.todo, r)
		}
	}
	released := make([]chan struct{}, kills+1)
	for i := range released {
		released[i] = make(chan struct{})
	}
	var phase atomic.Int64
	stop := make(chan struct{})

	var wg sync.WaitGroup
	for _, p := range phones {
		wg.Go(func() { p.run(t, released, &phase, stop) })
	}
	stopPhones := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(stopPhones) // before the devices close, should the test end early
	close(released[0])

	// Once every phone has saved the portion and set out to push it, kill at
	// a random moment, mostly while pushes are in flight; check the store as
	// the kill left it; restart on the same address; release the next
	// portion.
	start := time.Now()
	var checkedAcked int
	var midPush int
	for k := range kills {
		for _, p := range phones {
			for wait := time.Now(); p.savedPhase.Load() < int64(k); time.Sleep(time.Millisecond) {
				select {
				case <-p.allSaved:
					t.Fatalf("%s stopped before saving portion %d", p.name, k)
				default:
				}
				if time.Since(wait) > startLimit {
					t.Fatalf("%s did not save portion %d", p.name, k)
				}
			}
		}
		time.Sleep(time.Duration(rng.IntN(50_000)) * time.Microsecond)
		if anyPushing(phones) {
			midPush++
		}
		d.kill(t)
		checkedAcked += checkAfterKill(t, d, phones)
		d.start(t)
		phase.Store(int64(k + 1))
		close(released[k+1])
	}
	killing := time.Since(start)
	for _, p := range phones {
		<-p.allSaved
	}
	stopPhones()
	if t.Failed() {
		return
	}

	// Everything is saved: sync until clean, then once more to pull the
	// others' last pushes; stop the server gracefully and read its store.
	for _, p := range phones {
		p.syncUntilClean(t, 10)
	}
	for _, p := range phones {
		if err := p.sync(t.Context()); err != nil {
			t.Fatalf("%s: Sync: %v", p.name, err)
		}
		p.checkClean(t)
	}
	d.stop(t)
	st, err := boltstore.Open(filepath.Join(dir, server.StoreFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(t.Context()); err != nil {
		t.Error(err)
	}
	srvState := readState(t, "server", st.Replica(), nil, st)
	var states []replicaState
	saved := make(map[syncengine.RecordID]*fieldsyncv1.Record)
	for _, p := range phones {
		t.Logf("%s: %d records, %d syncs, %d failed (after the SDK's retries)", p.name, len(p.todo), p.syncs, p.failed)
		for _, r := range p.todo {
			saved[recordID(t, r)] = r
		}
		states = append(states, readDevice(t, p.device))
	}
	t.Logf("%d kills (%d with a sync carrying changes in flight) in %v; %d checks of acknowledged records in the stores the kills left; %d starts", d.kills, midPush, killing.Round(time.Millisecond), checkedAcked, d.starts)
	checkConverged(t, srvState, states...)
	checkSaved(t, srvState, saved)
	raised := 0
	for _, p := range phones {
		raised += int(p.raised.Load())
	}
	if len(srvState.records) != len(saved)+raised {
		t.Errorf("server holds %d records, want the %d saved and the %d problems and flags their saves raised", len(srvState.records), len(saved), raised)
	}
}

// pusher is a phone that saves its records in chunks and syncs after each.
type pusher struct {
	*device
	raised       atomic.Int64 // problems and risk flags its saves raised
	rng          *rand.Rand
	todo         []*fieldsyncv1.Record
	saved        int          // records of todo saved, by run
	acked        atomic.Int64 // records of todo the server acknowledged
	savedPhase   atomic.Int64 // the last phase whose portion run saved whole
	pushing      atomic.Bool  // in a Sync begun with changes to push
	syncs        int
	failed       int
	allSaved     chan struct{} // closed when todo is saved, or run returned
	allSavedOnce sync.Once
}

// run saves and syncs until stop: chunks of 20 to 120 records of the portions
// released so far (portion i of len(released) after released[i] is closed and
// phase set to i), a Sync after each, and, when the portions are saved and
// synced, a wait for the next.
func (p *pusher) run(t *testing.T, released []chan struct{}, phase *atomic.Int64, stop <-chan struct{}) {
	defer p.allSavedOnce.Do(func() { close(p.allSaved) })
	for {
		select {
		case <-stop:
			return
		default:
		}
		ph := int(phase.Load())
		end := len(p.todo) * (ph + 1) / len(released)
		for range 20 + p.rng.IntN(100) {
			if p.saved == end {
				break
			}
			res, err := p.SaveRecord(t.Context(), p.todo[p.saved])
			p.raised.Add(int64(res.Problems + res.Flags))
			if err != nil {
				t.Errorf("%s: Save: %v", p.name, err)
				return
			}
			p.saved++
		}
		if p.saved == end {
			p.savedPhase.Store(int64(ph))
		}
		if p.saved == len(p.todo) {
			p.allSavedOnce.Do(func() { close(p.allSaved) })
		}
		before, err := p.Status(t.Context())
		if err != nil {
			t.Errorf("%s: Status: %v", p.name, err)
			return
		}
		p.pushing.Store(before.Pending > 0)
		p.syncs++
		err = p.sync(t.Context())
		p.pushing.Store(false)
		if err != nil {
			p.failed++
			continue
		}
		st, err := p.Status(t.Context())
		if err != nil {
			t.Errorf("%s: Status: %v", p.name, err)
			return
		}
		if st.Pending != 0 {
			continue
		}
		// Everything saved so far is acknowledged: the server must never
		// lose it.
		p.acked.Store(int64(p.saved))
		if p.saved == end {
			next := min(ph+1, len(released)-1)
			select {
			case <-released[next]:
			case <-stop:
				return
			}
		}
	}
}

func anyPushing(phones []*pusher) bool {
	for _, p := range phones {
		if p.pushing.Load() {
			return true
		}
	}
	return false
}

// checkAfterKill opens the store of the killed server, checks it, and checks
// that it holds every record the phones had acknowledged before the kill, as
// saved, with no change twice. It returns how many records it checked.
func checkAfterKill(t *testing.T, d *daemon, phones []*pusher) int {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(d.dir, server.StoreFile), nil)
	if err != nil {
		t.Fatalf("after kill %d: %v", d.kills, err)
	}
	defer st.Close()
	if err := st.Check(t.Context()); err != nil {
		t.Errorf("after kill %d: %v", d.kills, err)
	}
	srv := readState(t, fmt.Sprintf("server after kill %d", d.kills), st.Replica(), nil, st)
	checkLogUnique(t, srv)
	acked := make(map[syncengine.RecordID]*fieldsyncv1.Record)
	for _, p := range phones {
		for _, r := range p.todo[:p.acked.Load()] {
			acked[recordID(t, r)] = r
		}
	}
	checkSaved(t, srv, acked)
	return len(acked)
}
