package syncclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncclient"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
	"github.com/fieldsync/fieldsync/wire"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// memReplica is the in-memory engine store as a replica.
type memReplica struct {
	*memstore.Store
	id syncengine.ReplicaID
}

func (m memReplica) Replica() syncengine.ReplicaID { return m.id }

const village = "532523100201"

// replica enrols a new in-memory replica with srv for the village and
// returns its config and target; its pull token lives in the store's meta.
func replica(t *testing.T, srv *server.Server, addr string) (*syncclient.Config, syncclient.Target) {
	t.Helper()
	code, _, err := srv.IssueEnrolmentCode([]string{village}, "memory", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id := syncengine.ReplicaID(save.NewChangeID())
	resp, err := syncclient.Enroll(t.Context(), addr, code, id, "memory", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &syncclient.Config{
		Store:     memReplica{memstore.New(), id},
		Clock:     syncengine.NewClock(id, 0),
		CursorKey: "pull_cursor",
	}
	return cfg, syncclient.Target{Addr: addr, Token: resp.GetDeviceToken(), Server: syncengine.ReplicaID(resp.GetServerReplicaId())}
}

// household is a household of the village with head name head.
func household(id, head string) *fieldsyncv1.Record {
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{
		Id: id, AreaCode: village, HeadName: head,
		Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_MONITORED,
	}}}
}

// syncclient alone, over the in-memory store and a real server on
// 127.0.0.1: one replica's change reaches the server and, through it,
// another replica; the second replica's edit comes back to the first; a
// round with nothing new moves nothing.
func TestSyncOverMemoryStore(t *testing.T) {
	srv, addr := servertest.Start(t, server.Config{IDHashKey: []byte("test id hash key")})
	ctx := t.Context()
	a, ta := replica(t, srv, addr)
	b, tb := replica(t, srv, addr)
	id := "019a9f3c-1b2e-7c41-8a5e-2f1d0c9b8a71"
	write := func(cfg *syncclient.Config, rec *fieldsyncv1.Record) {
		t.Helper()
		err := cfg.Store.Update(ctx, func(tx syncengine.Tx) error {
			_, err := writeTx(ctx, tx, cfg, rec)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	head := func(cfg *syncclient.Config) string {
		t.Helper()
		rid, _ := wire.RecordID(id)
		var got string
		err := cfg.Store.View(ctx, func(tx syncengine.ReadTx) error {
			r, err := tx.Record(ctx, rid)
			if err != nil || !r.Exists() {
				return err
			}
			rec, err := wire.FromState(r)
			got = rec.GetHousehold().GetHeadName()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	var pushed, pulled int
	progress := func(p syncclient.Progress) { pushed, pulled = p.Pushed, p.Pulled }
	sync := func(cfg *syncclient.Config, tg syncclient.Target) {
		t.Helper()
		pushed, pulled = 0, 0
		if err := syncclient.Sync(ctx, cfg, tg, progress); err != nil {
			t.Fatal(err)
		}
	}

	write(a, household(id, "张德明"))
	sync(a, ta)
	if pushed != 1 {
		t.Errorf("the first replica pushed %d changes, want 1", pushed)
	}
	sync(b, tb)
	if got := head(b); got != "张德明" {
		t.Fatalf("the second replica shows head %q after its sync, want 张德明 (pulled %d)", got, pulled)
	}
	write(b, household(id, "张德明(户主)"))
	sync(b, tb)
	sync(a, ta)
	if got := head(a); got != "张德明(户主)" {
		t.Errorf("the first replica shows head %q, want the second's edit", got)
	}
	sync(a, ta)
	if pushed != 0 || pulled != 0 {
		t.Errorf("a round with nothing new pushed %d and pulled %d", pushed, pulled)
	}
}

// writeTx saves rec in the replica's transaction tx as the app does, and
// returns its record id.
func writeTx(ctx context.Context, tx syncengine.Tx, cfg *syncclient.Config, rec *fieldsyncv1.Record) (syncengine.RecordID, error) {
	rid, _, err := wire.Identity(rec)
	if err != nil {
		return rid, err
	}
	cur, err := tx.Record(ctx, rid)
	if err != nil {
		return rid, err
	}
	e, _, err := wire.EditOf(cur, rec)
	if err != nil {
		return rid, err
	}
	e.ID = save.NewChangeID()
	_, err = syncengine.WriteLocalTx(ctx, tx, cfg.Clock, time.Now().UnixMilli(), e, nil)
	return rid, err
}
