package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

const (
	villageA = "532523101201"
	villageB = "532523101202"
)

// env is a server on a real socket and a client connection to it.
type env struct {
	srv    *server.Server
	dir    string
	conn   *grpc.ClientConn
	sync   fieldsyncv1.SyncServiceClient
	enroll fieldsyncv1.EnrolmentServiceClient
	admin  fieldsyncv1.AdminServiceClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e, _ := newEnvAddr(t)
	return e
}

// newEnvAddr is newEnv, also returning the server's address.
func newEnvAddr(t *testing.T) (*env, string) {
	t.Helper()
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{srv: srv, dir: dir, conn: conn, sync: fieldsyncv1.NewSyncServiceClient(conn),
		enroll: fieldsyncv1.NewEnrolmentServiceClient(conn), admin: fieldsyncv1.NewAdminServiceClient(conn)}, addr
}

// device is an enrolled device replica in a real SQLite file.
type device struct {
	store *sqlitestore.Store
	clock *syncengine.Clock
	token string
	areas []string
}

func (e *env) enrol(t *testing.T, area string) *device {
	t.Helper()
	code, _, err := e.srv.IssueEnrolmentCode([]string{area}, "test phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := e.enrolWithCode(t, code)
	if got := d.areas; len(got) != 1 || got[0] != area {
		t.Errorf("enrolled areas = %v, want [%s]", got, area)
	}
	return d
}

// enrolWithCode creates a device replica and enrols it with code.
func (e *env) enrolWithCode(t *testing.T, code string) *device {
	t.Helper()
	st, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "replica.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id := st.Replica()
	resp, err := e.enroll.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: id[:], DeviceName: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	return &device{store: st, clock: syncengine.NewClock(id, 0), token: resp.GetDeviceToken(), areas: resp.GetAreaPrefixes()}
}

func (d *device) ctx(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+d.token)
}

func newID(t *testing.T) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// followUp is a valid hypertension follow-up in area, with the blood pressure given.
// followUp is a hypertension follow-up with the schedule its values call for
// (survey.DeriveFollowUp), as the SDK saves it.
func followUp(t *testing.T, area string, sbp, dbp int32) *fieldsyncv1.Record {
	now := time.Now()
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: survey.DeriveFollowUp(&fieldsyncv1.FollowUp{
		Id: newID(t), AreaCode: area, PersonId: newID(t), DoctorWorkerId: newID(t),
		Disease:      fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION,
		FollowedUpAt: timestamppb.New(now.Add(-time.Hour)), Method: fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME,
		SystolicMmhg: proto.Int32(sbp), DiastolicMmhg: proto.Int32(dbp),
		Adherence:      fieldsyncv1.Adherence_ADHERENCE_REGULAR,
		Classification: fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED,
		NextDueOn:      survey.Today(now.AddDate(0, 1, 0)),
	})}}
}

// save writes rec as a local change of the device, as the SDK will.
func (d *device) save(t *testing.T, rec *fieldsyncv1.Record) syncengine.RecordID {
	t.Helper()
	return d.saveAt(t, rec, time.Now())
}

// pushRequest is the device's log after position after, as one PushRequest.
func (d *device) pushRequest(t *testing.T, after syncengine.Position) *fieldsyncv1.PushRequest {
	t.Helper()
	b, err := syncengine.NextBatch(t.Context(), d.store, d.store.Replica(), after, syncengine.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req := &fieldsyncv1.PushRequest{}
	for _, e := range b.Changes {
		pc, err := wire.ChangeToProto(e.Change)
		if err != nil {
			t.Fatal(err)
		}
		req.Changes = append(req.Changes, pc)
	}
	if n := len(b.Changes); n > 0 {
		req.FirstPosition, req.LastPosition = uint64(b.Changes[0].Pos), uint64(b.Changes[n-1].Pos)
	}
	return req
}

func outcomes(resp *fieldsyncv1.PushResponse) []fieldsyncv1.ChangeOutcome {
	var out []fieldsyncv1.ChangeOutcome
	for _, r := range resp.GetResults() {
		out = append(out, r.GetOutcome())
	}
	return out
}

const (
	applied    = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED
	duplicate  = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_ALREADY_APPLIED
	invalid    = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_INVALID
	outOfScope = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE
	malformed  = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_MALFORMED
)

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHello(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	id := d.store.Replica()
	client := time.Now().Add(-time.Hour)
	resp, err := e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{ReplicaId: id[:], CapabilityVersion: 1, ClientTime: timestamppb.New(client)})
	if err != nil {
		t.Fatal(err)
	}
	srv := e.srv.Replica()
	if got := syncengine.ReplicaID(resp.GetServerReplicaId()); got != srv {
		t.Errorf("server replica = %v, want %v", got, srv)
	}
	if off := resp.GetClockOffsetMs(); off < 3590_000 || off > 3610_000 {
		t.Errorf("clock offset = %d ms, want about one hour", off)
	}
	if resp.GetCapabilityVersion() != 2 || resp.GetAcknowledgedPosition() != 0 || !equal(resp.GetAreaPrefixes(), []string{villageA}) {
		t.Errorf("hello = %v", resp)
	}
	other := syncengine.ReplicaID{9}
	_, err = e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{ReplicaId: other[:]})
	if status.Code(err) != codes.PermissionDenied || servertest.ReasonOf(err) != server.ReasonReplicaMismatch {
		t.Errorf("hello as another replica = %v, want PermissionDenied %s", err, server.ReasonReplicaMismatch)
	}
}

func TestPushStoresOnceAndRefusesAlone(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	d.save(t, followUp(t, villageA, 132, 84))
	d.save(t, followUp(t, villageA, 120, 130)) // DBP >= SBP
	d.save(t, followUp(t, villageB, 140, 90))  // another village
	d.save(t, followUp(t, villageA, 150, 95))
	req := d.pushRequest(t, 0)

	resp, err := e.sync.Push(d.ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomes(resp), []fieldsyncv1.ChangeOutcome{applied, invalid, outOfScope, applied}; !equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
	if resp.GetAcknowledgedPosition() != 4 {
		t.Errorf("acknowledged = %d, want 4", resp.GetAcknowledgedPosition())
	}
	fe := resp.GetResults()[1].GetFieldErrors()
	if len(fe) == 0 || fe[0].GetPath() != "diastolic_mmhg" || fe[0].GetReason() != fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_INCONSISTENT {
		t.Errorf("field errors of the invalid change = %v, want diastolic_mmhg INCONSISTENT", fe)
	}
	for _, i := range []int{0, 2, 3} {
		if n := len(resp.GetResults()[i].GetFieldErrors()); n != 0 {
			t.Errorf("result %d has %d field errors, want none", i, n)
		}
	}

	again, err := e.sync.Push(d.ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	// The refused changes are behind the cursor: they are reported again
	// as they were, and nothing is stored twice.
	if got := outcomes(again); got[0] != duplicate || got[3] != duplicate {
		t.Errorf("outcomes of the repeated push = %v, want duplicates for the applied", got)
	}
	if end, err := e.srv.Store().LogEnd(t.Context()); err != nil || end != 2 {
		t.Errorf("server log end = %d, %v; want 2 (each applied change once)", end, err)
	}
	if err := e.srv.Store().Check(t.Context()); err != nil {
		t.Error(err)
	}

	hello, err := e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{})
	if err != nil || hello.GetAcknowledgedPosition() != 4 {
		t.Errorf("hello acknowledged = %d, %v; want 4", hello.GetAcknowledgedPosition(), err)
	}
}

func TestPushRefusesMismatchedPositions(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	d.save(t, followUp(t, villageA, 132, 84))
	req := d.pushRequest(t, 0)
	req.LastPosition = 3
	_, err := e.sync.Push(d.ctx(t), req)
	if status.Code(err) != codes.InvalidArgument || servertest.ReasonOf(err) != server.ReasonPositionMismatch {
		t.Errorf("push = %v, want InvalidArgument %s", err, server.ReasonPositionMismatch)
	}
	req.FirstPosition, req.LastPosition = 5, 5 // after a gap
	_, err = e.sync.Push(d.ctx(t), req)
	if status.Code(err) != codes.FailedPrecondition || servertest.ReasonOf(err) != server.ReasonCursorGap {
		t.Errorf("push after a gap = %v, want FailedPrecondition %s", err, server.ReasonCursorGap)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	tests := []struct {
		name   string
		ctx    context.Context
		reason fieldsyncv1.Reason
	}{
		{"no token", t.Context(), server.ReasonMissingToken},
		{"not bearer", metadata.AppendToOutgoingContext(t.Context(), "authorization", "Basic "+d.token), server.ReasonMissingToken},
		{"wrong token", metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer x"+d.token), server.ReasonUnknownToken},
	}
	for _, tt := range tests {
		_, err := e.sync.Hello(tt.ctx, &fieldsyncv1.HelloRequest{})
		if status.Code(err) != codes.Unauthenticated || servertest.ReasonOf(err) != tt.reason {
			t.Errorf("%s: hello = %v, want Unauthenticated %s", tt.name, err, tt.reason)
		}
	}
	if _, err := e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{}); err != nil {
		t.Fatalf("hello with the device's token: %v", err)
	}
	if err := e.srv.Store().Registry().RevokeDevice(t.Context(), d.store.Replica()); err != nil {
		t.Fatal(err)
	}
	_, err := e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{})
	if status.Code(err) != codes.Unauthenticated || servertest.ReasonOf(err) != server.ReasonDeviceRevoked {
		t.Errorf("revoked: hello = %v, want Unauthenticated %s", err, server.ReasonDeviceRevoked)
	}
	stream, err := e.sync.Pull(d.ctx(t), &fieldsyncv1.PullRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("revoked: pull = %v, want Unauthenticated", err)
	}
}

func TestEnrolmentCodeIsBoundToOneReplica(t *testing.T) {
	e := newEnv(t)
	code, _, err := e.srv.IssueEnrolmentCode([]string{villageA}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, b := syncengine.ReplicaID{1}, syncengine.ReplicaID{2}
	first, err := e.enroll.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: a[:]})
	if err != nil {
		t.Fatal(err)
	}
	// A retry by the same replica (its answer was lost) gets a new token.
	retry, err := e.enroll.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: a[:]})
	if err != nil || retry.GetDeviceToken() == first.GetDeviceToken() {
		t.Fatalf("retry = %v, %v; want a fresh token", retry, err)
	}
	old := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+first.GetDeviceToken())
	if _, err := e.sync.Hello(old, &fieldsyncv1.HelloRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("hello with the replaced token = %v, want Unauthenticated", err)
	}
	_, err = e.enroll.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: b[:]})
	if status.Code(err) != codes.PermissionDenied || servertest.ReasonOf(err) != server.ReasonInvalidCode {
		t.Errorf("code reused by another replica = %v, want PermissionDenied %s", err, server.ReasonInvalidCode)
	}
	_, err = e.enroll.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: "AAAAAAAAAAAAAAAA", ReplicaId: b[:]})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("unknown code = %v, want PermissionDenied", err)
	}
}

// pulled is what one Pull stream delivered.
type pulled struct {
	records   map[syncengine.RecordID]string // record id -> area
	changes   map[syncengine.RecordID]string
	markers   []fieldsyncv1.SnapshotPhase
	responses int
	cursor    *fieldsyncv1.Cursor
}

func pull(t *testing.T, e *env, d *device, cursor *fieldsyncv1.Cursor) pulled {
	t.Helper()
	stream, err := e.sync.Pull(d.ctx(t), &fieldsyncv1.PullRequest{Cursor: cursor, MaxBatchBytes: proto.Int32(1024)})
	if err != nil {
		t.Fatal(err)
	}
	p := pulled{records: map[syncengine.RecordID]string{}, changes: map[syncengine.RecordID]string{}}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatal("stream ended before caught_up")
		}
		if err != nil {
			t.Fatal(err)
		}
		p.responses++
		if m := resp.GetSnapshot(); m != nil {
			p.markers = append(p.markers, m.GetPhase())
		}
		for _, r := range resp.GetRecords() {
			p.records[syncengine.RecordID(r.GetRecordId())] = r.GetAreaCode()
		}
		for _, c := range resp.GetChanges() {
			p.changes[syncengine.RecordID(c.GetRecordId())] = c.GetAreaCode()
		}
		if resp.GetCursor() == nil {
			t.Fatal("response without a cursor")
		}
		p.cursor = resp.GetCursor()
		if resp.GetCaughtUp() {
			return p
		}
	}
}

func TestPullStaysInScope(t *testing.T) {
	e := newEnv(t)
	writer := e.enrol(t, villageA)
	var mine []syncengine.RecordID
	for range 12 {
		mine = append(mine, writer.save(t, followUp(t, villageA, 132, 84)))
	}
	if _, err := e.sync.Push(writer.ctx(t), writer.pushRequest(t, 0)); err != nil {
		t.Fatal(err)
	}
	neighbour := e.enrol(t, villageA)
	stranger := e.enrol(t, villageB)

	got := pull(t, e, stranger, nil)
	if len(got.records) != 0 || len(got.changes) != 0 {
		t.Errorf("device of %s pulled %d records and %d changes of %s, want none", villageB, len(got.records), len(got.changes), villageA)
	}
	if !equal(got.markers, []fieldsyncv1.SnapshotPhase{fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN, fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END}) {
		t.Errorf("snapshot markers = %v, want BEGIN, END", got.markers)
	}

	got = pull(t, e, neighbour, nil)
	for _, id := range mine {
		if got.records[id] != villageA {
			t.Errorf("neighbour's snapshot lacks record %v", id)
		}
	}
	if len(got.records) != len(mine) || got.responses < 3 {
		t.Errorf("neighbour pulled %d records in %d responses, want %d in several 1 KiB batches", len(got.records), got.responses, len(mine))
	}

	// Incremental: a new change reaches the neighbour, not its author, and
	// never the stranger.
	writerCursor := pull(t, e, writer, nil).cursor
	strangerCursor := pull(t, e, stranger, nil).cursor
	id := writer.save(t, followUp(t, villageA, 128, 80))
	if _, err := e.sync.Push(writer.ctx(t), writer.pushRequest(t, syncengine.Position(len(mine)))); err != nil {
		t.Fatal(err)
	}
	if inc := pull(t, e, neighbour, got.cursor); len(inc.changes) != 1 || inc.changes[id] != villageA || len(inc.records) != 0 {
		t.Errorf("neighbour's incremental pull = %d changes, %d records; want the one new change", len(inc.changes), len(inc.records))
	}
	if own := pull(t, e, writer, writerCursor); len(own.changes) != 0 {
		t.Errorf("writer pulled %d of its own changes, want none", len(own.changes))
	}
	if inc := pull(t, e, stranger, strangerCursor); len(inc.changes) != 0 || len(inc.records) != 0 {
		t.Errorf("stranger's incremental pull = %d changes, %d records; want none", len(inc.changes), len(inc.records))
	}
}

// A device leaves out of its push the changes it pulled from the server: the
// request lists the positions of the changes it sends, and the server answers
// each in its slot and acknowledges the whole run.
func TestPushWithLeftOutPositions(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	for range 3 {
		d.save(t, followUp(t, villageA, 132, 84))
	}
	full := d.pushRequest(t, 0)
	sparse := &fieldsyncv1.PushRequest{
		Changes:       []*fieldsyncv1.Change{full.Changes[0], full.Changes[2]},
		FirstPosition: 1, LastPosition: 3, Positions: []uint64{1, 3},
	}
	resp, err := e.sync.Push(d.ctx(t), sparse)
	if err != nil {
		t.Fatal(err)
	}
	applied := fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED
	if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{applied, applied}) || resp.GetAcknowledgedPosition() != 3 {
		t.Errorf("sparse push = %v through %d, want two applied through 3", got, resp.GetAcknowledgedPosition())
	}
	if end, err := e.srv.Store().LogEnd(t.Context()); err != nil || end != 2 {
		t.Errorf("server log end = %d, %v; want the 2 changes sent", end, err)
	}
	for name, positions := range map[string][]uint64{
		"out of order":    {6, 4},
		"outside the run": {4, 7},
		"one missing":     {4},
	} {
		bad := &fieldsyncv1.PushRequest{Changes: sparse.Changes, FirstPosition: 4, LastPosition: 6, Positions: positions}
		if _, err := e.sync.Push(d.ctx(t), bad); status.Code(err) != codes.InvalidArgument || servertest.ReasonOf(err) != server.ReasonPositionMismatch {
			t.Errorf("%s: push = %v, want InvalidArgument %s", name, err, server.ReasonPositionMismatch)
		}
	}
}

// The server's logs name devices and counts, never record contents: no
// person's name, masked ID number or ID hash, and no token.
func TestLogsCarryNoPersonalData(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, Logger: slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime}))})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e := &env{srv: srv, dir: dir, conn: conn, sync: fieldsyncv1.NewSyncServiceClient(conn), enroll: fieldsyncv1.NewEnrolmentServiceClient(conn)}

	g, err := countygen.New(countygen.Config{People: 60, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	v := g.County.Townships[0].Villages[0]
	village := v.Code
	d := e.enrol(t, village)
	var secrets []string
	err = g.EachInVillage(v, func(rec *fieldsyncv1.Record) error {
		if p := rec.GetPerson(); p != nil {
			secrets = append(secrets, p.GetName(), p.GetIdNumber().GetMasked(), fmt.Sprintf("%x", p.GetIdNumber().GetKeyedHash()))
		}
		d.save(t, rec)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// One invalid change too: its field errors go back to the device, not
	// into the log.
	d.save(t, followUp(t, village, 4321, 90)) // a value no position or time in the log holds
	if _, err := e.sync.Push(d.ctx(t), d.pushRequest(t, 0)); err != nil {
		t.Fatal(err)
	}
	pull(t, e, d, nil)
	if len(secrets) == 0 {
		t.Fatal("the village has no people")
	}
	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	if !strings.Contains(out, `"msg":"push"`) {
		t.Fatalf("no push logged:\n%s", out)
	}
	for _, s := range append(secrets, d.token, "4321") {
		if s != "" && strings.Contains(out, s) {
			i := strings.Index(out, s)
			t.Errorf("the log contains %q: ...%s...", s, out[max(0, i-80):min(len(out), i+40)])
		}
	}
}

// dropTime leaves the time out of the logs a test searches: its digits
// would match anything.
func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A device may push only its own changes: one made by another replica is
// refused alone (so it cannot take that replica's dot and have the real
// change answered ALREADY_APPLIED and lost), and the rest of the batch is
// applied.
func TestPushRefusesChangesOfAnotherReplica(t *testing.T) {
	e := newEnv(t)
	victim, forger := e.enrol(t, villageA), e.enrol(t, villageA)
	victim.save(t, followUp(t, villageA, 130, 80))
	stolen := victim.pushRequest(t, 0)
	forger.save(t, followUp(t, villageA, 132, 82))
	own := forger.pushRequest(t, 0)
	req := &fieldsyncv1.PushRequest{Changes: []*fieldsyncv1.Change{own.Changes[0], stolen.Changes[0]}, FirstPosition: 1, LastPosition: 2}
	resp, err := e.sync.Push(forger.ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{applied, outOfScope}) {
		t.Fatalf("outcomes = %v, want the own change applied and the other replica's refused", got)
	}
	if !strings.Contains(resp.GetResults()[1].GetMessage(), "only its own") {
		t.Errorf("message = %q", resp.GetResults()[1].GetMessage())
	}
	resp, err = e.sync.Push(victim.ctx(t), stolen)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{applied}) {
		t.Errorf("the victim's own push: %v, want applied", got)
	}
}

// A different change under a dot the server holds (a phone restored from an
// older copy of its replica numbers its new changes again) is refused with
// the reason, not acknowledged as a duplicate and lost; a true retry is still
// ALREADY_APPLIED.
func TestPushRefusesReusedDot(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	d.save(t, followUp(t, villageA, 130, 80))
	req := d.pushRequest(t, 0)
	if _, err := e.sync.Push(d.ctx(t), req); err != nil {
		t.Fatal(err)
	}
	retry, err := e.sync.Push(d.ctx(t), req)
	if err != nil || !equal(outcomes(retry), []fieldsyncv1.ChangeOutcome{duplicate}) {
		t.Fatalf("retry: %v, %v; want ALREADY_APPLIED", outcomes(retry), err)
	}
	reused := proto.Clone(req).(*fieldsyncv1.PushRequest)
	reused.Changes[0].ChangeId[0] ^= 0xff
	id := uuid.Must(uuid.NewV7())
	reused.Changes[0].RecordId = id[:]
	reused.Changes[0].GetUpsert().GetRecord().GetFollowUp().Id = id.String()
	resp, err := e.sync.Push(d.ctx(t), reused)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_MALFORMED}) || !strings.Contains(resp.GetResults()[0].GetMessage(), "restored") {
		t.Errorf("a different change under a held dot: %v %q, want refused saying the replica was restored", got, resp.GetResults()[0].GetMessage())
	}
	var rid syncengine.RecordID
	copy(rid[:], id[:])
	page, err := e.srv.Store().Snapshot(t.Context(), villageA, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 1 {
		t.Errorf("the server holds %d records, want the first change's only", len(page.Records))
	}
	for _, r := range page.Records {
		if r.ID() == rid {
			t.Error("the server stored the refused change's record")
		}
	}
}

// A pull token whose snapshot page was tampered with is refused as an
// invalid cursor (InvalidArgument, REASON_INVALID_CURSOR), and the same
// device pulls again from nothing.
func TestPullRefusesTamperedCursor(t *testing.T) {
	e := newEnv(t)
	writer := e.enrol(t, villageA)
	for range 12 {
		writer.save(t, followUp(t, villageA, 132, 84))
	}
	if _, err := e.sync.Push(writer.ctx(t), writer.pushRequest(t, 0)); err != nil {
		t.Fatal(err)
	}
	reader := e.enrol(t, villageA)
	stream, err := e.sync.Pull(reader.ctx(t), &fieldsyncv1.PullRequest{MaxBatchBytes: proto.Int32(1024)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || len(first.GetRecords()) == 0 || first.GetSnapshot().GetPhase() != fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN {
		t.Fatalf("first response %v, %v: want the snapshot's first records", first, err)
	}
	// The token ends with the store's page token: a format byte, the area
	// code of the last record sent, its id (16 bytes). Change the area's
	// first digit.
	tok := bytes.Clone(first.GetCursor().GetToken())
	tok[len(tok)-16-len(villageA)] ^= 1
	bad, err := e.sync.Pull(reader.ctx(t), &fieldsyncv1.PullRequest{Cursor: &fieldsyncv1.Cursor{Token: tok}})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || wire.ReasonOf(err) != fieldsyncv1.Reason_REASON_INVALID_CURSOR {
		t.Errorf("pull with a tampered page token: %v, want InvalidArgument with REASON_INVALID_CURSOR", err)
	}
	if got := pull(t, e, reader, nil); len(got.records) != 12 {
		t.Errorf("pull without a cursor brought %d records, want 12", len(got.records))
	}
}
