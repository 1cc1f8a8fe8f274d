package server_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

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
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
)

// asOperator adds the operator's name to an admin context, as the CLI sends it.
func asOperator(ctx context.Context, name string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, server.OperatorMetadata, url.PathEscape(name))
}

// listAudit reads the whole trail of a server, page by page.
func listAudit(t *testing.T, admin fieldsyncv1.AdminServiceClient, ctx context.Context, since time.Time, limit int32) []*fieldsyncv1.AuditEntry {
	t.Helper()
	req := &fieldsyncv1.ListAuditRequest{Limit: limit}
	if !since.IsZero() {
		req.Since = timestamppb.New(since)
	}
	var out []*fieldsyncv1.AuditEntry
	for {
		resp, err := admin.ListAudit(ctx, req)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		out = append(out, resp.GetEntries()...)
		if len(resp.GetNextPageToken()) == 0 {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// holdsNone fails the test if an entry's strings contain one of secrets.
func holdsNone(t *testing.T, es []*fieldsyncv1.AuditEntry, secrets ...string) {
	t.Helper()
	for _, e := range es {
		for _, f := range []string{e.GetWho(), e.GetFrom(), e.GetTarget(), e.GetDetail()} {
			for _, s := range secrets {
				if s != "" && strings.Contains(f, s) {
					t.Errorf("audit entry %d (%s) holds %q", e.GetSequence(), e.GetAction(), s)
				}
			}
		}
	}
}

// Every kind of admin action taken through AdminService is recorded, with the
// operator the call names, its address, the admin token's authentication,
// the target and a description, in the order taken; the entries hold no
// token, enrolment code, device name or free text of the operator.
func TestAuditRecordsEveryAdminAction(t *testing.T) {
	e, addr := newEnvAddr(t)
	w := newMoveWorld(t)
	for _, r := range w.registered {
		if _, err := e.srv.Save(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	ctx := asOperator(e.adminCtx(t), "李 operator")
	md, _ := metadata.FromOutgoingContext(e.adminCtx(t))
	secrets := []string{strings.TrimPrefix(md.Get("authorization")[0], "Bearer "), "李春兰"}

	added, err := e.admin.AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{Name: "李春兰的手机", AreaPrefixes: []string{w.villages[0]}})
	if err != nil {
		t.Fatal(err)
	}
	d := e.enrolWithCode(t, added.GetCode())
	id := d.store.Replica()
	replaced, err := e.admin.AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{ReplacesReplicaId: id[:]})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, added.GetCode(), replaced.GetCode(), d.token)
	if _, err := e.admin.RevokeDevice(ctx, &fieldsyncv1.RevokeDeviceRequest{ReplicaId: id[:]}); err != nil {
		t.Fatal(err)
	}
	household := idOf(t, w.household)
	if _, err := e.admin.MoveRecord(ctx, &fieldsyncv1.MoveRecordRequest{RecordId: household[:], AreaCode: w.villages[1]}); err != nil {
		t.Fatal(err)
	}

	// A conflict between two phones, closed by keeping phone a's value.
	a, b := e.phone(t, addr, w.villages[2]), e.phone(t, addr, w.villages[2])
	base := followUp(t, w.villages[2], 130, 80)
	if err := a.Save(t.Context(), base); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a, b)
	fa, fb := proto.Clone(base).(*fieldsyncv1.Record), proto.Clone(base).(*fieldsyncv1.Record)
	fa.GetFollowUp().SystolicMmhg, fb.GetFollowUp().SystolicMmhg = proto.Int32(150), proto.Int32(160)
	if err := a.Save(t.Context(), fa); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(t.Context(), fb); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a, b, a)
	list, err := e.admin.ListConflicts(ctx, &fieldsyncv1.ListConflictsRequest{})
	if err != nil || len(list.GetRecords()) != 1 {
		t.Fatalf("ListConflicts = %v, %v", list, err)
	}
	rc := list.GetRecords()[0]
	fc := rc.GetConflicts()[0]
	if _, err := e.admin.ResolveConflict(ctx, &fieldsyncv1.ResolveConflictRequest{RecordId: rc.GetRecordId(), FieldNumber: fc.GetNumber(),
		Choice: &fieldsyncv1.ResolveConflictRequest_Keep{Keep: 1}}); err != nil {
		t.Fatal(err)
	}
	writer := syncengine.ReplicaID(fc.GetValues()[1].GetDot().GetReplicaId())

	// A rectified problem, verified, then reopened.
	now := time.Now()
	p := &fieldsyncv1.Problem{
		Id: newID(t), AreaCode: w.villages[0], SourceKind: fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT,
		SourceRecordId: newID(t), Item: "member.one_person_plan", Severity: fieldsyncv1.Severity_SEVERITY_NORMAL,
		Description: "慢病患者无一人一策", Responsible: "王建国", Deadline: survey.AddDays(survey.Today(now), 5),
		Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, RaisedAt: timestamppb.New(now.Add(-48 * time.Hour)),
		Measure: "已整改", RectifiedAt: timestamppb.New(now.Add(-time.Hour)), RectifiedByWorkerId: newID(t),
	}
	open := proto.Clone(p).(*fieldsyncv1.Problem)
	open.Status, open.Measure, open.RectifiedAt, open.RectifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, "", nil, ""
	for _, q := range []*fieldsyncv1.Problem{open, p} {
		if _, err := e.srv.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: q}}); err != nil {
			t.Fatal(err)
		}
	}
	staff := newID(t)
	if _, err := e.admin.UpdateProblem(ctx, &fieldsyncv1.UpdateProblemRequest{ProblemId: p.GetId(), Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, WorkerId: staff}); err != nil {
		t.Fatal(err)
	}
	reason := "复查: 李春兰家未见一人一策"
	if _, err := e.admin.UpdateProblem(ctx, &fieldsyncv1.UpdateProblemRequest{ProblemId: p.GetId(), Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, WorkerId: staff, Reason: reason}); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, reason)

	// A refused action records nothing.
	if _, err := e.admin.RevokeDevice(ctx, &fieldsyncv1.RevokeDeviceRequest{ReplicaId: make([]byte, 16)}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("revoking an unknown device = %v, want InvalidArgument", err)
	}

	type want struct {
		action fieldsyncv1.AuditAction
		target string
		detail []string
	}
	wants := []want{
		{fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_ADD, w.villages[0], []string{"phone", "valid 24h"}},
		{fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_REPLACE, id.String(), []string{"areas " + w.villages[0]}},
		{fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_REVOKE, id.String(), []string{"areas " + w.villages[0]}},
		{fieldsyncv1.AuditAction_AUDIT_ACTION_RECORD_MOVE, household.String(), []string{"from village " + w.villages[0] + " to " + w.villages[1], fmt.Sprintf("%d people", len(w.people))}},
		{fieldsyncv1.AuditAction_AUDIT_ACTION_CONFLICT_RESOLVE, fmt.Sprintf("%v/%d", syncengine.RecordID(rc.GetRecordId()), fc.GetNumber()), []string{"follow_up field", "kept value 1 of 2", writer.String()}},
		{fieldsyncv1.AuditAction_AUDIT_ACTION_PROBLEM_VERIFY, p.GetId(), []string{"rectified → verified by worker " + staff}},
		{fieldsyncv1.AuditAction_AUDIT_ACTION_PROBLEM_REOPEN, p.GetId(), []string{"verified → open by worker " + staff}},
	}
	got := listAudit(t, e.admin, e.adminCtx(t), time.Time{}, 0)
	if len(got) != len(wants) {
		t.Fatalf("the trail has %d entries, want %d: %v", len(got), len(wants), got)
	}
	self := e.srv.Replica()
	for i, g := range got {
		w := wants[i]
		if g.GetAction() != w.action || g.GetTarget() != w.target || g.GetSequence() != uint64(i+1) || syncengine.ReplicaID(g.GetRecordedBy()) != self {
			t.Errorf("entry %d = %v %q #%d by %x, want %v %q #%d by %v", i, g.GetAction(), g.GetTarget(), g.GetSequence(), g.GetRecordedBy(), w.action, w.target, i+1, self)
		}
		if g.GetWho() != "李 operator" || !g.GetAdminToken() || !strings.HasPrefix(g.GetFrom(), "127.0.0.1:") {
			t.Errorf("entry %d (%v): who %q, admin token %v, from %q; want 李 operator, true, 127.0.0.1", i, w.action, g.GetWho(), g.GetAdminToken(), g.GetFrom())
		}
		if at := g.GetAt().AsTime(); at.Before(now.Add(-time.Minute)) || at.After(time.Now()) {
			t.Errorf("entry %d (%v) at %v, want now", i, w.action, at)
		}
		for _, s := range w.detail {
			if !strings.Contains(g.GetDetail(), s) {
				t.Errorf("entry %d (%v): detail %q does not say %q", i, w.action, g.GetDetail(), s)
			}
		}
	}
	holdsNone(t, got, secrets...)
	if err := e.srv.Store().Check(t.Context()); err != nil {
		t.Error(err)
	}
}

// The operator's name is recorded as the call gives it, cut to 64
// characters without control characters; "unknown" when the call names no
// one.
func TestAuditBoundsTheOperatorsName(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("名", 70)
	for _, tc := range []struct{ name, want string }{
		{"", "unknown"},
		{"ops\nfake line\x1b[31m", "ops fake line [31m"},
		{long, strings.Repeat("名", 63) + "…"},
	} {
		ctx := e.adminCtx(t)
		if tc.name != "" {
			ctx = asOperator(ctx, tc.name)
		}
		if _, err := e.admin.AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{villageA}}); err != nil {
			t.Fatal(err)
		}
		es := listAudit(t, e.admin, e.adminCtx(t), time.Time{}, 0)
		if got := es[len(es)-1].GetWho(); got != tc.want || utf8.RuneCountInString(got) > 64 {
			t.Errorf("operator %q recorded as %q, want %q", tc.name, got, tc.want)
		}
	}
}

// ListAudit lists from a time on, oldest first, in pages that together hold
// every entry once; a page token it did not make is refused.
func TestListAuditSinceAndPages(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	dir := t.TempDir()
	_, addr := servertest.Start(t, server.Config{DataDir: dir, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin, ctx := fieldsyncv1.NewAdminServiceClient(conn), adminCtxFor(t, dir)
	for i := range 5 {
		clock.Store(t0.Add(time.Duration(i) * time.Hour).UnixNano())
		if _, err := admin.AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{villageA}}); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(es []*fieldsyncv1.AuditEntry) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.GetSequence())
		}
		return out
	}
	for _, tc := range []struct {
		since time.Time
		limit int32
		want  []uint64
	}{
		{time.Time{}, 0, []uint64{1, 2, 3, 4, 5}},
		{time.Time{}, 2, []uint64{1, 2, 3, 4, 5}},
		{t0.Add(2 * time.Hour), 0, []uint64{3, 4, 5}},
		{t0.Add(90 * time.Minute), 1, []uint64{3, 4, 5}},
		{t0.Add(5 * time.Hour), 0, nil},
	} {
		if got := seqs(listAudit(t, admin, ctx, tc.since, tc.limit)); !equal(got, tc.want) {
			t.Errorf("since %v, pages of %d: %v, want %v", tc.since, tc.limit, got, tc.want)
		}
	}
	first, err := admin.ListAudit(ctx, &fieldsyncv1.ListAuditRequest{Limit: 2})
	if err != nil || len(first.GetEntries()) != 2 || len(first.GetNextPageToken()) == 0 {
		t.Fatalf("first page of 2: %v, %v", first, err)
	}
	if _, err := admin.ListAudit(ctx, &fieldsyncv1.ListAuditRequest{PageToken: []byte("made up")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListAudit with a made-up page token = %v, want InvalidArgument", err)
	}
}

// A township's audit entries reach its county with the relay round, beside
// the county's own, and are stored once however often they are sent: a
// second round sends nothing, and a round that resends them all (its
// acknowledgement lost) stores nothing new.
func TestAuditTravelsToCounty(t *testing.T) {
	tr := newTiers(t)
	town, county := adminClient(t, tr.townAddr), adminClient(t, tr.countyAddr)
	townCtx := asOperator(adminCtxFor(t, tr.townDir), "township ops")
	var issued []string
	for _, v := range []string{villageA, villageB} {
		r, err := town.AddDevice(townCtx, &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{v}})
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, r.GetCode())
	}
	r, err := county.AddDevice(asOperator(adminCtxFor(t, tr.countyDir), "county ops"), &fieldsyncv1.AddDeviceRequest{AreaPrefixes: []string{village2}})
	if err != nil {
		t.Fatal(err)
	}
	issued = append(issued, r.GetCode())
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	byRecorder := func() map[syncengine.ReplicaID][]*fieldsyncv1.AuditEntry {
		t.Helper()
		out := map[syncengine.ReplicaID][]*fieldsyncv1.AuditEntry{}
		for _, e := range listAudit(t, county, adminCtxFor(t, tr.countyDir), time.Time{}, 0) {
			out[syncengine.ReplicaID(e.GetRecordedBy())] = append(out[syncengine.ReplicaID(e.GetRecordedBy())], e)
		}
		return out
	}
	got := byRecorder()
	fromTown, own := got[tr.town.Replica()], got[tr.county.Replica()]
	if len(fromTown) != 2 || len(own) != 1 || len(got) != 2 {
		t.Fatalf("county's trail after a round: %d entries of the township, %d of its own, %d recorders; want 2, 1, 2", len(fromTown), len(own), len(got))
	}
	townTrail := listAudit(t, town, adminCtxFor(t, tr.townDir), time.Time{}, 0)
	for i, e := range fromTown {
		if !proto.Equal(e, townTrail[i]) {
			t.Errorf("county holds township entry %d as %v, the township %v", i, e, townTrail[i])
		}
		if e.GetWho() != "township ops" || !strings.HasPrefix(e.GetFrom(), "127.0.0.1:") || e.GetTarget() == "" {
			t.Errorf("relayed entry %d: %v", i, e)
		}
	}
	if own[0].GetWho() != "county ops" {
		t.Errorf("county's own entry: %v", own[0])
	}

	count := func() int {
		n := 0
		for _, es := range byRecorder() {
			n += len(es)
		}
		return n
	}
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("county's trail after a second round: %d entries, want the same 3", n)
	}
	// The township's acknowledgement is lost: the next round resends all.
	if err := tr.town.Store().SetMeta(t.Context(), "upstream_audit_acked", nil); err != nil {
		t.Fatal(err)
	}
	if err := tr.town.SyncUpstream(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("county's trail after a round that resent everything: %d entries, want the same 3", n)
	}
	// The relay pushing the same entries itself stores nothing either.
	rctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tr.token)
	resp, err := fieldsyncv1.NewSyncServiceClient(dial(t, tr.countyAddr)).PushAudit(rctx, &fieldsyncv1.PushAuditRequest{Entries: townTrail})
	if err != nil || resp.GetStored() != 0 {
		t.Errorf("PushAudit of entries the county holds = %v, %v; want 0 stored", resp, err)
	}
	all := listAudit(t, county, adminCtxFor(t, tr.countyDir), time.Time{}, 0)
	holdsNone(t, all, append(issued, tr.token)...)
	if err := tr.county.Store().Check(t.Context()); err != nil {
		t.Error(err)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// The county refuses, whole and with InvalidArgument naming the entry and the
// problem, a batch from its township holding an entry in another server's
// name, without a number, time or action, with a string beyond its bound or
// with a control character, and a batch of more than 500 entries; a device's
// token may not push audit entries at all.
func TestPushAuditRefuses(t *testing.T) {
	tr := newTiers(t)
	rpc := fieldsyncv1.NewSyncServiceClient(dial(t, tr.countyAddr))
	rctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tr.token)
	good := func() *fieldsyncv1.AuditEntry {
		self := tr.town.Replica()
		return &fieldsyncv1.AuditEntry{Sequence: 7, RecordedBy: self[:], At: timestamppb.Now(), Action: fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_ADD,
			Who: "ops", AdminToken: true, From: "127.0.0.1:9", Target: villageA, Detail: "enrolment code"}
	}
	county := tr.county.Replica()
	for _, tc := range []struct {
		name   string
		change func(*fieldsyncv1.AuditEntry)
		says   string
	}{
		{"the county's name", func(e *fieldsyncv1.AuditEntry) { e.RecordedBy = county[:] }, "is not the relay"},
		{"another township's name", func(e *fieldsyncv1.AuditEntry) { e.RecordedBy = make([]byte, 16); e.RecordedBy[0] = 9 }, "is not the relay"},
		{"short recorder", func(e *fieldsyncv1.AuditEntry) { e.RecordedBy = []byte{1} }, "recorded_by has 1 bytes"},
		{"sequence 0", func(e *fieldsyncv1.AuditEntry) { e.Sequence = 0 }, "sequence 0"},
		{"no time", func(e *fieldsyncv1.AuditEntry) { e.At = nil }, "at is not a valid time"},
		{"no action", func(e *fieldsyncv1.AuditEntry) { e.Action = 0 }, "not an action"},
		{"long who", func(e *fieldsyncv1.AuditEntry) { e.Who = strings.Repeat("w", 65) }, "who has 65 characters, at most 64"},
		{"long from", func(e *fieldsyncv1.AuditEntry) { e.From = strings.Repeat("f", 101) }, "from has 101 characters, at most 100"},
		{"long target", func(e *fieldsyncv1.AuditEntry) { e.Target = strings.Repeat("t", 101) }, "target has 101 characters, at most 100"},
		{"long detail", func(e *fieldsyncv1.AuditEntry) { e.Detail = strings.Repeat("细", 301) }, "detail has 301 characters, at most 300"},
		{"escape sequence", func(e *fieldsyncv1.AuditEntry) { e.Detail = "ok\x1b[2J" }, "detail holds a control character"},
	} {
		bad := good()
		tc.change(bad)
		_, err := rpc.PushAudit(rctx, &fieldsyncv1.PushAuditRequest{Entries: []*fieldsyncv1.AuditEntry{good(), bad}})
		if status.Code(err) != codes.InvalidArgument || servertest.ReasonOf(err) != server.ReasonBadRequest ||
			!strings.Contains(status.Convert(err).Message(), "entry 1") || !strings.Contains(status.Convert(err).Message(), tc.says) {
			t.Errorf("%s: PushAudit = %v, want InvalidArgument naming entry 1 and saying %q", tc.name, err, tc.says)
		}
	}
	// At the bounds, in characters, the entry is taken.
	edge := good()
	edge.Who, edge.Detail = strings.Repeat("名", 64), strings.Repeat("细", 300)
	if resp, err := rpc.PushAudit(rctx, &fieldsyncv1.PushAuditRequest{Entries: []*fieldsyncv1.AuditEntry{edge}}); err != nil || resp.GetStored() != 1 {
		t.Errorf("PushAudit at the bounds = %v, %v; want 1 stored", resp, err)
	}
	many := make([]*fieldsyncv1.AuditEntry, server.MaxPushAudit+1)
	for i := range many {
		many[i] = good()
		many[i].Sequence = uint64(100 + i)
	}
	if _, err := rpc.PushAudit(rctx, &fieldsyncv1.PushAuditRequest{Entries: many}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at most 500") {
		t.Errorf("PushAudit of %d entries = %v, want InvalidArgument", len(many), err)
	}

	// A phone enrolled at the county is no relay.
	code, _, err := tr.county.IssueEnrolmentCode([]string{village2}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	phone := syncengine.ReplicaID{1, 2, 3}
	enrolled, err := fieldsyncv1.NewEnrolmentServiceClient(dial(t, tr.countyAddr)).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: phone[:]})
	if err != nil {
		t.Fatal(err)
	}
	own := good()
	own.RecordedBy = phone[:]
	pctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+enrolled.GetDeviceToken())
	if _, err := rpc.PushAudit(pctx, &fieldsyncv1.PushAuditRequest{Entries: []*fieldsyncv1.AuditEntry{own}}); status.Code(err) != codes.PermissionDenied || servertest.ReasonOf(err) != server.ReasonNotRelay {
		t.Errorf("PushAudit with a device token = %v, want PermissionDenied %s", err, server.ReasonNotRelay)
	}

	es := listAudit(t, adminClient(t, tr.countyAddr), adminCtxFor(t, tr.countyDir), time.Time{}, 0)
	if len(es) != 1 || es[0].GetSequence() != 7 {
		t.Errorf("county's trail after the refused batches: %v, want only the entry at the bounds", es)
	}
}
