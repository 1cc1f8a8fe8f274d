package server_test

import (
	"context"
	"crypto/rand"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

const (
	county    = "532523"
	township1 = "532523101" // villageA and villageB
	township2 = "532523102"
	village2  = "532523102201"
)

// tiers is a county and a township relaying to it, on real sockets.
type tiers struct {
	county, town         *server.Server
	countyAddr, townAddr string
	countyDir, townDir   string
	token                string // the township's token at the county
}

func newTiers(t *testing.T) *tiers {
	t.Helper()
	cdir, tdir := t.TempDir(), t.TempDir()
	c, caddr := servertest.Start(t, server.Config{DataDir: cdir, Area: county, IDHashKey: make([]byte, 32)})
	tw, taddr := servertest.Start(t, server.Config{DataDir: tdir, Area: township1})
	code, _, err := c.IssueRelayCode([]string{township1}, "township 1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	token, key, err := tw.EnrollUpstream(t.Context(), caddr, code, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Errorf("EnrollUpstream handed an ID-hash key of %d bytes, want the county's 32", len(key))
	}
	if err := tw.SetUpstream(t.Context(), server.Upstream{Token: token}); err != nil {
		t.Fatal(err)
	}
	return &tiers{county: c, town: tw, countyAddr: caddr, townAddr: taddr, countyDir: cdir, townDir: tdir, token: token}
}

// phoneAt is an SDK replica enrolled with srv for area.
func phoneAt(t *testing.T, srv *server.Server, addr, area string) *fieldsync.Client {
	t.Helper()
	c, err := fieldsync.Open(t.Context(), filepath.Join(t.TempDir(), "phone.db"), fieldsync.WithRetry(fieldsync.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	code, _, err := srv.IssueEnrolmentCode([]string{area}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), addr, code); err != nil {
		t.Fatal(err)
	}
	return c
}

func recordDigest(t *testing.T, st syncengine.Store, id syncengine.RecordID) [32]byte {
	t.Helper()
	var r syncengine.Record
	err := st.View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Digest()
}

func recordIDOf(t *testing.T, rec *fieldsyncv1.Record) syncengine.RecordID {
	t.Helper()
	id, _, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A phone's change travels phone → township → county, the county's receipt
// travels back down, and a conflict resolved at the county closes on the
// phones of the township.
func TestRelayToCountyAndBack(t *testing.T) {
	tr := newTiers(t)
	a, b := phoneAt(t, tr.town, tr.townAddr, villageA), phoneAt(t, tr.town, tr.townAddr, villageA)
	base := followUp(t, villageA, 130, 80)
	id := recordIDOf(t, base)
	if err := a.Save(t.Context(), base); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a)
	st, err := a.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Upstream || st.AtServer != 1 || st.AtUpstream != 0 {
		t.Errorf("before the relay: status upstream=%v at server %d at county %d, want true 1 0", st.Upstream, st.AtServer, st.AtUpstream)
	}
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := recordDigest(t, tr.county.Store(), id), recordDigest(t, tr.town.Store(), id); got != want {
		t.Fatal("the county's record differs from the township's after the relay")
	}
	mustSyncAll(t, a, b)
	rs, err := a.Receipts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Stage != fieldsync.StageUpstream {
		t.Errorf("receipts after the relay = %+v, want one change accepted upstream", rs)
	}

	// Two phones disagree offline; the conflict reaches the county.
	fa, fb := proto.Clone(base).(*fieldsyncv1.Record), proto.Clone(base).(*fieldsyncv1.Record)
	fa.GetFollowUp().SystolicMmhg = proto.Int32(150)
	fb.GetFollowUp().SystolicMmhg = proto.Int32(160)
	if err := a.Save(t.Context(), fa); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(t.Context(), fb); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a, b)
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	cadmin := adminClient(t, tr.countyAddr)
	list, err := cadmin.ListConflicts(adminCtxFor(t, tr.countyDir), &fieldsyncv1.ListConflictsRequest{AreaPrefix: villageA})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetRecords()) != 1 || len(list.GetRecords()[0].GetConflicts()) != 1 {
		t.Fatalf("county ListConflicts = %v, want the phones' conflict", list)
	}
	fc := list.GetRecords()[0].GetConflicts()[0]
	if _, err := cadmin.ResolveConflict(adminCtxFor(t, tr.countyDir), &fieldsyncv1.ResolveConflictRequest{
		RecordId: id[:], FieldNumber: fc.GetNumber(), Choice: &fieldsyncv1.ResolveConflictRequest_Keep{Keep: 0},
	}); err != nil {
		t.Fatal(err)
	}
	// The county's correction flows down: county → township → phones.
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a, b)
	want := recordDigest(t, tr.county.Store(), id)
	for name, st := range map[string]syncengine.Store{"township": tr.town.Store()} {
		if recordDigest(t, st, id) != want {
			t.Errorf("%s's record differs from the county's after the resolution", name)
		}
	}
	for name, c := range map[string]*fieldsync.Client{"a": a, "b": b} {
		cs, err := c.Conflicts(t.Context(), id.String())
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 0 {
			t.Errorf("phone %s still shows %d conflicts after the county resolved them", name, len(cs))
		}
	}
	tadmin := adminClient(t, tr.townAddr)
	if tl, err := tadmin.ListConflicts(adminCtxFor(t, tr.townDir), &fieldsyncv1.ListConflictsRequest{AreaPrefix: villageA}); err != nil || len(tl.GetRecords()) != 0 {
		t.Errorf("township ListConflicts after the county's resolution = %v, %v; want none", tl, err)
	}

	// Status at both tiers: the county sees the township as a relay, and
	// the two phones it reported; the township sees its uplink.
	cst, err := cadmin.SyncStatus(adminCtxFor(t, tr.countyDir), &fieldsyncv1.SyncStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ds := cst.GetDevices(); len(ds) != 3 || !ds[0].GetRelay() || ds[0].GetLastSync() == nil || len(ds[0].GetReportedBy()) != 0 ||
		len(reportedBy(t, cst, tr.town.Replica())) != 2 {
		t.Errorf("county SyncStatus devices = %v, want the township, relay, synced, and its two phones", ds)
	}
	tst, err := tadmin.SyncStatus(adminCtxFor(t, tr.townDir), &fieldsyncv1.SyncStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if up := tst.GetUpstream(); up == nil || up.GetLastSync() == nil || up.GetLastError() != "" || up.GetPendingChanges() != 0 || up.GetAddress() != tr.countyAddr {
		t.Errorf("township SyncStatus upstream = %v, want synced with %s, nothing pending", up, tr.countyAddr)
	}
}

// The township's token at the county reaches its own township only: a push
// in another township's area is refused change by change, and a pull
// returns nothing of it.
func TestRelayScope(t *testing.T) {
	tr := newTiers(t)
	other := phoneAt(t, tr.county, tr.countyAddr, village2)
	foreign := followUp(t, village2, 140, 90)
	if err := other.Save(t.Context(), foreign); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, other)

	conn, err := grpc.NewClient(tr.countyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc := fieldsyncv1.NewSyncServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tr.token)
	if _, err := rpc.Hello(ctx, &fieldsyncv1.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	// A change made by some phone of township 2, and one of township 1, both
	// pushed in the relay's batch.
	mine, theirs := followUp(t, villageA, 120, 80), followUp(t, village2, 120, 80)
	var changes []*fieldsyncv1.Change
	for _, rec := range []*fieldsyncv1.Record{theirs, mine} {
		ch := localChange(t, rec)
		pc, err := wire.ChangeToProto(ch)
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, pc)
	}
	resp, err := rpc.Push(ctx, &fieldsyncv1.PushRequest{Changes: changes, FirstPosition: 1, LastPosition: 2})
	if err != nil {
		t.Fatal(err)
	}
	got := []fieldsyncv1.ChangeOutcome{resp.GetResults()[0].GetOutcome(), resp.GetResults()[1].GetOutcome()}
	if got[0] != fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE || got[1] != fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
		t.Errorf("relay push outcomes = %v, want out of scope for township 2's change and applied for township 1's", got)
	}
	stream, err := rpc.Pull(ctx, &fieldsyncv1.PullRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			break
		}
		for _, rs := range r.GetRecords() {
			if rs.GetAreaCode() != "" && rs.GetAreaCode()[:9] != township1 {
				t.Errorf("the township pulled a record of area %s", rs.GetAreaCode())
			}
		}
		for _, c := range r.GetChanges() {
			if c.GetAreaCode()[:9] != township1 {
				t.Errorf("the township pulled a change of area %s", c.GetAreaCode())
			}
		}
	}
	// A relay code is for whole townships.
	if _, _, err := tr.county.IssueRelayCode([]string{villageA}, "x", time.Hour); err == nil {
		t.Error("IssueRelayCode for a village succeeded, want an error")
	}
}

// localChange is rec as a new local change of a fresh replica.
func localChange(t *testing.T, rec *fieldsyncv1.Record) syncengine.Change {
	t.Helper()
	id, area, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := wire.Fields(wire.Body(rec))
	if err != nil {
		t.Fatal(err)
	}
	var origin syncengine.ReplicaID
	var cid syncengine.ChangeID
	rand.Read(origin[:])
	rand.Read(cid[:])
	clock := syncengine.NewClock(origin, 0)
	return syncengine.Change{
		ID: cid, RecordID: id, Kind: wire.KindOf(rec), Area: area,
		Origin: origin, Dot: syncengine.Dot{Replica: origin, Counter: 1}, Stamp: clock.Now(time.Now().UnixMilli()),
		Fields: fields,
	}
}

// adminClient is an AdminService client of the server at addr.
func adminClient(t *testing.T, addr string) fieldsyncv1.AdminServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return fieldsyncv1.NewAdminServiceClient(conn)
}

// adminCtxFor carries the admin token of the server whose data is in dir.
func adminCtxFor(t *testing.T, dir string) context.Context {
	t.Helper()
	return (&env{dir: dir}).adminCtx(t)
}

// A down uplink does not stop the phones: they sync with the township, whose
// status shows the uplink's error and what waits for it; when the county is
// back the relay catches up.
func TestRelayUplinkDown(t *testing.T) {
	tr := newTiers(t)
	// Point the relay at a port where nothing listens.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	if err := tr.town.SetUpstream(t.Context(), server.Upstream{Addr: dead, Token: tr.token}); err != nil {
		t.Fatal(err)
	}
	a := phoneAt(t, tr.town, tr.townAddr, villageA)
	if err := a.Save(t.Context(), followUp(t, villageA, 130, 80)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := tr.town.SyncUpstream(ctx); err == nil {
		t.Fatal("SyncUpstream to a closed port succeeded")
	}
	mustSyncAll(t, a)
	tst, err := adminClient(t, tr.townAddr).SyncStatus(adminCtxFor(t, tr.townDir), &fieldsyncv1.SyncStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if up := tst.GetUpstream(); up.GetLastError() == "" || up.GetPendingChanges() != 1 || up.GetLastSync() != nil {
		t.Errorf("township upstream status with the county down = %v, want an error and 1 pending", up)
	}
	if err := tr.town.SetUpstream(t.Context(), server.Upstream{Token: tr.token}); err != nil {
		t.Fatal(err)
	}
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	if end, err := tr.county.Store().LogEnd(t.Context()); err != nil || end != 1 {
		t.Errorf("county LogEnd after the uplink came back = %d, %v; want 1", end, err)
	}
}

// The county does not send a township back the changes the township relayed
// to it: a pull after the township's push brings the county's own change of
// the township's area, and not the one the township pushed.
func TestRelayGetsNoEchoes(t *testing.T) {
	tr := newTiers(t)
	conn, err := grpc.NewClient(tr.countyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc := fieldsyncv1.NewSyncServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tr.token)
	if _, err := rpc.Hello(ctx, &fieldsyncv1.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	pullAll := func(cursor *fieldsyncv1.Cursor) ([]*fieldsyncv1.Change, *fieldsyncv1.Cursor) {
		t.Helper()
		stream, err := rpc.Pull(ctx, &fieldsyncv1.PullRequest{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		var got []*fieldsyncv1.Change
		for {
			r, err := stream.Recv()
			if err != nil {
				break
			}
			got = append(got, r.GetChanges()...)
			if r.GetCursor() != nil {
				cursor = r.GetCursor()
			}
		}
		return got, cursor
	}
	_, cursor := pullAll(nil)
	// The township relays a change of one of its phones.
	pc, err := wire.ChangeToProto(localChange(t, followUp(t, villageA, 120, 80)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rpc.Push(ctx, &fieldsyncv1.PushRequest{Changes: []*fieldsyncv1.Change{pc}, FirstPosition: 1, LastPosition: 1})
	if err != nil || resp.GetResults()[0].GetOutcome() != fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
		t.Fatalf("relay push: %v, %v", resp, err)
	}
	// The county records a change of the township's area itself.
	if _, err := tr.county.Save(t.Context(), followUp(t, villageA, 130, 85)); err != nil {
		t.Fatal(err)
	}
	got, _ := pullAll(cursor)
	if len(got) != 1 {
		t.Fatalf("the township pulled %d changes, want the county's one", len(got))
	}
	if string(got[0].GetChangeId()) == string(pc.GetChangeId()) {
		t.Error("the township pulled back the change it relayed")
	}
}

// What the township pulled from its county, made by a phone enrolled at the
// county, is not counted as pending for the county: a relay push never
// sends it back.
func TestRelayPendingLeavesOutWhatTheCountySent(t *testing.T) {
	tr := newTiers(t)
	phone := phoneAt(t, tr.county, tr.countyAddr, villageA)
	// The township's first pull is a snapshot; the change comes after it.
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := phone.Save(t.Context(), followUp(t, villageA, 125, 82)); err != nil {
		t.Fatal(err)
	}
	if err := phone.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	tst, err := adminClient(t, tr.townAddr).SyncStatus(adminCtxFor(t, tr.townDir), &fieldsyncv1.SyncStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := logLength(t, tr.town.Store()); n != 1 {
		t.Fatalf("the township's log holds %d changes, want the phone's", n)
	}
	if n := tst.GetUpstream().GetPendingChanges(); n != 0 {
		t.Errorf("the township counts %d changes pending for its county after pulling a county phone's change, want 0", n)
	}
}

// logLength counts the entries of st's log.
func logLength(t *testing.T, st syncengine.Store) int {
	t.Helper()
	n := 0
	err := st.View(t.Context(), func(tx syncengine.ReadTx) error {
		es, err := tx.ReadLog(t.Context(), 0, 1000)
		n = len(es)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
