package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// TestEnrolCannotTakeOverAReplica: replica ids are not secret (every pulled
// change names its origin). With nothing but a fresh code and a phone's
// replica id, an attacker's Enroll is refused, REPLICA_ALREADY_ENROLLED,
// whether the phone is active or revoked, and the phone keeps syncing. The
// operator's replace code re-enrols the revoked phone, which then pushes the
// work it made meanwhile; a replace code used by a new phone revokes the old.
func TestEnrolCannotTakeOverAReplica(t *testing.T) {
	srv, addr := servertest.Start(t, server.Config{DataDir: t.TempDir()})
	victim := phoneAt(t, srv, addr, villageA)
	if err := victim.Save(t.Context(), followUp(t, villageA, 128, 80)); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, victim)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	enrol := fieldsyncv1.NewEnrolmentServiceClient(conn)
	id := victim.Replica()
	takeOver := func(when string) {
		t.Helper()
		code, _, err := srv.IssueEnrolmentCode([]string{villageA}, "attacker", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, err = enrol.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: id[:]})
		if status.Code(err) != codes.AlreadyExists || servertest.ReasonOf(err) != server.ReasonReplicaEnrolled {
			t.Fatalf("%s: Enroll with a fresh code and the phone's replica id = %v, want AlreadyExists %s", when, err, server.ReasonReplicaEnrolled)
		}
	}
	takeOver("active")
	if err := victim.Save(t.Context(), followUp(t, villageA, 130, 82)); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, victim) // its token still works

	if err := srv.Store().Registry().RevokeDevice(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	takeOver("revoked")
	offline := followUp(t, villageA, 150, 95)
	if err := victim.Save(t.Context(), offline); err != nil {
		t.Fatal(err)
	}
	if err := victim.Sync(t.Context()); err == nil {
		t.Fatal("a revoked phone synced")
	}
	code, _, err := srv.IssueReplaceCode(t.Context(), id, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := victim.Enroll(t.Context(), addr, code); err != nil {
		t.Fatalf("re-enrolling with the replace code: %v", err)
	}
	mustSyncAll(t, victim)
	oid, _, _ := wire.Identity(offline)
	if digest := recordDigest(t, srv.Store(), oid); digest == ([32]byte{}) {
		t.Error("the work the phone made while revoked did not reach the server after its replacement enrolment")
	}
	if st, err := victim.Status(t.Context()); err != nil || st.Pending != 0 || len(st.Rejected) != 0 {
		t.Errorf("status after re-enrolment: %+v, %v", st, err)
	}

	// A new phone in its place: the old one is revoked.
	code, _, err = srv.IssueReplaceCode(t.Context(), id, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var fresh syncengine.ReplicaID
	rand.Read(fresh[:])
	if _, err := enrol.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: fresh[:]}); err != nil {
		t.Fatal(err)
	}
	if err := victim.Sync(t.Context()); err == nil {
		t.Error("the replaced phone synced")
	}
}

// TestRelayCannotForgeOrigins: a township's relay token pushes a change in
// the county's own name with dot counter 2^64−1, one in the name of a phone
// enrolled at the county directly, one in the name of another township's
// device, and one whose counter leaps a million beyond its replica's last:
// each is refused on its own, the valid change beside them is applied, and
// the county keeps numbering its own changes.
func TestRelayCannotForgeOrigins(t *testing.T) {
	tr := newTiers(t)
	direct := phoneAt(t, tr.county, tr.countyAddr, villageA)
	if err := direct.Save(t.Context(), followUp(t, villageA, 125, 80)); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, direct)
	// A second township, enrolled as a relay too.
	code, _, err := tr.county.IssueRelayCode([]string{township2}, "township 2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(tr.countyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var town2 syncengine.ReplicaID
	rand.Read(town2[:])
	resp, err := fieldsyncv1.NewEnrolmentServiceClient(conn).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: town2[:]})
	if err != nil {
		t.Fatal(err)
	}
	rpc := fieldsyncv1.NewSyncServiceClient(conn)
	relayCtx := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
	}
	ctx1, ctx2 := relayCtx(tr.token), relayCtx(resp.GetDeviceToken())
	for _, ctx := range []context.Context{ctx1, ctx2} {
		if _, err := rpc.Hello(ctx, &fieldsyncv1.HelloRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	push := func(ctx context.Context, cs ...syncengine.Change) []fieldsyncv1.ChangeOutcome {
		t.Helper()
		var pcs []*fieldsyncv1.Change
		for _, c := range cs {
			pc, err := wire.ChangeToProto(c)
			if err != nil {
				t.Fatal(err)
			}
			pcs = append(pcs, pc)
		}
		resp, err := rpc.Push(ctx, &fieldsyncv1.PushRequest{Changes: pcs, FirstPosition: 1, LastPosition: uint64(len(pcs))})
		if err != nil {
			t.Fatal(err)
		}
		var out []fieldsyncv1.ChangeOutcome
		for _, r := range resp.GetResults() {
			out = append(out, r.GetOutcome())
		}
		return out
	}
	as := func(c syncengine.Change, origin syncengine.ReplicaID, counter uint64) syncengine.Change {
		c.Origin, c.Dot = origin, syncengine.Dot{Replica: origin, Counter: counter}
		return c
	}
	countyID := tr.county.Store().Replica()
	phoneOfTown1 := localChange(t, followUp(t, villageA, 120, 80))
	forged := []syncengine.Change{
		as(localChange(t, followUp(t, villageA, 121, 80)), countyID, math.MaxUint64),
		as(localChange(t, followUp(t, villageA, 122, 80)), direct.Replica(), 7),
		localChange(t, followUp(t, villageA, 123, 80)), // a phone of township 1, valid
		as(localChange(t, followUp(t, villageA, 124, 80)), phoneOfTown1.Origin, 1<<22),
		phoneOfTown1,
	}
	got := push(ctx1, forged...)
	want := []fieldsyncv1.ChangeOutcome{outOfScope, outOfScope, applied, malformed, applied}
	if !equal(got, want) {
		t.Fatalf("forged pushes from township 1 = %v, want %v", got, want)
	}
	// Township 2 pushing a change of township 1's phone: refused.
	again := localChange(t, followUp(t, village2, 126, 80))
	if got := push(ctx2, as(again, phoneOfTown1.Origin, 2)); !equal(got, []fieldsyncv1.ChangeOutcome{outOfScope}) {
		t.Errorf("township 2 pushing township 1's phone's change = %v, want out of scope", got)
	}
	// A change township 2 may not push (a record of township 1's village)
	// is refused and speaks for nothing: the phone of township 1 it names
	// still pushes through township 1.
	doomed := localChange(t, followUp(t, villageA, 128, 80))
	if got := push(ctx2, doomed); !equal(got, []fieldsyncv1.ChangeOutcome{outOfScope}) {
		t.Fatalf("township 2 pushing a record of township 1 = %v, want out of scope", got)
	}
	later := as(localChange(t, followUp(t, villageA, 129, 80)), doomed.Origin, 1)
	if got := push(ctx1, later); !equal(got, []fieldsyncv1.ChangeOutcome{applied}) {
		t.Errorf("township 1 pushing its phone's change after township 2's refused one = %v, want applied", got)
	}
	// The operator hands township 1's phone to township 2 (re-enrolled
	// there): township 2's change of it goes through, township 1's no more.
	admin, actx := adminClient(t, tr.countyAddr), adminCtxFor(t, tr.countyDir)
	directID := direct.Replica()
	for _, bad := range []*fieldsyncv1.RebindDeviceRequest{
		{ReplicaId: phoneOfTown1.Origin[:], RelayReplicaId: directID[:]}, // not a relay
		{ReplicaId: directID[:], RelayReplicaId: town2[:]},               // enrolled at the county itself
		{ReplicaId: phoneOfTown1.Origin[:8], RelayReplicaId: town2[:]},   // not an id
		{ReplicaId: countyID[:], RelayReplicaId: town2[:]},               // the county itself
		{ReplicaId: town2[:], RelayReplicaId: town2[:]},                  // the township itself
	} {
		if _, err := admin.RebindDevice(actx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("RebindDevice(%x → %x): %v, want InvalidArgument", bad.GetReplicaId(), bad.GetRelayReplicaId(), err)
		}
	}
	rb, err := admin.RebindDevice(actx, &fieldsyncv1.RebindDeviceRequest{ReplicaId: phoneOfTown1.Origin[:], RelayReplicaId: town2[:]})
	if err != nil {
		t.Fatal(err)
	}
	if town1 := tr.town.Store().Replica(); !bytes.Equal(rb.GetPreviousRelayReplicaId(), town1[:]) {
		t.Errorf("RebindDevice said the phone was spoken for by %x, want township 1 %x", rb.GetPreviousRelayReplicaId(), town1[:])
	}
	if got := push(ctx2, as(again, phoneOfTown1.Origin, 2)); !equal(got, []fieldsyncv1.ChangeOutcome{applied}) {
		t.Errorf("township 2 pushing its re-enrolled phone's change after the rebind = %v, want applied", got)
	}
	if got := push(ctx1, as(localChange(t, followUp(t, villageA, 130, 80)), phoneOfTown1.Origin, 3)); !equal(got, []fieldsyncv1.ChangeOutcome{outOfScope}) {
		t.Errorf("township 1 pushing the phone's change after the rebind = %v, want out of scope", got)
	}
	entries, err := admin.ListAudit(actx, &fieldsyncv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if last := entries.GetEntries()[len(entries.GetEntries())-1]; last.GetAction() != fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_REBIND || last.GetTarget() != phoneOfTown1.Origin.String() {
		t.Errorf("the audit trail's last entry %v, want the rebind of %v", last, phoneOfTown1.Origin)
	}
	// The county numbers its own next change as before.
	if _, err := tr.county.Save(t.Context(), followUp(t, villageA, 127, 80)); err != nil {
		t.Fatalf("the county's own change after the forged pushes: %v", err)
	}
	var n uint64
	if err := tr.county.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		n, err = tx.MaxCounter(t.Context(), countyID)
		return err
	}); err != nil || n == 0 || n > 10 {
		t.Errorf("the county's highest own counter = %d, %v; want its few own changes", n, err)
	}
}
