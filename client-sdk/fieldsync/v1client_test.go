package fieldsync

import (
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// v1Sync is one sync round of c's replica as a phone of protocol version 1
// runs it, kept to prove that such phones sync with this server unchanged:
// on its own connection (no early request), Hello with capability version
// 1, then Push of its own unacknowledged changes from the position Hello
// gives, then Pull from its stored cursor until caught up, each page stored
// with its cursor in one transaction. It returns how many changes it pushed
// and how many records and changes it pulled.
func v1Sync(t *testing.T, c *Client) (pushed, pulled int) {
	t.Helper()
	ctx := t.Context()
	addr, err := c.store.Meta(ctx, metaServerAddr)
	if err != nil {
		t.Fatal(err)
	}
	token, err := c.secret(ctx, metaToken)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := c.serverReplica(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(string(addr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc := fieldsyncv1.NewSyncServiceClient(conn)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+string(token))
	self := c.store.Replica()

	hello, err := rpc.Hello(ctx, &fieldsyncv1.HelloRequest{ReplicaId: self[:], CapabilityVersion: 1, ClientTime: timestamppb.Now()})
	if err != nil {
		t.Fatalf("v1 Hello: %v", err)
	}
	if syncengine.ReplicaID(hello.GetServerReplicaId()) != srv {
		t.Fatalf("v1 Hello answered by %x, want %v", hello.GetServerReplicaId(), srv)
	}
	after := syncengine.Position(hello.GetAcknowledgedPosition())
	for {
		b, err := syncengine.NextBatch(ctx, c.store, self, after, syncengine.SendOptions{
			Exclude: srv, Limit: int(hello.GetLimits().GetMaxPushChanges()),
			Filter: func(ch *syncengine.Change) bool { return ch.Origin == self },
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Changes) == 0 {
			break
		}
		req := &fieldsyncv1.PushRequest{FirstPosition: uint64(b.After) + 1, LastPosition: uint64(b.Through)}
		for _, e := range b.Changes {
			pc, err := wire.ChangeToProto(e.Change)
			if err != nil {
				t.Fatal(err)
			}
			req.Changes = append(req.Changes, pc)
			req.Positions = append(req.Positions, uint64(e.Pos))
		}
		resp, err := rpc.Push(ctx, req)
		if err != nil {
			t.Fatalf("v1 Push: %v", err)
		}
		rc := syncengine.Receipt{Sender: srv, Through: syncengine.Position(resp.GetAcknowledgedPosition())}
		for i, r := range resp.GetResults() {
			out, _ := wire.OutcomeFromProto(r.GetOutcome())
			e := b.Changes[i]
			rc.Results = append(rc.Results, syncengine.ChangeResult{Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: out, Detail: r.GetMessage()})
		}
		if err := syncengine.Acknowledge(ctx, c.store, srv, rc); err != nil {
			t.Fatal(err)
		}
		pushed += len(rc.Results)
		if rc.Through <= after {
			t.Fatalf("v1 Push made no progress after %d: %v", after, resp)
		}
		after = rc.Through
	}

	tok, err := c.store.Meta(ctx, metaPullCursor)
	if err != nil {
		t.Fatal(err)
	}
	req := &fieldsyncv1.PullRequest{}
	if len(tok) > 0 {
		req.Cursor = &fieldsyncv1.Cursor{Token: tok}
	}
	stream, err := rpc.Pull(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return pushed, pulled
		}
		if err != nil {
			t.Fatalf("v1 Pull: %v", err)
		}
		p := syncengine.Pulled{Sender: srv}
		for _, rs := range resp.GetRecords() {
			var r syncengine.Record
			if err := r.UnmarshalBinary(rs.GetEngineState()); err != nil {
				t.Fatal(err)
			}
			p.Records = append(p.Records, r)
		}
		for _, pc := range resp.GetChanges() {
			if len(pc.GetUpsert().GetPackedRecord()) > 0 {
				t.Fatal("the server sent a version-1 phone a packed record")
			}
			ch, err := wire.ChangeFromProto(pc)
			if err != nil {
				t.Fatal(err)
			}
			p.Changes = append(p.Changes, ch)
		}
		err = c.store.Update(ctx, func(tx syncengine.Tx) error {
			if _, err := syncengine.ReceivePulledTx(ctx, tx, p, syncengine.PulledOptions{Clock: c.clock, WallMS: time.Now().UnixMilli()}); err != nil {
				return err
			}
			return tx.SetMeta(ctx, metaPullCursor, resp.GetCursor().GetToken())
		})
		if err != nil {
			t.Fatal(err)
		}
		pulled += len(p.Records) + len(p.Changes)
	}
}

// A phone of protocol version 1 syncs with this server unchanged, beside
// phones of version 2 that fold their handshake into their push: each
// gets what the other saved, once.
func TestV1PhoneSyncsWithThisServer(t *testing.T) {
	tr := newTrace()
	s := tr.serve(t)
	cty := newCounty(t)
	old, cur := s.enrol(t, cty.village1), s.enrol(t, cty.village1)
	n := 0
	for _, r := range cty.records1[:4] {
		n += mustSave(t, old, r)
	}
	if pushed, _ := v1Sync(t, old); pushed != n {
		t.Errorf("v1 phone pushed %d changes, want %d", pushed, n)
	}
	mustSync(t, cur) // first round: Hello
	for _, r := range cty.records1[4:8] {
		mustSave(t, cur, r)
	}
	tr.arm()
	mustSync(t, cur)
	if got := tr.get(); len(got) != 2 || got[0] != "Exchange+Hello" {
		t.Errorf("v2 phone's second sync called %v, want the handshake folded into the push", got)
	}
	checkHas(t, "v2 phone", cur, cty.records1[:8])
	mustSave(t, old, cty.records1[8])
	tr.arm()
	if _, pulled := v1Sync(t, old); pulled == 0 {
		t.Error("v1 phone pulled nothing of the v2 phone's records")
	}
	if got := tr.get(); len(got) != 3 || got[0] != "Hello" || got[1] != "Push" {
		t.Errorf("v1 phone called %v, want Hello, Push, Pull", got)
	}
	checkHas(t, "v1 phone", old, cty.records1[:9])
	mustSync(t, cur)
	checkHas(t, "v2 phone", cur, cty.records1[:9])
	if pushed, pulled := v1Sync(t, old); pushed != 0 || pulled != 0 {
		t.Errorf("v1 phone's sync again pushed %d and pulled %d, want nothing", pushed, pulled)
	}
}
