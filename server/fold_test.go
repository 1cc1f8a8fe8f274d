package server_test

import (
	"crypto/rand"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/syncenginetest"
	"github.com/fieldsync/fieldsync/wire"
)

// saveAt writes rec as a local change of the device stamped by a wall clock
// reading wall.
func (d *device) saveAt(t *testing.T, rec *fieldsyncv1.Record, wall time.Time) {
	t.Helper()
	fields, err := wire.Fields(wire.Body(rec))
	if err != nil {
		t.Fatal(err)
	}
	id, area, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	var cid syncengine.ChangeID
	rand.Read(cid[:])
	_, err = syncenginetest.WriteLocal(t.Context(), d.store, d.clock, wall.UnixMilli(), syncengine.Edit{
		ID: cid, Record: id, Kind: wire.KindOf(rec), Area: area, Fields: fields,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A handshake folded into a push is answered with the push, as after it:
// its acknowledged position counts the push, and the operator's status
// shows what the device reported less what the push acknowledged.
func TestPushWithHello(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	id := d.store.Replica()
	for range 3 {
		d.save(t, followUp(t, villageA, 150, 95))
	}
	req := d.pushRequest(t, 0)
	client := time.Now().Add(-time.Hour)
	req.Hello = &fieldsyncv1.HelloRequest{ReplicaId: id[:], CapabilityVersion: wire.CapabilityVersion, ClientTime: timestamppb.New(client), PendingChanges: 5}
	resp, err := e.sync.Push(d.ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{applied, applied, applied}) || resp.GetAcknowledgedPosition() != 3 {
		t.Fatalf("folded push = %v through %d, want 3 applied through 3", got, resp.GetAcknowledgedPosition())
	}
	h := resp.GetHello()
	if srv := e.srv.Replica(); syncengine.ReplicaID(h.GetServerReplicaId()) != srv || h.GetCapabilityVersion() != wire.CapabilityVersion {
		t.Fatalf("hello answered with the push = %v", h)
	}
	if off := h.GetClockOffsetMs(); h.GetAcknowledgedPosition() != 3 || off < 3590_000 || off > 3610_000 {
		t.Errorf("hello after the push: acknowledged %d (want 3), offset %d ms (want about an hour)", h.GetAcknowledgedPosition(), h.GetClockOffsetMs())
	}
	st, err := e.admin.SyncStatus(e.adminCtx(t), &fieldsyncv1.SyncStatusRequest{})
	if err != nil || len(st.GetDevices()) != 1 || st.GetDevices()[0].GetPendingChanges() != 2 || st.GetDevices()[0].GetLastSeen() == nil {
		t.Errorf("status after a folded push of 3 with 5 reported = %v, %v; want 2 pending and seen", st.GetDevices(), err)
	}
	// Without a handshake the answer carries none.
	resp, err = e.sync.Push(d.ctx(t), d.pushRequest(t, 0))
	if err != nil || resp.GetHello() != nil || !equal(outcomes(resp), []fieldsyncv1.ChangeOutcome{duplicate, duplicate, duplicate}) {
		t.Errorf("push again without hello = %v, %v", resp, err)
	}
	// A handshake in another replica's name is refused with the push.
	req = d.pushRequest(t, 0)
	other := syncengine.ReplicaID{9}
	req.Hello = &fieldsyncv1.HelloRequest{ReplicaId: other[:]}
	if _, err := e.sync.Push(d.ctx(t), req); status.Code(err) != codes.PermissionDenied || servertest.ReasonOf(err) != server.ReasonReplicaMismatch {
		t.Errorf("folded hello of another replica = %v, want PermissionDenied %s", err, server.ReasonReplicaMismatch)
	}
}

// A folded push the server cannot take as sent (it starts after the
// server's cursor, or is over its limit) is answered with the handshake
// alone, nothing of it stored, where a push without one fails.
func TestPushWithHelloTheServerCannotTake(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	id := d.store.Replica()
	for range 3 {
		d.save(t, followUp(t, villageA, 150, 95))
	}
	gap := d.pushRequest(t, 1) // positions 2..3: the server holds nothing
	if _, err := e.sync.Push(d.ctx(t), gap); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("push after a gap = %v, want FailedPrecondition", err)
	}
	gap.Hello = &fieldsyncv1.HelloRequest{ReplicaId: id[:]}
	resp, err := e.sync.Push(d.ctx(t), gap)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != 0 || resp.GetAcknowledgedPosition() != 0 || resp.GetHello().GetAcknowledgedPosition() != 0 || resp.GetHello().GetLimits().GetMaxPushChanges() == 0 {
		t.Errorf("folded push after a gap = %v, want the handshake alone at position 0", resp)
	}
	big := d.pushRequest(t, 0)
	for len(big.Changes) <= server.DefaultMaxPushChanges {
		big.Changes = append(big.Changes, big.Changes...)
	}
	big.Hello = &fieldsyncv1.HelloRequest{ReplicaId: id[:]}
	if resp, err = e.sync.Push(d.ctx(t), big); err != nil || len(resp.GetResults()) != 0 || resp.GetHello() == nil {
		t.Errorf("folded push over the limit = %v, %v; want the handshake alone", resp, err)
	}
	var n int
	err = e.srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		cur, err := tx.Cursor(t.Context(), id)
		n = int(cur.Received)
		return err
	})
	if err != nil || n != 0 {
		t.Errorf("server cursor of the device = %d, %v; want nothing stored", n, err)
	}
}

// With refuse_stamps_ahead the first of the device's own new changes stamped
// after the server's present is refused for clock skew and the push stops
// there; a change the server holds already is answered as such whatever
// its stamp; without the flag the stamp within the skew allowed is taken.
func TestPushWithHelloRefusesStampsAhead(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	id := d.store.Replica()
	now := time.Now()
	d.saveAt(t, followUp(t, villageA, 150, 95), now.Add(-time.Minute))
	d.saveAt(t, followUp(t, villageA, 150, 95), now.Add(30*time.Second))
	d.saveAt(t, followUp(t, villageA, 150, 95), now.Add(31*time.Second))
	hello := &fieldsyncv1.HelloRequest{ReplicaId: id[:], RefuseStampsAhead: true}
	req := d.pushRequest(t, 0)
	req.Hello = hello
	resp, err := e.sync.Push(d.ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	rs := resp.GetResults()
	if got := outcomes(resp); len(got) != 2 || got[0] != applied || got[1] != fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_CLOCK_SKEW ||
		rs[1].GetReason() != fieldsyncv1.Reason_REASON_CLOCK_SKEW || resp.GetAcknowledgedPosition() != 1 {
		t.Fatalf("folded push with a stamp 30 s ahead = %v through %d, want applied then clock skew through 1", rs, resp.GetAcknowledgedPosition())
	}
	if ms := resp.GetHello().GetServerTime().AsTime().UnixMilli(); ms >= now.Add(30*time.Second).UnixMilli() {
		t.Errorf("server time %d is not before the refused stamp", ms)
	}
	// Position 1 again, stamped a minute before: held, so a duplicate.
	req = d.pushRequest(t, 0)
	req.Changes, req.LastPosition = req.Changes[:1], 1
	req.Hello = hello
	if resp, err = e.sync.Push(d.ctx(t), req); err != nil || !equal(outcomes(resp), []fieldsyncv1.ChangeOutcome{duplicate}) {
		t.Errorf("held change pushed again = %v, %v", resp, err)
	}
	req = d.pushRequest(t, 1)
	req.Hello = &fieldsyncv1.HelloRequest{ReplicaId: id[:]}
	if resp, err = e.sync.Push(d.ctx(t), req); err != nil || !equal(outcomes(resp), []fieldsyncv1.ChangeOutcome{applied, applied}) {
		t.Errorf("without refuse_stamps_ahead = %v, %v; want both applied", resp, err)
	}
	// Held now, the change stamped ahead is a duplicate even with the flag.
	req = d.pushRequest(t, 1)
	req.Hello = hello
	if resp, err = e.sync.Push(d.ctx(t), req); err != nil || !equal(outcomes(resp), []fieldsyncv1.ChangeOutcome{duplicate, duplicate}) {
		t.Errorf("held changes stamped ahead = %v, %v; want duplicates", resp, err)
	}
}
