package server_test

import (
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/wire"
)

// phone is an SDK replica enrolled with e's server for area.
func (e *env) phone(t *testing.T, addr, area string) *fieldsync.Client {
	t.Helper()
	c, err := fieldsync.Open(t.Context(), filepath.Join(t.TempDir(), "phone.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	code, _, err := e.srv.IssueEnrolmentCode([]string{area}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), addr, code); err != nil {
		t.Fatal(err)
	}
	return c
}

// Two phones set a follow-up's blood pressure offline; the operator lists the
// conflict, keeps one value, and the resolution closes the conflict on both
// phones at their next sync.
func TestResolveConflict(t *testing.T) {
	e, addr := newEnvAddr(t)
	a, b := e.phone(t, addr, villageA), e.phone(t, addr, villageA)
	base := followUp(t, villageA, 130, 80)
	if err := a.Save(t.Context(), base); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a, b)
	fa, fb := proto.Clone(base).(*fieldsyncv1.Record), proto.Clone(base).(*fieldsyncv1.Record)
	fa.GetFollowUp().SystolicMmhg = proto.Int32(150)
	fb.GetFollowUp().SystolicMmhg = proto.Int32(160)
	if err := a.Save(t.Context(), fa); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(t.Context(), fb); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a, b, a)

	list, err := e.admin.ListConflicts(e.adminCtx(t), &fieldsyncv1.ListConflictsRequest{AreaPrefix: villageA})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetRecords()) != 1 || len(list.GetRecords()[0].GetConflicts()) != 1 {
		t.Fatalf("ListConflicts = %v, want one record with one conflicting field", list)
	}
	rc := list.GetRecords()[0]
	fc := rc.GetConflicts()[0]
	if len(fc.GetValues()) != 2 {
		t.Fatalf("conflict values = %d, want 2", len(fc.GetValues()))
	}
	keep := -1
	for i, v := range fc.GetValues() {
		if string(v.GetValue()) == string(fieldValue(t, fa, fc.GetNumber())) {
			keep = i
		}
	}
	if keep < 0 {
		t.Fatal("phone a's value is not among the conflict's values")
	}
	// A value that breaks the survey rules is refused; so is a field with no conflict.
	bad := proto.Clone(base).(*fieldsyncv1.Record)
	bad.GetFollowUp().SystolicMmhg = proto.Int32(400)
	_, err = e.admin.ResolveConflict(e.adminCtx(t), &fieldsyncv1.ResolveConflictRequest{RecordId: rc.GetRecordId(), FieldNumber: fc.GetNumber(),
		Choice: &fieldsyncv1.ResolveConflictRequest_Value{Value: fieldValue(t, bad, fc.GetNumber())}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("resolving with an invalid value = %v, want InvalidArgument", err)
	}
	_, err = e.admin.ResolveConflict(e.adminCtx(t), &fieldsyncv1.ResolveConflictRequest{RecordId: rc.GetRecordId(), FieldNumber: 1,
		Choice: &fieldsyncv1.ResolveConflictRequest_Keep{Keep: 0}})
	if status.Code(err) != codes.FailedPrecondition || servertest.ReasonOf(err) != server.ReasonNoConflict {
		t.Errorf("resolving a field without a conflict = %v, want FailedPrecondition %s", err, server.ReasonNoConflict)
	}

	if _, err := e.admin.ResolveConflict(e.adminCtx(t), &fieldsyncv1.ResolveConflictRequest{RecordId: rc.GetRecordId(), FieldNumber: fc.GetNumber(),
		Choice: &fieldsyncv1.ResolveConflictRequest_Keep{Keep: int32(keep)}}); err != nil {
		t.Fatal(err)
	}
	if list, err := e.admin.ListConflicts(e.adminCtx(t), &fieldsyncv1.ListConflictsRequest{}); err != nil || len(list.GetRecords()) != 0 {
		t.Errorf("after the resolution: %v, %v; want no conflicts", list, err)
	}
	mustSyncAll(t, a, b)
	id := base.GetFollowUp().GetId()
	for name, c := range map[string]*fieldsync.Client{"a": a, "b": b} {
		cs, err := c.Conflicts(t.Context(), id)
		if err != nil || len(cs) != 0 {
			t.Errorf("phone %s: conflicts %v, %v; want none", name, cs, err)
		}
		got, err := c.FollowUp(t.Context(), id)
		if err != nil || got.GetSystolicMmhg() != 150 {
			t.Errorf("phone %s: systolic %d, %v; want the kept 150", name, got.GetSystolicMmhg(), err)
		}
	}
}

func fieldValue(t *testing.T, rec *fieldsyncv1.Record, field int32) []byte {
	t.Helper()
	fields, err := wire.Fields(wire.Body(rec))
	if err != nil {
		t.Fatal(err)
	}
	return fields[field]
}

func mustSyncAll(t *testing.T, cs ...*fieldsync.Client) {
	t.Helper()
	for _, c := range cs {
		if err := c.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// SyncStatus shows, per device, when it last synced, what it still has to
// send, how far behind it is and its last error.
func TestSyncStatus(t *testing.T) {
	e, addr := newEnvAddr(t)
	a, b := e.phone(t, addr, villageA), e.phone(t, addr, villageA)
	for _, sbp := range []int32{130, 140} {
		if err := a.Save(t.Context(), followUp(t, villageA, sbp, 80)); err != nil {
			t.Fatal(err)
		}
	}
	mustSyncAll(t, a)
	byID := func() map[string]*fieldsyncv1.DeviceSyncStatus {
		t.Helper()
		resp, err := e.admin.SyncStatus(e.adminCtx(t), &fieldsyncv1.SyncStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := make(map[string]*fieldsyncv1.DeviceSyncStatus)
		for _, d := range resp.GetDevices() {
			out[string(d.GetReplicaId())] = d
		}
		return out
	}
	ida, idb := a.Replica(), b.Replica()
	st := byID()
	if sa := st[string(ida[:])]; sa.GetLastSync() == nil || sa.GetLag() != 0 || sa.GetPendingChanges() != 0 {
		t.Errorf("phone a after its sync: %v", sa)
	}
	if sb := st[string(idb[:])]; sb.GetLastSeen() != nil || sb.GetLag() != 2 {
		t.Errorf("phone b before any sync: %v, want never seen and 2 behind", sb)
	}
	mustSyncAll(t, b)
	if sb := byID()[string(idb[:])]; sb.GetLastSync() == nil || sb.GetLag() != 0 {
		t.Errorf("phone b after its sync: %v, want 0 behind", sb)
	}

	// What a device reports at Hello, less what it pushes since.
	d := e.enrol(t, villageA)
	d.save(t, followUp(t, villageA, 150, 90))
	if _, err := e.sync.Hello(d.ctx(t), &fieldsyncv1.HelloRequest{PendingChanges: 1, LastError: "push: connection reset"}); err != nil {
		t.Fatal(err)
	}
	id := d.store.Replica()
	if sd := byID()[string(id[:])]; sd.GetPendingChanges() != 1 || sd.GetLastError() != "push: connection reset" || sd.GetLastSeen() == nil {
		t.Errorf("raw device after Hello: %v", sd)
	}
	if _, err := e.sync.Push(d.ctx(t), d.pushRequest(t, 0)); err != nil {
		t.Fatal(err)
	}
	if sd := byID()[string(id[:])]; sd.GetPendingChanges() != 0 {
		t.Errorf("raw device after its push: %d pending, want 0", sd.GetPendingChanges())
	}
}
