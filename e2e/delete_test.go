package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
)

// A doctor deletes a household on one phone while a colleague edits it on
// another, both offline. After both sync the server keeps the household
// with a conflict on whether it exists, listed with the deletion and the
// record as its two values; the operator keeps one, and every replica ends
// with the household deleted, or kept with the colleague's edit, and no
// conflict.
func TestDeletionAgainstEdit(t *testing.T) {
	for _, keepDeletion := range []bool{true, false} {
		name := "keep the record"
		if keepDeletion {
			name = "keep the deletion"
		}
		t.Run(name, func(t *testing.T) { testDeletionAgainstEdit(t, keepDeletion) })
	}
}

func testDeletionAgainstEdit(t *testing.T, keepDeletion bool) {
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, IDHashKey: testIDHashKey})
	cty := newCounty(t, 13, 3, householdsAndVisits)
	a := enrolled(t, srv, addr, "phone-A", cty.villages[0])
	b := enrolled(t, srv, addr, "phone-B", cty.villages[0])
	h, _ := takeFirst(cty.records[0], func(r *fieldsyncv1.Record) bool { return r.GetHousehold() != nil })
	save(t, a, h)
	mustSync(t, a, b)
	hid := recordID(t, h)

	if err := a.Delete(t.Context(), hid.String()); err != nil {
		t.Fatalf("phone-A: Delete: %v", err)
	}
	if _, err := a.Get(t.Context(), hid.String()); !errors.Is(err, fieldsync.ErrNotFound) {
		t.Errorf("phone-A: Get after Delete = %v, want ErrNotFound", err)
	}
	if err := a.Delete(t.Context(), hid.String()); !errors.Is(err, fieldsync.ErrNotFound) {
		t.Errorf("phone-A: second Delete = %v, want ErrNotFound", err)
	}
	edited := proto.Clone(h).(*fieldsyncv1.Record)
	edited.GetHousehold().Notes = "户主已返乡"
	save(t, b, edited)
	mustSync(t, b, a, b)

	admin, ctx := adminClient(t, dir, addr)
	list, err := admin.ListConflicts(ctx, &fieldsyncv1.ListConflictsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var fc *fieldsyncv1.FieldConflict
	for _, rc := range list.GetRecords() {
		for _, c := range rc.GetConflicts() {
			if syncengine.RecordID(rc.GetRecordId()) == hid && c.GetNumber() == syncengine.ExistenceField {
				fc = c
			}
		}
	}
	if fc == nil || len(fc.GetValues()) != 2 || fc.GetValues()[0].GetDeleted() == fc.GetValues()[1].GetDeleted() {
		t.Fatalf("conflicts listed %v, want the household's existence: a deletion and the record", list.GetRecords())
	}
	keep := 0
	for i, v := range fc.GetValues() {
		if v.GetDeleted() == keepDeletion {
			keep = i
		}
	}
	if _, err := admin.ResolveConflict(ctx, &fieldsyncv1.ResolveConflictRequest{RecordId: hid[:], FieldNumber: 0,
		Choice: &fieldsyncv1.ResolveConflictRequest_Value{Value: []byte("x")}}); err == nil || !strings.Contains(err.Error(), "keep one of the values") {
		t.Errorf("resolving with a new value: %v, want a refusal saying to keep one of the values", err)
	}
	if _, err := admin.ResolveConflict(ctx, &fieldsyncv1.ResolveConflictRequest{RecordId: hid[:], FieldNumber: 0,
		Choice: &fieldsyncv1.ResolveConflictRequest_Keep{Keep: int32(keep)}}); err != nil {
		t.Fatalf("ResolveConflict: %v", err)
	}
	mustSync(t, a, b)

	r := serverRecord(t, srv, hid)
	if len(r.Conflicts()) != 0 || r.Exists() == keepDeletion {
		t.Errorf("server's household: exists %v, conflicts %v; want exists %v, none", r.Exists(), r.Conflicts(), !keepDeletion)
	}
	for _, d := range []*device{a, b} {
		if keepDeletion {
			notFound(t, d, []*fieldsyncv1.Record{h})
		} else {
			checkHas(t, d, edited)
		}
		if cs, err := d.Conflicts(t.Context(), hid.String()); err != nil || len(cs) != 0 {
			t.Errorf("%s: conflicts %v, %v; want none", d.name, cs, err)
		}
	}
	checkConverged(t, readState(t, "server", srv.Replica(), nil, srv.Store()), readDevice(t, a), readDevice(t, b))
}

// adminClient is an AdminService client of the server at addr whose data
// directory is dir, and a context carrying its admin token.
func adminClient(t *testing.T, dir, addr string) (fieldsyncv1.AdminServiceClient, context.Context) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return fieldsyncv1.NewAdminServiceClient(conn), ctx
}
