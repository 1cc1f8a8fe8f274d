package syncengine_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Randomized convergence properties. Each schedule is generated from one seed:
// 3–7 replicas make writes, deletes and resolutions on a few records, and
// exchange random subsets of what they hold, in random order, with duplicates.
// Then everything reaches everyone, and the test checks that replicas agree
// byte for byte, that the state is the one the merge rule specifies (computed
// independently, from the set of all changes), that no write was lost, and that
// Apply is idempotent and order-insensitive.
//
// Replay a failing schedule with -syncengine.seed=N (printed on failure); run
// more schedules with -syncengine.schedules=N, or the environment variables
// SYNCENGINE_SEED and SYNCENGINE_SCHEDULES.

var (
	flagSeed      = flag.Uint64("syncengine.seed", 0, "run only the property schedule with this seed")
	flagSchedules = flag.Int("syncengine.schedules", 0, "number of property schedules to run (0: default)")
)

// scheduleCount returns how many schedules to run and the first seed.
func scheduleCount(t *testing.T, normal, short int) (n int, base uint64, replay bool) {
	t.Helper()
	seed, schedules := *flagSeed, *flagSchedules
	if v, err := strconv.ParseUint(os.Getenv("SYNCENGINE_SEED"), 10, 64); err == nil && seed == 0 {
		seed = v
	}
	if v, err := strconv.Atoi(os.Getenv("SYNCENGINE_SCHEDULES")); err == nil && schedules == 0 {
		schedules = v
	}
	if seed != 0 {
		return 1, seed, true
	}
	n = normal
	if testing.Short() {
		n = short
	}
	if schedules > 0 {
		n = schedules
	}
	return n, rand.Uint64() | 1, false
}

// scheduleSeed spreads schedule i of a run over the seed space.
func scheduleSeed(base uint64, i int) uint64 {
	return base + uint64(i)*0x9e3779b97f4a7c15 | 1
}

func TestPropertyConvergence(t *testing.T) {
	n, base, replay := scheduleCount(t, 10000, 1000)
	t.Logf("running %d schedules from base seed %d", n, base)
	var st simStats
	for i := range n {
		seed := base
		if !replay {
			seed = scheduleSeed(base, i)
		}
		if err := runSchedule(seed, &st); err != nil {
			t.Fatalf("schedule %d failed: %v\nreplay: go test ./syncengine/ -run 'TestPropertyConvergence$' -syncengine.seed=%d -v", i, err, seed)
		}
	}
	t.Logf("%+v", st)
	// Guard against a generator that stopped producing the hard cases.
	if n >= 1000 && (st.Resolutions == 0 || st.OpenFieldConflicts == 0 || st.OpenDeleteConflicts == 0 || st.Deleted == 0 || st.LateOverwritten == 0) {
		t.Errorf("schedules did not cover every situation: %+v", st)
	}
}

// simStats counts what the schedules exercised.
type simStats struct {
	Changes, Applies, Resolutions int
	// OpenFieldConflicts and OpenDeleteConflicts count conflicts still open
	// at the end; Deleted counts records deleted at the end.
	OpenFieldConflicts, OpenDeleteConflicts, Deleted int
	// LateOverwritten counts changes that arrived at a replica after a change
	// that overwrote them.
	LateOverwritten int
}

type simReplica struct {
	id      syncengine.ReplicaID
	clock   *syncengine.Clock
	skew    int64
	counter uint64
	recs    map[syncengine.RecordID]syncengine.Record
	have    map[syncengine.Dot]bool
	log     []*syncengine.Change
	// shown keeps versions of records this replica has shown, for edits made
	// against a version older than the current one (a form left open).
	shown map[syncengine.RecordID][]syncengine.VersionVector
}

type sim struct {
	st      *simStats
	rng     *rand.Rand
	now     int64
	reps    []*simReplica
	records []syncengine.RecordID
	all     []*syncengine.Change
	nextID  uint64
}

var simAreas = []string{areaVillageA, areaVillageB}

func runSchedule(seed uint64, st *simStats) error {
	s := &sim{st: st, rng: rand.New(rand.NewPCG(seed, seed^0x5deece66d)), now: morning}
	nReps := 3 + s.rng.IntN(5)
	for i := range nReps {
		id := replicaID("replica-" + strconv.Itoa(i))
		r := &simReplica{
			id: id, clock: syncengine.NewClock(id, 0),
			recs: map[syncengine.RecordID]syncengine.Record{}, have: map[syncengine.Dot]bool{},
			shown: map[syncengine.RecordID][]syncengine.VersionVector{},
		}
		if s.rng.IntN(5) == 0 {
			r.skew = (s.rng.Int64N(7) - 3) * day // badly wrong phone clock
		} else {
			r.skew = s.rng.Int64N(4000) - 2000
		}
		s.reps = append(s.reps, r)
	}
	for i := range 1 + s.rng.IntN(2) {
		s.records = append(s.records, recordID(uint64(i+1)))
	}
	if err := s.steps(6 + s.rng.IntN(12)); err != nil {
		return err
	}
	// A review: one replica (a township) gets everything and resolves
	// conflicts, while the others keep working and exchanging, so that
	// resolutions travel before, after and concurrently with other changes.
	if s.rng.IntN(10) < 7 {
		reviewer := s.reps[s.rng.IntN(len(s.reps))]
		if err := s.deliverAll(reviewer); err != nil {
			return err
		}
		for range 1 + s.rng.IntN(3) {
			if err := s.resolve(reviewer); err != nil {
				return err
			}
		}
		if err := s.steps(s.rng.IntN(8)); err != nil {
			return err
		}
	}
	for _, r := range s.reps {
		if err := s.deliverAll(r); err != nil {
			return err
		}
	}
	st.Changes += len(s.all)
	for _, id := range s.records {
		rec := s.reps[0].recs[id]
		for _, c := range rec.Conflicts() {
			if c.ID.Field == syncengine.ExistenceField {
				st.OpenDeleteConflicts++
			} else {
				st.OpenFieldConflicts++
			}
		}
		if rec.Deleted() {
			st.Deleted++
		}
	}
	return s.check()
}

func (s *sim) steps(n int) error {
	for range n {
		s.now += s.rng.Int64N(3000)
		if err := s.step(); err != nil {
			return err
		}
	}
	return nil
}

func (s *sim) step() error {
	r := s.reps[s.rng.IntN(len(s.reps))]
	rec := s.records[s.rng.IntN(len(s.records))]
	switch p := s.rng.IntN(100); {
	case p < 35:
		return s.write(r, rec)
	case p < 45:
		if r.recs[rec].IsEmpty() {
			return s.write(r, rec)
		}
		return s.author(r, rec, r.recs[rec].Version(), true, nil)
	case p < 58:
		return s.resolve(r)
	default:
		to := s.reps[s.rng.IntN(len(s.reps))]
		if to == r {
			return nil
		}
		return s.exchange(r, to)
	}
}

// write makes an upsert of one or two fields, usually against the current
// version, sometimes against an older one this replica showed.
func (s *sim) write(r *simReplica, rec syncengine.RecordID) error {
	base := r.recs[rec].Version()
	if old := r.shown[rec]; len(old) > 0 && s.rng.IntN(10) < 3 {
		base = old[s.rng.IntN(len(old))]
	}
	fields := map[int32][]byte{}
	for range 1 + s.rng.IntN(2) {
		fields[int32(1+s.rng.IntN(3))] = []byte{"abc"[s.rng.IntN(3)]}
	}
	return s.author(r, rec, base, false, fields)
}

// resolve picks an open conflict this replica sees and resolves it.
func (s *sim) resolve(r *simReplica) error {
	var open []syncengine.Conflict
	for _, id := range s.records {
		open = append(open, r.recs[id].Conflicts()...)
	}
	if len(open) == 0 {
		return nil
	}
	c := open[s.rng.IntN(len(open))]
	rec := r.recs[c.ID.Record]
	s.st.Resolutions++
	if c.ID.Field == syncengine.ExistenceField {
		return s.author(r, c.ID.Record, rec.Version(), s.rng.IntN(2) == 0, nil)
	}
	v := c.Writes[s.rng.IntN(len(c.Writes))].Value
	if s.rng.IntN(4) == 0 {
		v = []byte("r")
	}
	return s.author(r, c.ID.Record, rec.Version(), false, map[int32][]byte{c.ID.Field: v})
}

func (s *sim) author(r *simReplica, rec syncengine.RecordID, base syncengine.VersionVector, del bool, fields map[int32][]byte) error {
	r.counter++
	s.nextID++
	c := &syncengine.Change{
		ID: syncengine.ChangeID{0xc4, byte(s.nextID >> 8), byte(s.nextID)}, RecordID: rec,
		Kind: syncengine.Kind(rec[15]), Area: simAreas[s.rng.IntN(len(simAreas))],
		Origin: r.id, Dot: syncengine.Dot{Replica: r.id, Counter: r.counter},
		Stamp: r.clock.Now(s.now + r.skew), Context: base, Delete: del, Fields: fields,
	}
	s.all = append(s.all, c)
	return s.receive(r, c)
}

// receive applies c at r, checking idempotence when r has it already.
func (s *sim) receive(r *simReplica, c *syncengine.Change) error {
	s.st.Applies++
	if !r.have[c.Dot] && r.recs[c.RecordID].Version().Contains(c.Dot) {
		s.st.LateOverwritten++
	}
	if err := r.clock.Observe(c.Stamp, 0); err != nil {
		return err
	}
	old := r.recs[c.RecordID]
	next, err := syncengine.Apply(old, c)
	if err != nil {
		return fmt.Errorf("apply %v at %v: %w", c.Dot, r.id, err)
	}
	if r.have[c.Dot] {
		if next.Digest() != old.Digest() {
			return fmt.Errorf("re-applying %v changed the state:\nbefore %v\nafter %v", c.Dot, old, next)
		}
		return nil
	}
	r.have[c.Dot] = true
	r.log = append(r.log, c)
	r.recs[c.RecordID] = next
	r.shown[c.RecordID] = append(r.shown[c.RecordID], next.Version())
	return nil
}

// exchange sends a random part of from's changes to to, shuffled or in log
// order, with some sent twice.
func (s *sim) exchange(from, to *simReplica) error {
	keep := []float64{0.3, 0.6, 1}[s.rng.IntN(3)]
	var batch []*syncengine.Change
	for _, c := range from.log {
		if s.rng.Float64() < keep {
			batch = append(batch, c)
		}
	}
	if s.rng.IntN(2) == 0 {
		s.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	}
	for range s.rng.IntN(3) {
		if len(batch) > 0 {
			batch = append(batch, batch[s.rng.IntN(len(batch))])
		}
	}
	for _, c := range batch {
		if err := s.receive(to, c); err != nil {
			return err
		}
	}
	return nil
}

// deliverAll gives r every change it lacks, in random order, plus duplicates.
func (s *sim) deliverAll(r *simReplica) error {
	batch := slices.Clone(s.all)
	s.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	for range len(batch) / 4 {
		batch = append(batch, batch[s.rng.IntN(len(batch))])
	}
	for _, c := range batch {
		if err := s.receive(r, c); err != nil {
			return err
		}
	}
	return nil
}

func (s *sim) check() error {
	for _, id := range s.records {
		var changes []*syncengine.Change
		for _, c := range s.all {
			if c.RecordID == id {
				changes = append(changes, c)
			}
		}
		want := s.reps[0].recs[id]
		for _, r := range s.reps[1:] {
			got := r.recs[id]
			if got.Digest() != want.Digest() {
				return fmt.Errorf("replicas diverged on %v:\n%v\n%v", id, want, got)
			}
			if g, w := fmt.Sprint(got.Conflicts()), fmt.Sprint(want.Conflicts()); g != w {
				return fmt.Errorf("conflict sets differ: %s vs %s", g, w)
			}
		}
		if err := checkAgainstSpec(want, changes); err != nil {
			return fmt.Errorf("record %v: %w\nstate: %v", id, err, want)
		}
		if err := checkCompactRoundTrip(want, changes); err != nil {
			return fmt.Errorf("record %v: %w\nstate: %v", id, err, want)
		}
		if err := checkNoWriteLost(want, changes); err != nil {
			return fmt.Errorf("record %v: %w\nstate: %v", id, err, want)
		}
		if err := s.checkOrderInsensitive(want, changes); err != nil {
			return fmt.Errorf("record %v: %w", id, err)
		}
	}
	return nil
}

// writesField reports whether c writes field f (every change writes
// ExistenceField).
func writesField(c *syncengine.Change, f int32) bool {
	if f == syncengine.ExistenceField {
		return true
	}
	_, ok := c.Fields[f]
	return ok
}

// checkAgainstSpec compares state with the merge rule stated declaratively: a
// field's surviving writes are the writes to it whose dot no write to it has
// in its context; the shown one is the greatest by (stamp, dot).
func checkAgainstSpec(state syncengine.Record, changes []*syncengine.Change) error {
	var version syncengine.VersionVector
	fields := map[int32]bool{}
	for _, c := range changes {
		version = version.Merge(c.Context).Add(c.Dot)
		fields[syncengine.ExistenceField] = true
		for f := range c.Fields {
			fields[f] = true
		}
	}
	if state.Version().Compare(version) != syncengine.Equal {
		return fmt.Errorf("version %v, spec %v", state.Version(), version)
	}
	for f := range fields {
		var survivors []*syncengine.Change
		for _, c := range changes {
			if !writesField(c, f) || slices.ContainsFunc(survivors, func(x *syncengine.Change) bool { return x.Dot == c.Dot }) {
				continue
			}
			overwritten := slices.ContainsFunc(changes, func(y *syncengine.Change) bool {
				return writesField(y, f) && y.Context.Contains(c.Dot)
			})
			if !overwritten {
				survivors = append(survivors, c)
			}
		}
		slices.SortFunc(survivors, func(a, b *syncengine.Change) int {
			if c := b.Stamp.Compare(a.Stamp); c != 0 {
				return c
			}
			return b.Dot.Compare(a.Dot)
		})
		got := state.Writes(f)
		if len(got) != len(survivors) {
			return fmt.Errorf("field %d: %d surviving writes, spec %d", f, len(got), len(survivors))
		}
		for i, w := range got {
			c := survivors[i]
			value := c.Fields[f]
			if f == syncengine.ExistenceField {
				value = []byte(c.Area)
			}
			if w.Dot != c.Dot || w.Stamp != c.Stamp || !bytes.Equal(w.Value, value) || (f == 0 && w.Delete != c.Delete) {
				return fmt.Errorf("field %d write %d is %v, spec %v", f, i, w.Dot, c.Dot)
			}
		}
	}
	return nil
}

// checkNoWriteLost checks that every write is the shown value, was causally
// overwritten, or is held in a conflict entry (or equals the shown value).
func checkNoWriteLost(state syncengine.Record, changes []*syncengine.Change) error {
	conflicts := map[int32]syncengine.Conflict{}
	for _, c := range state.Conflicts() {
		conflicts[c.ID.Field] = c
	}
	for _, c := range changes {
		fields := []int32{syncengine.ExistenceField}
		for f := range c.Fields {
			fields = append(fields, f)
		}
		for _, f := range fields {
			writes := state.Writes(f)
			i := slices.IndexFunc(writes, func(w syncengine.Write) bool { return w.Dot == c.Dot })
			switch {
			case i == 0:
				continue
			case i < 0:
				if !slices.ContainsFunc(changes, func(y *syncengine.Change) bool { return writesField(y, f) && y.Context.Contains(c.Dot) }) {
					return fmt.Errorf("write %v to field %d lost: not kept and never overwritten", c.Dot, f)
				}
			default:
				same := bytes.Equal(writes[i].Value, writes[0].Value)
				if f == syncengine.ExistenceField {
					same = writes[i].Delete == writes[0].Delete
				}
				held := slices.ContainsFunc(conflicts[f].Writes, func(w syncengine.Write) bool { return w.Dot == c.Dot })
				if !same && !held {
					return fmt.Errorf("write %v to field %d is not shown and not in a conflict", c.Dot, f)
				}
			}
		}
	}
	if state.Exists() == state.Deleted() && !state.IsEmpty() {
		return errors.New("record neither alive nor deleted")
	}
	return nil
}

// checkOrderInsensitive rebuilds the state from nothing, applying the changes
// in a fresh order with duplicates, and applies one change again.
func (s *sim) checkOrderInsensitive(want syncengine.Record, changes []*syncengine.Change) error {
	order := slices.Clone(changes)
	s.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	if len(order) > 0 {
		order = append(order, order[s.rng.IntN(len(order))])
	}
	var got syncengine.Record
	for _, c := range order {
		var err error
		if got, err = syncengine.Apply(got, c); err != nil {
			return err
		}
	}
	if got.Digest() != want.Digest() {
		return fmt.Errorf("rebuilt in another order:\n%v\nwant\n%v", got, want)
	}
	// State-based: merging the states of two overlapping parts of the
	// changes gives the state of all of them (as a snapshot merge does).
	var left, right syncengine.Record
	for _, c := range changes {
		p := s.rng.IntN(3)
		if p != 1 {
			left, _ = syncengine.Apply(left, c)
		}
		if p != 0 {
			right, _ = syncengine.Apply(right, c)
		}
	}
	for _, pair := range [][2]syncengine.Record{{left, right}, {right, left}, {want, left}, {want, want}} {
		merged, err := syncengine.Merge(pair[0], pair[1])
		if err != nil {
			return err
		}
		if merged.Digest() != want.Digest() {
			return fmt.Errorf("merged states differ from applying all changes:\n%v\nwant\n%v", merged, want)
		}
	}
	return nil
}

// checkCompactRoundTrip checks that r's compact encodings, as a store keeps
// them (with no values shared, and sharing those of the changes that made
// it), read back as the same state, and that every shorter prefix of them
// is refused.
func checkCompactRoundTrip(r syncengine.Record, changes []*syncengine.Change) error {
	byDot := map[syncengine.Dot]*syncengine.Change{}
	for _, c := range changes {
		byDot[c.Dot] = c
	}
	resolve := func(d syncengine.Dot) (*syncengine.Change, error) {
		if c := byDot[d]; c != nil {
			return c, nil
		}
		return nil, errors.New("no such change")
	}
	plain, sharing := r.AppendCompact(nil), r.AppendCompactSharing(nil, changes)
	if len(sharing) > len(plain) {
		return fmt.Errorf("sharing values made the encoding longer: %d bytes against %d", len(sharing), len(plain))
	}
	shared, err := syncengine.CompactSharedDots(sharing)
	if err != nil {
		return err
	}
	for _, d := range shared {
		if byDot[d] == nil {
			return fmt.Errorf("the encoding shares the values of %v, which made none of it", d)
		}
	}
	keyed := r.AppendCompactKeyed(nil, changes)
	if len(keyed) != len(sharing)-16 {
		return fmt.Errorf("the keyed encoding is %d bytes, the one with the id %d", len(keyed), len(sharing))
	}
	for _, b := range [][]byte{plain, sharing, keyed} {
		var got syncengine.Record
		if err := got.UnmarshalCompactKeyed(b, r.ID(), resolve); err != nil {
			return fmt.Errorf("compact encoding %x does not decode: %w", b, err)
		}
		if got.Digest() != r.Digest() {
			return fmt.Errorf("compact encoding read back as another state: %v", got)
		}
		if again := got.AppendCompactSharing(nil, changes); !bytes.Equal(again, sharing) {
			return fmt.Errorf("compact encoding not canonical: %x, then %x", sharing, again)
		}
		if again := got.AppendCompactKeyed(nil, changes); !bytes.Equal(again, keyed) {
			return fmt.Errorf("keyed encoding not canonical: %x, then %x", keyed, again)
		}
		for i := range b {
			if err := got.UnmarshalCompactKeyed(b[:i], r.ID(), resolve); !errors.Is(err, syncengine.ErrMalformed) {
				return fmt.Errorf("compact encoding truncated to %d bytes: err = %v, want ErrMalformed", i, err)
			}
		}
	}
	if len(shared) > 0 {
		var got syncengine.Record
		if err := got.UnmarshalBinary(sharing); !errors.Is(err, syncengine.ErrMalformed) {
			return fmt.Errorf("an encoding sharing values decoded without them: %v", err)
		}
		none := func(syncengine.Dot) (*syncengine.Change, error) { return nil, nil }
		if err := got.UnmarshalCompactShared(sharing, none); !errors.Is(err, syncengine.ErrNotShared) {
			return fmt.Errorf("an encoding whose shared values are gone decoded: %v", err)
		}
	}
	return nil
}

// A dot reused by two changes in different fields (a replica restored from
// an older copy of itself) leaves a state with one dot under two stamps:
// the compact encoding keeps each write's own, so the state reads back the
// same and the same write wins.
func TestCompactKeepsEachStampOfAReusedDot(t *testing.T) {
	c1 := chg(ra, 1, 100, vv(), map[int32]string{1: "x"})
	c2 := chg(ra, 1, 200, vv(), map[int32]string{2: "y"})
	r := applyAll(t, c1, c2)
	if w1, w2 := r.Writes(1), r.Writes(2); len(w1) != 1 || len(w2) != 1 || w1[0].Stamp == w2[0].Stamp {
		t.Fatalf("the fixture lacks a dot under two stamps: %v, %v", w1, w2)
	}
	if err := checkCompactRoundTrip(r, []*syncengine.Change{c1, c2}); err != nil {
		t.Fatal(err)
	}
}
