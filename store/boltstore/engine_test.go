package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
)

// The tests in this file drive stores through the sync engine: phones on
// memstore and boltstore, a township server on boltstore.

const maxSkewMS = 10 * 60 * 1000

type node struct {
	name  string
	id    syncengine.ReplicaID
	store syncengine.Store
	clock *syncengine.Clock
}

func newNode(name string, id syncengine.ReplicaID, s syncengine.Store) *node {
	return &node{name: name, id: id, store: s, clock: syncengine.NewClock(id, maxSkewMS)}
}

// records returns the digest of every record n holds, by id.
func (n *node) records(t *testing.T) map[syncengine.RecordID][32]byte {
	t.Helper()
	out := make(map[syncengine.RecordID][32]byte)
	switch s := n.store.(type) {
	case *memstore.Store:
		for _, r := range s.Records() {
			out[r.ID()] = r.Digest()
		}
	case *boltstore.Store:
		rs, _ := snapshotAll(t, s, "", 7)
		for _, r := range rs {
			out[r.ID()] = r.Digest()
		}
	}
	return out
}

func (n *node) cursor(t *testing.T, peer *node) syncengine.Cursor {
	t.Helper()
	var c syncengine.Cursor
	err := n.store.View(context.Background(), func(tx syncengine.ReadTx) error {
		var err error
		c, err = tx.Cursor(context.Background(), peer.id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// send moves one batch of from's log to to and reports how many changes it
// carried.
func send(t *testing.T, from, to *node, now int64) int {
	t.Helper()
	ctx := t.Context()
	b, err := syncengine.NextBatch(ctx, from.store, from.id, from.cursor(t, to).Acked, syncengine.SendOptions{Limit: 5, Exclude: to.id})
	if err != nil {
		t.Fatalf("%s → %s: %v", from.name, to.name, err)
	}
	if b.Through == b.After {
		return 0
	}
	rc, err := syncengine.ReceiveBatch(ctx, to.store, b, syncengine.ReceiveOptions{Clock: to.clock, WallMS: now})
	if err != nil {
		t.Fatalf("%s → %s: %v", from.name, to.name, err)
	}
	if err := syncengine.Acknowledge(ctx, from.store, to.id, rc); err != nil {
		t.Fatal(err)
	}
	return len(b.Changes) + 1
}

// edit makes one random local change at n to one of a pool of records.
func edit(t *testing.T, rng *rand.Rand, n *node, now int64) {
	t.Helper()
	id := recordID(uint64(1 + rng.IntN(20)))
	home := []string{villageA, villageB, villageC}[int(id[15])%3]
	e := syncengine.Edit{ID: newChangeID(), Record: id, Kind: kindHousehold, Area: home, Fields: map[int32][]byte{}}
	rec := record(t, n.store, id)
	if !rec.IsEmpty() {
		e.Area = ""
	}
	switch p := rng.IntN(10); {
	case p == 0 && !rec.IsEmpty():
		e.Delete, e.Fields = true, nil
	case p == 1 && !rec.IsEmpty() && strings.HasPrefix(rec.Area(), townA):
		e.Area = map[string]string{villageA: villageB, villageB: villageA}[rec.Area()] // the household moves
	default:
		for range 1 + rng.IntN(4) {
			e.Fields[int32(1+rng.IntN(6))] = []byte(fmt.Sprintf("%s-%d-%s", n.name, rng.IntN(1000), strings.Repeat("x", rng.IntN(30))))
		}
	}
	if _, err := syncenginetest.WriteLocal(t.Context(), n.store, n.clock, now, e); err != nil {
		t.Fatalf("%s writes: %v", n.name, err)
	}
}

func TestEngineReplicasConvergeThroughBoltServer(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	srv := openStore(t)
	server := newNode("server", srv.Replica(), srv)
	phones := []*node{
		newNode("mem-phone", replicaID("mem-phone"), memstore.New()),
		newNode("bolt-phone", replicaID("bolt-phone"), openStore(t)),
		newNode("mem-phone-2", replicaID("mem-phone-2"), memstore.New()),
	}
	now := morning
	for range 15 {
		for _, p := range phones {
			for range rng.IntN(6) {
				now += int64(rng.IntN(60_000))
				edit(t, rng, p, now)
			}
		}
		for _, p := range phones { // a flaky link: some phones sync only part
			for range rng.IntN(3) {
				send(t, p, server, now)
				send(t, server, p, now)
			}
		}
	}
	for moved := 1; moved > 0; { // the evening: everyone syncs fully
		moved = 0
		for _, p := range phones {
			moved += send(t, p, server, now) + send(t, server, p, now)
		}
	}
	want := server.records(t)
	if len(want) == 0 {
		t.Fatal("no records")
	}
	for _, p := range phones {
		got := p.records(t)
		if !maps.Equal(got, want) {
			t.Errorf("%s holds %d records, the server %d; states differ", p.name, len(got), len(want))
		}
	}
}

func TestEngineNewDeviceBootstrapsFromSnapshotAfterCompaction(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	ctx := t.Context()
	srv := openStore(t)
	server := newNode("server", srv.Replica(), srv)
	phone := newNode("phone", replicaID("phone"), memstore.New())
	if err := srv.Registry().PutDevice(ctx, boltstore.Device{ID: phone.id, Areas: []string{townA, townB}}); err != nil {
		t.Fatal(err)
	}
	now := morning
	for range 60 {
		now += 1000
		edit(t, rng, phone, now)
	}
	for send(t, phone, server, now)+send(t, server, phone, now) > 0 {
	}
	if n, err := srv.CompactAcknowledged(ctx); err != nil || n == 0 {
		t.Fatalf("CompactAcknowledged = %d, %v; want entries dropped", n, err)
	}

	// A new phone for township A pulls from the start: the log is gone, so
	// it bootstraps from a snapshot and pulls only its areas after that.
	fresh := newNode("fresh", replicaID("fresh"), openStore(t))
	if _, _, err := srv.ReadLogArea(ctx, []string{townA}, 0, 10); !errors.Is(err, syncengine.ErrCompacted) {
		t.Fatalf("pull from 0: %v, want ErrCompacted", err)
	}
	bootstrap(t, srv, fresh, townA)
	for range 20 {
		now += 1000
		edit(t, rng, phone, now)
	}
	for send(t, phone, server, now) > 0 {
	}
	for pullArea(t, srv, fresh, townA, now) > 0 {
	}

	want, _ := snapshotAll(t, srv, townA, 100)
	got, _ := snapshotAll(t, fresh.store.(*boltstore.Store), "", 100)
	if !slices.EqualFunc(got, want, func(a, b syncengine.Record) bool { return a.Digest() == b.Digest() }) {
		t.Errorf("fresh phone holds %v,\nthe server's township A %v", ids(got), ids(want))
	}
}

// bootstrap copies the server's snapshot of prefix into a new replica and
// sets its cursor to the first page's AsOf.
func bootstrap(t *testing.T, srv *boltstore.Store, to *node, prefix string) {
	t.Helper()
	ctx := t.Context()
	var token []byte
	var asOf syncengine.Position
	for first := true; first || token != nil; first = false {
		page, err := srv.Snapshot(ctx, prefix, token, 4)
		if err != nil {
			t.Fatal(err)
		}
		if first {
			asOf = page.AsOf
		}
		err = to.store.Update(ctx, func(tx syncengine.Tx) error {
			for _, r := range page.Records {
				if err := tx.PutRecord(ctx, r); err != nil {
					return err
				}
			}
			return tx.SetCursor(ctx, srv.Replica(), syncengine.Cursor{Received: asOf})
		})
		if err != nil {
			t.Fatal(err)
		}
		token = page.Next
	}
}

// pullArea sends to one batch of the server's log for prefix, read through
// the log area index, and reports how many positions it covered.
func pullArea(t *testing.T, srv *boltstore.Store, to *node, prefix string, now int64) int {
	t.Helper()
	ctx := t.Context()
	after := to.cursor(t, &node{id: srv.Replica()}).Received
	entries, through, err := srv.ReadLogArea(ctx, []string{prefix}, after, 5)
	if err != nil {
		t.Fatal(err)
	}
	b := syncengine.Batch{Sender: srv.Replica(), After: after, Through: through, Changes: entries, More: len(entries) == 5}
	rc, err := syncengine.ReceiveBatch(ctx, to.store, b, syncengine.ReceiveOptions{Clock: to.clock, WallMS: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := syncengine.Acknowledge(ctx, srv, to.id, rc); err != nil {
		t.Fatal(err)
	}
	return int(through - after)
}
