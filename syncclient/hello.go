package syncclient

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// foldingVersion is the server's capability version from which a round
// folds its handshake into its first push (ExchangeRequest.hello): a cold sync
// then costs the connection's round trip and one exchange, not two more for
// a Hello first.
const foldingVersion = 2

// serverKey is the meta key under which a replica keeps what it learnt of
// its server at the last handshake (its capability version and limits), so
// that the next round knows whether it may fold its handshake into its push,
// whether it may pack its records, and how large a first batch the server
// takes.
func (s *session) serverKey() string { return s.cfg.CursorKey + ".server" }

// knownServer returns what the last handshake told of the server, as kept
// under serverKey: nil when the server has not yet said it speaks the
// folding version (no round yet, or an older server).
func (s *session) knownServer(ctx context.Context) (*fieldsyncv1.HelloResponse, error) {
	var b []byte
	err := s.cfg.Store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		b, err = tx.Meta(ctx, s.serverKey())
		return err
	})
	if err != nil || len(b) == 0 {
		return nil, err
	}
	known := &fieldsyncv1.HelloResponse{}
	if err := proto.Unmarshal(b, known); err != nil || known.GetCapabilityVersion() < foldingVersion {
		// A damaged note costs a separate Hello, nothing more.
		return nil, nil
	}
	return known, nil
}

// helloRequest is the round's handshake: the replica, its version and wall
// clock, and what the operator's status shows of it.
func (s *session) helloRequest(ctx context.Context) *fieldsyncv1.HelloRequest {
	cfg := s.cfg
	self := cfg.Store.Replica()
	req := &fieldsyncv1.HelloRequest{
		ReplicaId: self[:], CapabilityVersion: wire.CapabilityVersion, ClientTime: timestamppb.New(cfg.now()),
		RefuseStampsAhead: cfg.CorrectClock,
	}
	// The operator's status shows what the replica still has to send and
	// how its last sync ended.
	if cfg.Host != nil {
		pending, lastErr := cfg.Host.HelloInfo(ctx)
		req.PendingChanges, req.LastError = int32(min(pending, 1<<31-1)), lastErr
	}
	return req
}

// hello runs the handshake as an RPC of its own (the first round with a
// server, or one whose last handshake did not say it folds) and takes its
// answer (checkHello, takeHello).
func (s *session) hello(ctx context.Context) (*fieldsyncv1.HelloResponse, error) {
	req := s.helloRequest(ctx)
	req.RefuseStampsAhead = false // the clock is corrected before the push
	// The first RPC of a connection also waits for the connection.
	hctx, cancel := context.WithTimeout(ctx, ConnectTimeout+RPCDeadline(proto.Size(req)))
	defer cancel()
	resp, err := s.rpc.Hello(hctx, req)
	if err != nil {
		return nil, fmt.Errorf("fieldsync: hello: %w", err)
	}
	localMS := s.cfg.now().UnixMilli()
	if err := s.checkHello(resp); err != nil {
		return nil, err
	}
	if err := s.takeHello(ctx, resp, localMS); err != nil {
		return nil, err
	}
	return resp, nil
}

// checkHello refuses an answer to the handshake from another server than
// the one the replica enrolled with, or one whose highest dot of the
// replica would leave it nothing to number its changes with. It runs before
// anything of the answer (or of a push it came with) is taken.
func (s *session) checkHello(resp *fieldsyncv1.HelloResponse) error {
	if syncengine.ReplicaID(resp.GetServerReplicaId()) != s.t.Server {
		return ErrServerMismatch
	}
	if m := resp.GetMaxCounter(); m > maxPlausibleCounter {
		// The replica would number its next changes above it: one near
		// 2^64 would leave it nothing to number them with.
		return fmt.Errorf("fieldsync: hello: the server says it holds this replica's change number %d, more than any replica makes: refusing to number changes above it", m)
	}
	return nil
}

// takeHello takes the answer to the handshake, which arrived when the
// replica's wall clock read localMS: with CorrectClock the clock is
// corrected from the server's and the unsent changes re-stamped; the
// program's OnHello runs; what the server said of its version and limits is
// kept for the next round (serverKey).
func (s *session) takeHello(ctx context.Context, resp *fieldsyncv1.HelloResponse, localMS int64) error {
	cfg := s.cfg
	if cfg.CorrectClock && resp.GetServerTime().IsValid() {
		// What the server has of this replica's log, as both ends agree: a
		// replica restored from an older copy is behind the server's cursor.
		cur, err := cursor(ctx, cfg.Store, s.t.Server)
		if err != nil {
			return fmt.Errorf("fieldsync: hello: %w", err)
		}
		acked := min(syncengine.Position(resp.GetAcknowledgedPosition()), cur.Acked)
		if _, err := syncengine.CorrectClock(ctx, cfg.Store, cfg.Clock, acked, resp.GetServerTime().AsTime().UnixMilli(), localMS); err != nil {
			return fmt.Errorf("fieldsync: hello: %w", err)
		}
	}
	if cfg.Host != nil {
		if err := cfg.Host.OnHello(ctx, resp); err != nil {
			return fmt.Errorf("fieldsync: hello: %w", err)
		}
	}
	known, err := proto.Marshal(&fieldsyncv1.HelloResponse{CapabilityVersion: resp.GetCapabilityVersion(), Limits: resp.GetLimits(), RecordSchema: resp.GetRecordSchema()})
	if err == nil {
		err = cfg.Store.Update(ctx, func(tx syncengine.Tx) error { return tx.SetMeta(ctx, s.serverKey(), known) })
	}
	if err != nil {
		return fmt.Errorf("fieldsync: hello: %w", err)
	}
	return nil
}
