package e2e

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
)

// TestCutLinks proves that links cut anywhere lose nothing and store nothing
// twice. Phones of two villages sync through CuttingProxy, which cuts their
// connections mid-message in either direction and just after the server
// answered (so a phone never sees the acknowledgement of a push the server
// committed), while they keep saving and editing records between attempts and
// a township device syncing directly adds records of its own. When the cutting
// stops and every replica has synced until clean, every change is on the
// server exactly once, every replica holds exactly the server's records of its
// areas in the same state, and no phone holds anything of the other village.
func TestCutLinks(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	minCuts := 100 * scale()
	const minAckLost = 3

	srv, addr := servertest.Start(t, server.Config{IDHashKey: testIDHashKey})
	cty := newCounty(t, seed, 16, householdsAndVisits)

	// The township device syncs directly; the phones, two or three of
	// village 0 and one of village 1, each through a proxy of their own.
	direct := &worker{device: openDevice(t, "township", []string{cty.township}, quickRetry(1)...), rng: rand.New(rand.NewPCG(seed, 100))}
	direct.enrollWith(t, srv, addr)
	nA := 2 + rng.IntN(2)
	var phones []*worker
	for i := range nA + 1 {
		v := 0
		if i == nA {
			v = 1
		}
		p, err := NewCuttingProxy(addr, seed+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		w := &worker{
			device: openDevice(t, fmt.Sprintf("phone%d-village%d", i, v), cty.villages[v:v+1], quickRetry(1)...),
			proxy:  p, village: v, rng: rand.New(rand.NewPCG(seed, 200+uint64(i))),
		}
		w.enrollWith(t, srv, p.Addr())
		phones = append(phones, w)
	}
	t.Logf("%d phones of village %s, 1 of %s, 1 township device", nA, cty.villages[0], cty.villages[1])

	// Deal out the records: a quarter of each village to the township
	// device, the rest among the village's phones. The township device
	// saves half of its share before the phones start.
	saved := make(map[syncengine.RecordID]*fieldsyncv1.Record)
	var households [2][]syncengine.RecordID
	for v, recs := range cty.records {
		recs = append([]*fieldsyncv1.Record(nil), recs...)
		rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		var mine []*worker
		for _, w := range phones {
			if w.village == v {
				mine = append(mine, w)
			}
		}
		for i, r := range recs {
			saved[recordID(t, r)] = r
			if r.GetHousehold() != nil {
				households[v] = append(households[v], recordID(t, r))
			}
			if i%4 == 0 {
				direct.todo = append(direct.todo, r)
			} else {
				w := mine[i%len(mine)]
				w.todo = append(w.todo, r)
			}
		}
	}
	for _, w := range phones {
		w.households = households[w.village]
	}
	direct.households = slices.Concat(households[0], households[1])
	for range len(direct.todo) / 2 {
		direct.save(t)
	}
	direct.syncUntilClean(t, 3)

	// Every replica saves and edits between sync attempts until everything
	// is saved and the proxies have made enough cuts, some of which must
	// have cost a phone the answer to a push the server committed. The
	// township device goes a round for each round of a phone.
	for _, w := range phones {
		w.proxy.SetCutting(true)
	}
	var remaining, ackLost atomic.Int64
	for _, w := range append(phones, direct) {
		remaining.Add(int64(len(w.todo)))
	}
	cuts := func() int {
		n := 0
		for _, w := range phones {
			n += w.proxy.Cuts()
		}
		return n
	}
	done := func() bool { return remaining.Load() == 0 && cuts() >= minCuts && ackLost.Load() >= minAckLost }
	round := func(w *worker) {
		for range w.rng.IntN(4) {
			if w.save(t) {
				remaining.Add(-1)
			}
		}
		if w.rng.IntN(4) == 0 {
			w.edit(t)
		}
		w.syncs++
		held := w.held(t, srv)
		if err := w.sync(t.Context()); err != nil {
			w.failed++
			if w.proxy != nil && w.held(t, srv) > held && w.unknownToPhone(t, srv) {
				ackLost.Add(1)
			}
		}
	}
	const maxRounds = 5000
	start := time.Now()
	tick, stop := make(chan struct{}, 1), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-tick:
				round(direct)
			}
		}
	})
	var phonesWG sync.WaitGroup
	for _, w := range phones {
		phonesWG.Go(func() {
			for n := 0; !done(); n++ {
				if n == maxRounds {
					t.Errorf("%s: %d rounds, and only %d cuts and %d lost answers", w.name, n, cuts(), ackLost.Load())
					return
				}
				round(w)
				select {
				case tick <- struct{}{}:
				default:
				}
			}
		})
	}
	phonesWG.Wait()
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	cutting := time.Since(start)

	// The cutting stops: every replica syncs until clean, and then once more
	// to pull what the others pushed last.
	for _, w := range phones {
		w.proxy.SetCutting(false)
	}
	all := append(phones, direct)
	for _, w := range all {
		w.syncUntilClean(t, 5)
	}
	for _, w := range all {
		if err := w.sync(t.Context()); err != nil {
			t.Fatalf("%s: Sync without cuts: %v", w.name, err)
		}
		w.checkClean(t)
	}

	total := cuts()
	var byKind [numCutKinds]int
	for _, w := range phones {
		for k := range numCutKinds {
			byKind[k] += w.proxy.CutsOf(k)
		}
		t.Logf("%s: %d syncs, %d failed, %d cuts", w.name, w.syncs, w.failed, w.proxy.Cuts())
	}
	t.Logf("%d cuts in %v (%d %v, %d %v, %d %v); %d failed syncs stored changes whose acknowledgement the phone never saw; township device: %d syncs",
		total, cutting.Round(time.Millisecond), byKind[CutToServer], CutToServer, byKind[CutToClient], CutToClient,
		byKind[CutResponse], CutResponse, ackLost.Load(), direct.syncs)
	if total < minCuts {
		t.Errorf("the proxies made %d cuts, want at least %d", total, minCuts)
	}
	for k := range numCutKinds {
		if byKind[k] == 0 {
			t.Errorf("no cut of kind %v", k)
		}
	}

	// The stores themselves.
	if err := srv.Store().Check(t.Context()); err != nil {
		t.Error(err)
	}
	srvState := readState(t, "server", srv.Replica(), nil, srv.Store())
	var states []replicaState
	for _, w := range all {
		states = append(states, readDevice(t, w.device))
		for id := range w.edited {
			delete(saved, id)
		}
	}
	checkConverged(t, srvState, states...)
	checkSaved(t, srvState, saved)
	raised := direct.raised
	for _, w := range phones {
		raised += w.raised
	}
	if n, want := len(srvState.records), len(cty.records[0])+len(cty.records[1]); n < want || n > want+raised {
		t.Errorf("server holds %d records, want the %d saved and up to the %d problems and flags their saves raised", n, want, raised)
	}
}

// TestLostPushAnswer proves that a push the server stored but whose answer
// never reached the phone is settled by the next sync: nothing is stored
// twice and nothing stays pending. TestCutLinks found phones that counted
// such changes as pending for as long as they made no new change.
func TestLostPushAnswer(t *testing.T) {
	srv, addr := servertest.Start(t, server.Config{IDHashKey: testIDHashKey})
	cty := newCounty(t, 5, 4, householdsAndVisits)
	p, err := NewCuttingProxy(addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	phone := openDevice(t, "phone", cty.villages[:1], quickRetry(1)...)
	phone.enrollWith(t, srv, p.Addr())
	recs := cty.records[0][:3]
	saved := make(map[syncengine.RecordID]*fieldsyncv1.Record)
	for _, r := range recs {
		save(t, phone, r)
		saved[recordID(t, r)] = r
	}

	p.CutNext(CutResponse, 3) // calls: 1 Hello, 2 Pull, 3 the push
	if err := phone.sync(t.Context()); err == nil {
		t.Fatal("Sync through a link cut before the push answer succeeded")
	}
	if st, err := phone.Status(t.Context()); err != nil || st.Pending != len(recs) {
		t.Fatalf("Status after the lost answer = %+v, %v; want %d pending", st, err, len(recs))
	}
	if end, err := srv.Store().LogEnd(t.Context()); err != nil || end != syncengine.Position(len(recs)) {
		t.Fatalf("server log ends at %d, %v; want the %d pushed changes", end, err, len(recs))
	}

	if err := phone.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	phone.checkClean(t)
	if end, err := srv.Store().LogEnd(t.Context()); err != nil || end != syncengine.Position(len(recs)) {
		t.Errorf("server log ends at %d, %v after the second sync; want %d", end, err, len(recs))
	}
	if n := p.Cuts(); n != 1 {
		t.Errorf("proxy made %d cuts, want 1", n)
	}
	srvState := readState(t, "server", srv.Replica(), nil, srv.Store())
	checkSaved(t, srvState, saved)
	checkConverged(t, srvState, readDevice(t, phone))
}

// worker is a device with the records it still has to save and what it did.
type worker struct {
	*device
	proxy      *CuttingProxy // nil for a device that syncs directly
	village    int
	rng        *rand.Rand
	todo       []*fieldsyncv1.Record
	households []syncengine.RecordID // households it may edit once it holds them
	edited     map[syncengine.RecordID]bool
	edits      int
	made       int // changes made: records saved and edits, and what the saves raised
	raised     int // problems and risk flags the saves raised
	syncs      int
	failed     int
}

// save saves the next record of w.todo, if any.
func (w *worker) save(t *testing.T) bool {
	if len(w.todo) == 0 {
		return false
	}
	r := w.todo[0]
	w.todo = w.todo[1:]
	res, err := w.SaveRecord(t.Context(), r)
	if err != nil {
		t.Errorf("%s: Save: %v", w.name, err)
	}
	w.made += 1 + res.Problems + res.Flags
	w.raised += res.Problems + res.Flags
	return true
}

// edit changes the notes of a household w holds, if it holds the one it
// drew: phones of one village edit the same households, concurrently.
func (w *worker) edit(t *testing.T) {
	id := w.households[w.rng.IntN(len(w.households))]
	rec, err := w.Get(t.Context(), id.String())
	if err != nil {
		return // not received yet
	}
	rec = proto.Clone(rec).(*fieldsyncv1.Record)
	w.edits++
	rec.GetHousehold().Notes = fmt.Sprintf("%s: 第%d次复查", w.name, w.edits)
	if err := w.Save(t.Context(), rec); err != nil {
		t.Errorf("%s: Save edited household: %v", w.name, err)
	}
	w.made++
	if w.edited == nil {
		w.edited = make(map[syncengine.RecordID]bool)
	}
	w.edited[id] = true
}

// held returns how many of w's changes the server holds: its highest dot
// counter of w, since w numbers its changes 1, 2, ... and pushes them in
// order.
func (w *worker) held(t *testing.T, srv *server.Server) int {
	var n uint64
	err := srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		n, err = tx.MaxCounter(t.Context(), w.Replica())
		return err
	})
	if err != nil {
		t.Errorf("server: MaxCounter: %v", err)
	}
	return int(n)
}

// unknownToPhone reports whether the server holds changes of w that w counts
// as pending. After a failed sync in which the server stored changes of w,
// it means that the cut kept from w the answer to a push the server
// committed.
func (w *worker) unknownToPhone(t *testing.T, srv *server.Server) bool {
	st, err := w.Status(t.Context())
	if err != nil {
		t.Errorf("%s: Status: %v", w.name, err)
		return false
	}
	return w.held(t, srv) > w.made-st.Pending
}
