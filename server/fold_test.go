package server_test

import (
	"bytes"
	"crypto/rand"
	"strings"
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
func (d *device) saveAt(t *testing.T, rec *fieldsyncv1.Record, wall time.Time) syncengine.RecordID {
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
	return id
}

// An Exchange's handshake is answered with its push, as after it: its
// acknowledged position counts the push, and the operator's status shows
// what the device reported less what the push acknowledged. Its records
// may be packed.
func TestExchange(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	id := d.store.Replica()
	for range 3 {
		d.save(t, followUp(t, villageA, 150, 95))
	}
	req := d.pushRequest(t, 0)
	for _, pc := range req.Changes[1:] {
		if err := wire.PackChange(pc); err != nil || pc.GetUpsert().GetPackedRecord() == nil {
			t.Fatalf("PackChange = %v, packed %x", err, pc.GetUpsert().GetPackedRecord())
		}
	}
	client := time.Now().Add(-time.Hour)
	hello := &fieldsyncv1.HelloRequest{ReplicaId: id[:], CapabilityVersion: wire.CapabilityVersion, ClientTime: timestamppb.New(client), PendingChanges: 5}
	// Packed with another schema, or sent with Push, nothing is taken.
	mismatched := &fieldsyncv1.ExchangeRequest{Hello: hello, Push: req, RecordSchema: []byte("another!")}
	if x, err := e.sync.Exchange(d.ctx(t), mismatched); err != nil || len(x.GetPush().GetResults()) != 0 || x.GetPush().GetAcknowledgedPosition() != 0 ||
		!bytes.Equal(x.GetHello().GetRecordSchema(), wire.RecordSchema()) {
		t.Fatalf("exchange packed with another schema = %v, %v; want the handshake alone, naming the server's schema", x, err)
	}
	mismatched.Hello = nil
	if _, err := e.sync.Exchange(d.ctx(t), mismatched); status.Code(err) != codes.FailedPrecondition || servertest.ReasonOf(err) != server.ReasonSchemaMismatch {
		t.Errorf("exchange packed with another schema, no handshake = %v; want FailedPrecondition %s", err, server.ReasonSchemaMismatch)
	}
	if _, err := e.sync.Push(d.ctx(t), req); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Push of packed records = %v; want InvalidArgument", err)
	}
	xresp, err := e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: hello, Push: req, RecordSchema: wire.RecordSchema()})
	if err != nil {
		t.Fatal(err)
	}
	resp := xresp.GetPush()
	if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{applied, applied, applied}) || resp.GetAcknowledgedPosition() != 3 {
		t.Fatalf("exchange = %v through %d, want 3 applied through 3", got, resp.GetAcknowledgedPosition())
	}
	h := xresp.GetHello()
	if srv := e.srv.Replica(); syncengine.ReplicaID(h.GetServerReplicaId()) != srv || h.GetCapabilityVersion() != wire.CapabilityVersion {
		t.Fatalf("hello answered with the push = %v", h)
	}
	if off := h.GetClockOffsetMs(); h.GetAcknowledgedPosition() != 3 || off < 3590_000 || off > 3610_000 {
		t.Errorf("hello after the push: acknowledged %d (want 3), offset %d ms (want about an hour)", h.GetAcknowledgedPosition(), h.GetClockOffsetMs())
	}
	st, err := e.admin.SyncStatus(e.adminCtx(t), &fieldsyncv1.SyncStatusRequest{})
	if err != nil || len(st.GetDevices()) != 1 || st.GetDevices()[0].GetPendingChanges() != 2 || st.GetDevices()[0].GetLastSeen() == nil {
		t.Errorf("status after an exchange of 3 with 5 reported = %v, %v; want 2 pending and seen", st.GetDevices(), err)
	}
	// Without a handshake the answer carries none.
	xresp, err = e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Push: d.pushRequest(t, 0)})
	if err != nil || xresp.GetHello() != nil || !equal(outcomes(xresp.GetPush()), []fieldsyncv1.ChangeOutcome{duplicate, duplicate, duplicate}) {
		t.Errorf("exchange again without hello = %v, %v", xresp, err)
	}
	// A handshake in another replica's name is refused with the push.
	other := syncengine.ReplicaID{9}
	_, err = e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: &fieldsyncv1.HelloRequest{ReplicaId: other[:]}, Push: d.pushRequest(t, 0)})
	if status.Code(err) != codes.PermissionDenied || servertest.ReasonOf(err) != server.ReasonReplicaMismatch {
		t.Errorf("exchange with the hello of another replica = %v, want PermissionDenied %s", err, server.ReasonReplicaMismatch)
	}
}

// An exchange the server cannot take as sent (it starts after the server's
// cursor, or is over its limit) is answered with the handshake alone,
// nothing of it stored, where a push without one fails.
func TestExchangeTheServerCannotTake(t *testing.T) {
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
	hello := &fieldsyncv1.HelloRequest{ReplicaId: id[:]}
	resp, err := e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: hello, Push: gap})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetPush().GetResults()) != 0 || resp.GetPush().GetAcknowledgedPosition() != 0 || resp.GetHello().GetAcknowledgedPosition() != 0 || resp.GetHello().GetLimits().GetMaxPushChanges() == 0 {
		t.Errorf("exchange after a gap = %v, want the handshake alone at position 0", resp)
	}
	if _, err := e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Push: gap}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("exchange after a gap without a handshake = %v, want FailedPrecondition", err)
	}
	big := d.pushRequest(t, 0)
	for len(big.Changes) <= server.DefaultMaxPushChanges {
		big.Changes = append(big.Changes, big.Changes...)
	}
	if resp, err = e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: hello, Push: big}); err != nil || len(resp.GetPush().GetResults()) != 0 || resp.GetHello() == nil {
		t.Errorf("exchange over the limit = %v, %v; want the handshake alone", resp, err)
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
func TestExchangeRefusesStampsAhead(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	id := d.store.Replica()
	now := time.Now()
	d.saveAt(t, followUp(t, villageA, 150, 95), now.Add(-time.Minute))
	d.saveAt(t, followUp(t, villageA, 150, 95), now.Add(30*time.Second))
	d.saveAt(t, followUp(t, villageA, 150, 95), now.Add(31*time.Second))
	hello := &fieldsyncv1.HelloRequest{ReplicaId: id[:], RefuseStampsAhead: true}
	x, err := e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: hello, Push: d.pushRequest(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	resp := x.GetPush()
	rs := resp.GetResults()
	if got := outcomes(resp); len(got) != 2 || got[0] != applied || got[1] != fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_CLOCK_SKEW ||
		rs[1].GetReason() != fieldsyncv1.Reason_REASON_CLOCK_SKEW || resp.GetAcknowledgedPosition() != 1 {
		t.Fatalf("folded push with a stamp 30 s ahead = %v through %d, want applied then clock skew through 1", rs, resp.GetAcknowledgedPosition())
	}
	if ms := x.GetHello().GetServerTime().AsTime().UnixMilli(); ms >= now.Add(30*time.Second).UnixMilli() {
		t.Errorf("server time %d is not before the refused stamp", ms)
	}
	// Position 1 again, stamped a minute before: held, so a duplicate.
	req := d.pushRequest(t, 0)
	req.Changes, req.LastPosition = req.Changes[:1], 1
	if x, err = e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: hello, Push: req}); err != nil || !equal(outcomes(x.GetPush()), []fieldsyncv1.ChangeOutcome{duplicate}) {
		t.Errorf("held change pushed again = %v, %v", x, err)
	}
	plain := &fieldsyncv1.HelloRequest{ReplicaId: id[:]}
	if x, err = e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: plain, Push: d.pushRequest(t, 1)}); err != nil || !equal(outcomes(x.GetPush()), []fieldsyncv1.ChangeOutcome{applied, applied}) {
		t.Errorf("without refuse_stamps_ahead = %v, %v; want both applied", x, err)
	}
	// Held now, the change stamped ahead is a duplicate even with the flag.
	if x, err = e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Hello: hello, Push: d.pushRequest(t, 1)}); err != nil || !equal(outcomes(x.GetPush()), []fieldsyncv1.ChangeOutcome{duplicate, duplicate}) {
		t.Errorf("held changes stamped ahead = %v, %v; want duplicates", x, err)
	}
}

// A packed record that does not unpack (damaged bytes) or that comes with
// a record besides refuses its change alone, REJECTED_MALFORMED; the
// changes around it are stored.
func TestExchangeRefusesBadPackingAlone(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	for range 4 {
		d.save(t, followUp(t, villageA, 150, 95))
	}
	req := d.pushRequest(t, 0)
	for _, pc := range req.Changes {
		if err := wire.PackChange(pc); err != nil {
			t.Fatal(err)
		}
	}
	u1 := req.Changes[1].GetUpsert()
	u1.PackedRecord = u1.PackedRecord[:len(u1.PackedRecord)-2]
	u2 := req.Changes[2].GetUpsert()
	u2.Record = followUp(t, villageA, 150, 95)
	resp, err := e.sync.Exchange(d.ctx(t), &fieldsyncv1.ExchangeRequest{Push: req, RecordSchema: wire.RecordSchema()})
	if err != nil {
		t.Fatal(err)
	}
	rs := resp.GetPush().GetResults()
	if got := outcomes(resp.GetPush()); !equal(got, []fieldsyncv1.ChangeOutcome{applied, malformed, malformed, applied}) {
		t.Fatalf("exchange with two badly packed changes = %v", rs)
	}
	for _, r := range rs[1:3] {
		if r.GetReason() != fieldsyncv1.Reason_REASON_MALFORMED_CHANGE || !strings.Contains(r.GetMessage(), "pack") {
			t.Errorf("refusal %v does not say the packing is wrong", r)
		}
	}
}

// A pull that asks for packed records gets them only when it names the
// server's record schema; a version-1 pull never does.
func TestPullPacksForTheSameSchemaOnly(t *testing.T) {
	e := newEnv(t)
	a, b := e.enrol(t, villageA), e.enrol(t, villageA)
	start := pullResponses(t, e, b, nil)
	cursor := start[len(start)-1].GetCursor()
	for range 2 {
		a.save(t, followUp(t, villageA, 150, 95))
	}
	if _, err := e.sync.Push(a.ctx(t), a.pushRequest(t, 0)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		req    *fieldsyncv1.PullRequest
		packed bool
	}{
		{"version 1", &fieldsyncv1.PullRequest{}, false},
		{"packed, same schema", &fieldsyncv1.PullRequest{Packed: true, RecordSchema: wire.RecordSchema()}, true},
		{"packed, another schema", &fieldsyncv1.PullRequest{Packed: true, RecordSchema: []byte("another")}, false},
		{"packed, no schema", &fieldsyncv1.PullRequest{Packed: true}, false},
	} {
		tc.req.Cursor = cursor
		stream, err := e.sync.Pull(b.ctx(t), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		var packed, plain int
		for {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("%s: pull: %v", tc.name, err)
			}
			for _, c := range resp.GetChanges() {
				if len(c.GetUpsert().GetPackedRecord()) > 0 {
					packed++
				} else if c.GetUpsert().GetRecord() != nil {
					plain++
				}
			}
			if resp.GetCaughtUp() {
				break
			}
		}
		if (tc.packed && (packed != 2 || plain != 0)) || (!tc.packed && (packed != 0 || plain != 2)) {
			t.Errorf("%s: %d packed and %d plain records, want packed %v", tc.name, packed, plain, tc.packed)
		}
	}
}
