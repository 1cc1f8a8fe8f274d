package syncengine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
)

// writeN makes n local changes at node, each setting field 1 of its own record.
func writeN(t *testing.T, n *node, count int, first uint64) {
	t.Helper()
	for i := range count {
		n.write(recordID(first+uint64(i)), kindHousehold, areaVillageA, syncengine.VersionVector{}, map[int32]string{1: fmt.Sprint("v", i)})
	}
}

func TestPushInBatchesAdvancesCursorsWithWhatTheyCover(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	writeN(t, phone, 7, 100)

	ctx := t.Context()
	var batches int
	for after := syncengine.Position(0); ; batches++ {
		b, err := syncengine.NextBatch(ctx, phone.store, phone.id, after, syncengine.SendOptions{Limit: 3, Exclude: server.id})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Changes) == 0 {
			break
		}
		rc, err := syncengine.ReceiveBatch(ctx, server.store, b, syncengine.ReceiveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := rc.Through, b.Through; got != want {
			t.Fatalf("receipt through %d, want %d", got, want)
		}
		if got, want := server.cursor(phone).Received, b.Through; got != want {
			t.Fatalf("server cursor %d, want %d", got, want)
		}
		if err := syncengine.Acknowledge(ctx, phone.store, server.id, rc); err != nil {
			t.Fatal(err)
		}
		after = phone.cursor(server).Acked
	}
	if got, want := batches, 3; got != want {
		t.Errorf("batches = %d, want %d", got, want)
	}
	if got, want := server.store.Len(), 7; got != want {
		t.Errorf("server log = %d changes, want %d", got, want)
	}
}

func TestRetryAfterLostReceiptStoresNothingTwice(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	writeN(t, phone, 4, 200)
	ctx := t.Context()

	// The link drops after the server committed but before the phone heard.
	b, err := syncengine.NextBatch(ctx, phone.store, phone.id, 0, syncengine.SendOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncengine.ReceiveBatch(ctx, server.store, b, syncengine.ReceiveOptions{}); err != nil {
		t.Fatal(err)
	}

	// The phone resends from its stale acknowledged position.
	results := push(t, phone, server, 3)
	want := []syncengine.Outcome{
		syncengine.OutcomeDuplicate, syncengine.OutcomeDuplicate,
		syncengine.OutcomeApplied, syncengine.OutcomeApplied,
	}
	if got := outcomes(results); !slices.Equal(got, want) {
		t.Errorf("outcomes = %v, want %v", got, want)
	}
	if got, want := server.store.Len(), 4; got != want {
		t.Errorf("server log = %d, want %d", got, want)
	}
	if got, want := phone.cursor(server).Acked, syncengine.Position(4); got != want {
		t.Errorf("acked = %d, want %d", got, want)
	}
}

func TestBatchStartingAfterTheCursorIsRefused(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	writeN(t, phone, 3, 300)

	b, err := syncengine.NextBatch(t.Context(), phone.store, phone.id, 1, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = syncengine.ReceiveBatch(t.Context(), server.store, b, syncengine.ReceiveOptions{})
	if !errors.Is(err, syncengine.ErrCursorGap) {
		t.Fatalf("err = %v, want ErrCursorGap", err)
	}
	if got := server.store.Len(); got != 0 {
		t.Errorf("server stored %d changes from a refused batch", got)
	}
}

func TestBatchWithDisorderedPositionsIsRefused(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	writeN(t, phone, 2, 400)
	b, err := syncengine.NextBatch(t.Context(), phone.store, phone.id, 0, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Changes[0], b.Changes[1] = b.Changes[1], b.Changes[0]
	if _, err := syncengine.ReceiveBatch(t.Context(), server.store, b, syncengine.ReceiveOptions{}); !errors.Is(err, syncengine.ErrInvalidBatch) {
		t.Fatalf("err = %v, want ErrInvalidBatch", err)
	}
}

func TestRejectedChangeIsMarkedAtTheSenderAndDoesNotBlockTheQueue(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	writeN(t, phone, 3, 500)
	ctx := t.Context()
	bad := recordID(501)
	fields := []syncengine.FieldError{{Path: "systolic", Reason: 1, Message: "systolic pressure missing"}}
	validate := func(_ context.Context, _ syncengine.ReadTx, c syncengine.Change, _, _ syncengine.Record) error {
		if c.RecordID == bad {
			return &syncengine.RefusalError{Fields: fields, Err: errors.New("systolic pressure missing")}
		}
		return nil
	}
	b, err := syncengine.NextBatch(ctx, phone.store, phone.id, 0, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := syncengine.ReceiveBatch(ctx, server.store, b, syncengine.ReceiveOptions{Validate: validate})
	if err != nil {
		t.Fatal(err)
	}
	want := []syncengine.Outcome{syncengine.OutcomeApplied, syncengine.OutcomeInvalid, syncengine.OutcomeApplied}
	if got := outcomes(rc.Results); !slices.Equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
	if rc.Through != 3 {
		t.Errorf("through = %d, want 3: a refused change must not block the ones behind it", rc.Through)
	}
	if err := syncengine.Acknowledge(ctx, phone.store, server.id, rc); err != nil {
		t.Fatal(err)
	}
	rej := phone.store.Rejections()
	if len(rej) != 1 || rej[0].Pos != 2 || rej[0].Outcome != syncengine.OutcomeInvalid || rej[0].Detail != "systolic pressure missing" ||
		rej[0].Reason != syncengine.ReasonInvalidRecord || !slices.Equal(rej[0].Fields, fields) {
		t.Errorf("rejections = %+v, want the change at position 2, invalid, with its reason and field errors", rej)
	}
	if !server.record(bad).IsEmpty() {
		t.Errorf("server stored the rejected record")
	}
	if got := phone.store.Len(); got != 3 {
		t.Errorf("phone log = %d, want 3: the rejected change stays", got)
	}
}

func TestOutOfScopeValidatorErrorIsReportedAsSuch(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	writeN(t, phone, 1, 600)
	b, err := syncengine.NextBatch(t.Context(), phone.store, phone.id, 0, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	outside := func(context.Context, syncengine.ReadTx, syncengine.Change, syncengine.Record, syncengine.Record) error {
		return fmt.Errorf("area 5301: %w", syncengine.ErrOutOfScope)
	}
	rc, err := syncengine.ReceiveBatch(t.Context(), server.store, b, syncengine.ReceiveOptions{Validate: outside})
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(rc.Results); !slices.Equal(got, []syncengine.Outcome{syncengine.OutcomeOutOfScope}) {
		t.Errorf("outcomes = %v, want out_of_scope", got)
	}
	if got := rc.Results[0].Reason; got != syncengine.ReasonOutsideAreas {
		t.Errorf("reason = %q, want the default of out_of_scope", got)
	}
}

// Field errors go out and come back; damaged bytes are an error, never a
// panic.
func TestFieldErrorsEncoding(t *testing.T) {
	fs := []syncengine.FieldError{{Path: "findings[2].absence_reason", Reason: 7, Message: "choose one"}, {Path: "", Reason: -3}}
	b := syncengine.AppendFieldErrors(nil, fs)
	got, rest, err := syncengine.ParseFieldErrors(append(b, "tail"...))
	if err != nil || !slices.Equal(got, fs) || string(rest) != "tail" {
		t.Fatalf("ParseFieldErrors = %+v, %q, %v", got, rest, err)
	}
	for n := 1; n < len(b); n++ {
		if got, _, err := syncengine.ParseFieldErrors(b[:n]); err == nil {
			t.Errorf("%d of %d bytes parsed: %+v", n, len(b), got)
		}
	}
	if got, _, err := syncengine.ParseFieldErrors([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Errorf("a huge count parsed: %d errors", len(got))
	}
}

func TestNextBatchFiltersAndExcludesButCoversSkippedEntries(t *testing.T) {
	now := morning
	server := newNode(t, &now, "server", 0)
	phone := newNode(t, &now, "phone", 0)
	other := newNode(t, &now, "other", 0)
	writeN(t, phone, 2, 700)
	push(t, phone, server, 0)
	writeN(t, other, 2, 710)
	push(t, other, server, 0)
	server.write(recordID(720), kindHousehold, areaVillageB, syncengine.VersionVector{}, map[int32]string{1: "b"})

	inVillageA := func(c *syncengine.Change) bool { return c.Area == areaVillageA }
	b, err := syncengine.NextBatch(t.Context(), server.store, server.id, 0, syncengine.SendOptions{Exclude: phone.id, Filter: inVillageA})
	if err != nil {
		t.Fatal(err)
	}
	var got []syncengine.ReplicaID
	for _, e := range b.Changes {
		got = append(got, e.Change.Origin)
	}
	if want := []syncengine.ReplicaID{other.id, other.id}; !slices.Equal(got, want) {
		t.Errorf("origins sent = %v, want only other's village A changes", got)
	}
	if b.Through != 5 || b.More {
		t.Errorf("through %d more %v, want 5 false: skipped entries are covered", b.Through, b.More)
	}
}

// failingStore makes the n-th write of an Update fail, to check that a batch
// and its cursor are stored together or not at all.
type failingStore struct {
	syncengine.Store
	failAt, writes int
}

var errInjected = errors.New("injected storage failure")

func (s *failingStore) Update(ctx context.Context, fn func(syncengine.Tx) error) error {
	return s.Store.Update(ctx, func(tx syncengine.Tx) error { return fn(&failingTx{Tx: tx, s: s}) })
}

type failingTx struct {
	syncengine.Tx
	s *failingStore
}

func (t *failingTx) fail() error {
	t.s.writes++
	if t.s.writes == t.s.failAt {
		return errInjected
	}
	return nil
}

func (t *failingTx) PutRecord(ctx context.Context, r syncengine.Record) error {
	if err := t.fail(); err != nil {
		return err
	}
	return t.Tx.PutRecord(ctx, r)
}

func (t *failingTx) Append(ctx context.Context, c syncengine.Change) (syncengine.Position, error) {
	if err := t.fail(); err != nil {
		return 0, err
	}
	return t.Tx.Append(ctx, c)
}

func (t *failingTx) SetCursor(ctx context.Context, p syncengine.ReplicaID, c syncengine.Cursor) error {
	if err := t.fail(); err != nil {
		return err
	}
	return t.Tx.SetCursor(ctx, p, c)
}

func TestStorageFailureMidBatchStoresNothing(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	writeN(t, phone, 3, 800)
	b, err := syncengine.NextBatch(t.Context(), phone.store, phone.id, 0, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 3 changes × (PutRecord, Append) + SetCursor = 7 writes.
	for failAt := 1; failAt <= 7; failAt++ {
		inner := memstore.New()
		s := &failingStore{Store: inner, failAt: failAt}
		if _, err := syncengine.ReceiveBatch(t.Context(), s, b, syncengine.ReceiveOptions{}); !errors.Is(err, errInjected) {
			t.Fatalf("fail at write %d: err = %v, want injected", failAt, err)
		}
		if inner.Len() != 0 || len(inner.Records()) != 0 {
			t.Fatalf("fail at write %d: store kept %d changes, %d records", failAt, inner.Len(), len(inner.Records()))
		}
		// The retry stores everything once.
		s.failAt = 0
		rc, err := syncengine.ReceiveBatch(t.Context(), s, b, syncengine.ReceiveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rc.Through != 3 || inner.Len() != 3 {
			t.Fatalf("retry: through %d, %d changes; want 3, 3", rc.Through, inner.Len())
		}
	}
}

func TestWriteLocalUsesTheVersionTheAuthorSaw(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", 0)
	person := recordID(900)
	phone.write(person, kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{1: "Chen Jie"})
	push(t, phone, server, 0)
	opened := phone.record(person).Version() // the form is opened

	server.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{1: "Chen Jie (corrected)"})
	pull(t, phone, server, 0) // sync happens while the form is open
	phone.write(person, 0, "", opened, map[int32]string{1: "Chen Jiejie"})

	c := phone.record(person).Conflicts()
	if len(c) != 1 || c[0].ID.Field != 1 {
		t.Fatalf("conflicts = %v, want the server's correction kept against the stale edit", c)
	}
}

func TestPropertySessions(t *testing.T) {
	n, base, replay := scheduleCount(t, 2000, 100)
	t.Logf("running %d session schedules from base seed %d", n, base)
	for i := range n {
		seed := base
		if !replay {
			seed = scheduleSeed(base, i)
		}
		if err := runSessionSchedule(t, seed); err != nil {
			t.Fatalf("session schedule %d failed: %v\nreplay: go test ./syncengine/ -run 'TestPropertySessions$' -syncengine.seed=%d -v", i, err, seed)
		}
	}
}

// runSessionSchedule has 3–5 memstore replicas write and sync in random pairs
// through the real session code, with random batch sizes, lost receipts and
// replayed old batches, then syncs every pair until quiet and checks that every
// store holds the same records, each change logged exactly once.
func runSessionSchedule(t *testing.T, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed^0xfeed))
	now := morning
	var nodes []*node
	for i := range 3 + rng.IntN(3) {
		nodes = append(nodes, newNode(t, &now, fmt.Sprint("node-", i), 0))
	}
	records := []syncengine.RecordID{recordID(1), recordID(2)}
	type sent struct {
		batch    syncengine.Batch
		from, to *node
	}
	var replays []sent
	total := 0
	for range 10 + rng.IntN(20) {
		now += rng.Int64N(5000)
		a, b := nodes[rng.IntN(len(nodes))], nodes[rng.IntN(len(nodes))]
		if rng.IntN(2) == 0 || a == b {
			rec := records[rng.IntN(len(records))]
			a.write(rec, kindHousehold, areaVillageA, syncengine.VersionVector{}, map[int32]string{int32(1 + rng.IntN(3)): fmt.Sprint(rng.IntN(3))})
			total++
			continue
		}
		bt, err := syncengine.NextBatch(t.Context(), a.store, a.id, b.cursor(a).Received, syncengine.SendOptions{Limit: 1 + rng.IntN(4), Exclude: b.id})
		if err != nil {
			return err
		}
		replays = append(replays, sent{bt, a, b})
		rc, err := syncengine.ReceiveBatch(t.Context(), b.store, bt, syncengine.ReceiveOptions{})
		if err != nil {
			return err
		}
		if rng.IntN(4) > 0 { // otherwise the receipt is lost
			if err := syncengine.Acknowledge(t.Context(), a.store, b.id, rc); err != nil {
				return err
			}
		}
		if rng.IntN(4) == 0 { // a stale batch arrives again
			old := replays[rng.IntN(len(replays))]
			if old.batch.After <= old.to.cursor(old.from).Received {
				if _, err := syncengine.ReceiveBatch(t.Context(), old.to.store, old.batch, syncengine.ReceiveOptions{}); err != nil {
					return err
				}
			}
		}
	}
	for quiet := false; !quiet; {
		quiet = true
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && slices.Contains(outcomes(pull(t, b, a, 1+rng.IntN(4))), syncengine.OutcomeApplied) {
					quiet = false
				}
			}
		}
	}
	for _, n := range nodes {
		if got := n.store.Len(); got != total {
			return fmt.Errorf("%s logged %d changes, want %d", n.name, got, total)
		}
	}
	for _, id := range records {
		want := nodes[0].record(id)
		for _, n := range nodes[1:] {
			if got := n.record(id); got.Digest() != want.Digest() {
				return fmt.Errorf("%s and %s differ on %v:\n%v\n%v", n.name, nodes[0].name, id, got, want)
			}
		}
	}
	return nil
}

// The validator judges the whole record: a change that sets one field is
// checked against the merged state, with the state before it for moves.
func TestValidatorSeesTheMergedRecord(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	id := recordID(700)
	phone.write(id, kindHousehold, areaVillageA, syncengine.VersionVector{}, map[int32]string{4: "张德明"})
	phone.write(id, kindHousehold, areaVillageA, syncengine.VersionVector{}, map[int32]string{5: "三组"})
	var seen []string
	validate := func(_ context.Context, _ syncengine.ReadTx, c syncengine.Change, prev, next syncengine.Record) error {
		v4, _ := next.Value(4)
		v5, _ := next.Value(5)
		seen = append(seen, fmt.Sprintf("%v|%s|%s", prev.IsEmpty(), v4, v5))
		return nil
	}
	b, err := syncengine.NextBatch(t.Context(), phone.store, phone.id, 0, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncengine.ReceiveBatch(t.Context(), server.store, b, syncengine.ReceiveOptions{Validate: validate}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"true|张德明|", "false|张德明|三组"}; !slices.Equal(seen, want) {
		t.Errorf("validator saw %q, want %q", seen, want)
	}
}

// ReceiveOptions.Also runs in the batch's transaction: its error undoes the
// whole batch, cursor included.
func TestReceiveAlsoCommitsWithTheBatch(t *testing.T) {
	now := morning
	phone := newNode(t, &now, "phone", 0)
	server := newNode(t, &now, "server", serverSkew)
	writeN(t, phone, 3, 300)
	ctx := t.Context()
	b, err := syncengine.NextBatch(ctx, phone.store, phone.id, 0, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("token not stored")
	_, err = syncengine.ReceiveBatch(ctx, server.store, b, syncengine.ReceiveOptions{
		Also: func(context.Context, syncengine.Tx) error { return boom },
	})
	if !errors.Is(err, boom) {
		t.Fatalf("ReceiveBatch = %v, want the Also error", err)
	}
	if got := server.store.Len(); got != 0 || server.cursor(phone).Received != 0 {
		t.Fatalf("after a failed Also: %d changes stored, cursor %d; want nothing", got, server.cursor(phone).Received)
	}
	ran := false
	if _, err := syncengine.ReceiveBatch(ctx, server.store, b, syncengine.ReceiveOptions{
		Also: func(ctx context.Context, tx syncengine.Tx) error {
			cur, err := tx.Cursor(ctx, phone.id)
			ran = err == nil && cur.Received == b.Through
			return err
		},
	}); err != nil {
		t.Fatal(err)
	}
	if !ran || server.store.Len() != 3 {
		t.Errorf("Also ran after the batch: %v; stored %d changes, want 3", ran, server.store.Len())
	}
}
