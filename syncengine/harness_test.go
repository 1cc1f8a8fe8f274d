package syncengine_test

import (
	"encoding/binary"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
)

// Test helpers shared by the scenario, session and property tests.

const (
	minute = int64(60 * 1000)
	hour   = 60 * minute
	day    = 24 * hour

	// morning is 2026-03-02 08:00 UTC in ms, the start of the field day in
	// the stories.
	morning = int64(1772438400000)

	kindHousehold syncengine.Kind = 1
	kindPerson    syncengine.Kind = 2

	areaVillageA = "530102001001"
	areaVillageB = "530102001002"
)

// replicaID returns a recognisable replica id: name's bytes, zero padded.
func replicaID(name string) syncengine.ReplicaID {
	var id syncengine.ReplicaID
	copy(id[:], name)
	return id
}

func recordID(n uint64) syncengine.RecordID {
	var id syncengine.RecordID
	id[0] = 0x7e
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

var nextChangeID uint64

func newChangeID() syncengine.ChangeID {
	nextChangeID++
	var id syncengine.ChangeID
	id[0] = 0xc4
	binary.BigEndian.PutUint64(id[8:], nextChangeID)
	return id
}

// strFields turns field number → string into the engine's field map.
func strFields(fs map[int32]string) map[int32][]byte {
	out := make(map[int32][]byte, len(fs))
	for n, v := range fs {
		out[n] = []byte(v)
	}
	return out
}

// node is one replica in a story: a memstore, a clock and its own wall clock.
type node struct {
	t     *testing.T
	name  string
	id    syncengine.ReplicaID
	store *memstore.Store
	clock *syncengine.Clock
	// skewMS is how far this replica's wall clock is from the true time.
	skewMS int64
	// now is the true time in ms; the node reads now+skewMS.
	now *int64
}

func newNode(t *testing.T, now *int64, name string, maxSkewMS int64) *node {
	t.Helper()
	id := replicaID(name)
	return &node{t: t, name: name, id: id, store: memstore.New(), clock: syncengine.NewClock(id, maxSkewMS), now: now}
}

func (n *node) wall() int64 { return *n.now + n.skewMS }

// write makes a local change against base (zero: the current version).
func (n *node) write(rec syncengine.RecordID, kind syncengine.Kind, area string, base syncengine.VersionVector, fields map[int32]string) syncengine.Change {
	n.t.Helper()
	c, err := syncenginetest.WriteLocal(n.t.Context(), n.store, n.clock, n.wall(), syncengine.Edit{
		ID: newChangeID(), Record: rec, Kind: kind, Area: area, Base: base, Fields: strFields(fields),
	})
	if err != nil {
		n.t.Fatalf("%s: write: %v", n.name, err)
	}
	return c
}

func (n *node) delete(rec syncengine.RecordID) syncengine.Change {
	n.t.Helper()
	c, err := syncenginetest.WriteLocal(n.t.Context(), n.store, n.clock, n.wall(), syncengine.Edit{
		ID: newChangeID(), Record: rec, Delete: true,
	})
	if err != nil {
		n.t.Fatalf("%s: delete: %v", n.name, err)
	}
	return c
}

func (n *node) record(id syncengine.RecordID) syncengine.Record {
	n.t.Helper()
	var r syncengine.Record
	err := n.store.View(n.t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(n.t.Context(), id)
		return err
	})
	if err != nil {
		n.t.Fatalf("%s: read record: %v", n.name, err)
	}
	return r
}

func (n *node) cursor(peer *node) syncengine.Cursor {
	n.t.Helper()
	var c syncengine.Cursor
	err := n.store.View(n.t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		c, err = tx.Cursor(n.t.Context(), peer.id)
		return err
	})
	if err != nil {
		n.t.Fatalf("%s: read cursor: %v", n.name, err)
	}
	return c
}

func (n *node) value(id syncengine.RecordID, field int32) string {
	n.t.Helper()
	v, ok := n.record(id).Value(field)
	if !ok {
		n.t.Fatalf("%s: record %v has no field %d", n.name, id, field)
	}
	return string(v)
}

// push sends from's unacknowledged changes to to, batch by batch, as the push
// RPC does, and returns every change result.
func push(t *testing.T, from, to *node, limit int) []syncengine.ChangeResult {
	t.Helper()
	ctx := t.Context()
	var all []syncengine.ChangeResult
	for {
		b, err := syncengine.NextBatch(ctx, from.store, from.id, from.cursor(to).Acked, syncengine.SendOptions{Limit: limit, Exclude: to.id})
		if err != nil {
			t.Fatalf("push %s→%s: %v", from.name, to.name, err)
		}
		rc, err := syncengine.ReceiveBatch(ctx, to.store, b, syncengine.ReceiveOptions{Clock: to.clock, WallMS: to.wall()})
		if err != nil {
			t.Fatalf("push %s→%s: %v", from.name, to.name, err)
		}
		if err := syncengine.Acknowledge(ctx, from.store, to.id, rc); err != nil {
			t.Fatalf("push %s→%s: %v", from.name, to.name, err)
		}
		all = append(all, rc.Results...)
		if !b.More || rc.Through < b.Through {
			return all
		}
	}
}

// pull fetches from's changes after to's cursor, as the pull RPC does.
func pull(t *testing.T, to, from *node, limit int) []syncengine.ChangeResult {
	t.Helper()
	ctx := t.Context()
	var all []syncengine.ChangeResult
	for {
		b, err := syncengine.NextBatch(ctx, from.store, from.id, to.cursor(from).Received, syncengine.SendOptions{Limit: limit, Exclude: to.id})
		if err != nil {
			t.Fatalf("pull %s←%s: %v", to.name, from.name, err)
		}
		rc, err := syncengine.ReceiveBatch(ctx, to.store, b, syncengine.ReceiveOptions{Clock: to.clock, WallMS: to.wall()})
		if err != nil {
			t.Fatalf("pull %s←%s: %v", to.name, from.name, err)
		}
		all = append(all, rc.Results...)
		if !b.More || rc.Through < b.Through {
			return all
		}
	}
}

// syncUp is a device (or township) session with its server: push, then pull.
func syncUp(t *testing.T, device, server *node) {
	t.Helper()
	push(t, device, server, 0)
	pull(t, device, server, 0)
}

// assertSameRecord checks that every node holds byte-identical state of id.
func assertSameRecord(t *testing.T, id syncengine.RecordID, nodes ...*node) {
	t.Helper()
	want := nodes[0].record(id)
	for _, n := range nodes[1:] {
		if got := n.record(id); got.Digest() != want.Digest() {
			t.Fatalf("%s and %s disagree on %v:\n%s: %v\n%s: %v", n.name, nodes[0].name, id, n.name, got, nodes[0].name, want)
		}
	}
}

func outcomes(rs []syncengine.ChangeResult) []syncengine.Outcome {
	out := make([]syncengine.Outcome, len(rs))
	for i, r := range rs {
		out[i] = r.Outcome
	}
	return out
}
