package syncclient

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/zstdgrpc"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// push sends the changes the server lacks after the position it acknowledged
// in the handshake, in batches, and records the server's answers with
// syncengine.Acknowledge. A device sends its own changes only; a relay every
// change that did not come from the server. The changes left out are those
// the server has (it made them, or for a device, sent them): the batch's
// positions list says which positions were sent, and its last position
// covers the ones left out, so the server's cursor moves past them.
//
// To a server that said at the last handshake (known) that it speaks
// version 2, batches go with Exchange, their records packed; with hello nil
// the handshake travels with the first (exchange), sized by the limits the
// server gave at the last one, and with nothing to send it goes alone. A
// server that answers Exchange UNIMPLEMENTED (an older build put back) has
// stored nothing: the replica says Hello and pushes with Push. push returns
// the round's handshake answer.
func (s *session) push(ctx context.Context, hello, known *fieldsyncv1.HelloResponse) (*fieldsyncv1.HelloResponse, error) {
	cfg := s.cfg
	self := cfg.Store.Replica()
	st := pushState{hello: hello, v2: known.GetCapabilityVersion() >= foldingVersion}
	st.pack = st.v2 && wire.SameSchema(known.GetRecordSchema())
	st.limit, st.maxBytes = pushLimits(known, syncengine.DefaultBatchLimit)
	send := syncengine.SendOptions{Exclude: s.t.Server}
	if !cfg.Relay {
		send.Filter = func(ch *syncengine.Change) bool { return ch.Origin == self }
	}
	var err error
	if st.after, err = s.pushFrom(ctx, hello); err != nil {
		return nil, err
	}
	for {
		send.Limit = st.limit
		b, err := syncengine.NextBatch(ctx, cfg.Store, self, st.after, send)
		if err != nil {
			return nil, fmt.Errorf("fieldsync: push: %w", err)
		}
		if len(b.Changes) == 0 {
			// Nothing to send through b.Through; the server learns of the
			// skipped positions with the next batch that carries a change.
			if b.More {
				st.after = b.Through
				continue
			}
			if st.hello == nil {
				return s.hello(ctx)
			}
			return st.hello, nil
		}
		req, err := pushRequest(b, st.pack)
		if err != nil {
			return nil, fmt.Errorf("fieldsync: push: %w", err)
		}
		if st.maxBytes > 0 && proto.Size(req) > st.maxBytes && st.limit > 1 {
			st.limit = max(1, st.limit/2)
			continue
		}
		folded := st.hello == nil
		rc, sent, err := s.send(ctx, &st, b, req)
		if err != nil {
			return nil, err
		}
		if !sent {
			continue
		}
		if pos, ok := reusedDot(rc, self); ok {
			return nil, s.renumber(ctx, st.hello, pos)
		}
		if rc.Through <= st.after {
			if folded && cfg.CorrectClock && !st.restamped {
				// The first change was stamped ahead of the server: the
				// handshake's answer re-stamped it; send it again.
				st.restamped = true
				continue
			}
			// The first change was refused for clock skew: it stays pending
			// and is restamped at the next handshake.
			return nil, fmt.Errorf("fieldsync: push: %w", &retryError{fmt.Errorf("server stopped at position %d: %s", st.after, lastDetail(rc))})
		}
		st.after = rc.Through
		if !b.More && st.after >= b.Through {
			return st.hello, nil
		}
	}
}

// pushState is where a round's push stands.
type pushState struct {
	// hello is the round's handshake answer; nil until it came.
	hello *fieldsyncv1.HelloResponse
	// v2: batches go with Exchange; pack: their records packed (the
	// server's record schema is this build's).
	v2, pack bool
	// after is the position the next batch starts after.
	after           syncengine.Position
	limit, maxBytes int
	// restamped: a batch refused for stamps ahead was re-stamped once.
	restamped bool
}

// send sends batch b as req, with Push or with Exchange (st.v2, with the
// handshake when st.hello is nil), and records the answer. sent is false
// when the server took nothing of the batch and st says where to send from
// again: it answered the handshake alone (a batch it could not take as sent),
// or it does not speak version 2 after all.
func (s *session) send(ctx context.Context, st *pushState, b syncengine.Batch, req *fieldsyncv1.PushRequest) (rc syncengine.Receipt, sent bool, err error) {
	if !st.v2 {
		rc, err = s.pushBatch(ctx, b, req)
		return rc, err == nil, err
	}
	folded := st.hello == nil
	hello, rc, took, err := s.exchange(ctx, b, req, folded, st.pack)
	if err == nil && !took && !folded {
		return rc, false, fmt.Errorf("fieldsync: push: the server answered a batch of %d changes with no result: it is not a fieldsync server this app can sync with; tell its operator", len(b.Changes))
	}
	if wire.StatusReason(status.Convert(err)) == fieldsyncv1.Reason_REASON_SCHEMA_MISMATCH && st.pack {
		// Packed with a schema the server does not share: send unpacked.
		st.pack = false
		return rc, false, nil
	}
	if status.Code(err) == codes.Unimplemented {
		// An older build than the one that said it speaks version 2:
		// nothing was stored. Push from what it says, unpacked.
		st.v2 = false
		if st.hello == nil {
			if st.hello, err = s.hello(ctx); err != nil {
				return rc, false, err
			}
		}
	} else if err != nil {
		return rc, false, err
	} else if hello != nil {
		st.hello = hello
		st.pack = st.pack && wire.SameSchema(hello.GetRecordSchema())
	}
	if !st.v2 {
		st.pack = false
	}
	if !st.v2 || !took {
		st.limit, st.maxBytes = pushLimits(st.hello, st.limit)
		st.after, err = s.pushFrom(ctx, st.hello)
		return rc, false, err
	}
	return rc, true, nil
}

// pushLimits returns the most changes and bytes of a batch the server's
// handshake answer allows; limit changes when it does not say.
func pushLimits(hello *fieldsyncv1.HelloResponse, limit int) (changes, bytes int) {
	if n := int(hello.GetLimits().GetMaxPushChanges()); n > 0 {
		limit = n
	}
	return limit, int(hello.GetLimits().GetMaxPushBytes())
}

// pushFrom returns the position the push resumes after: what both ends
// agree on. The server may hold more than the replica knows it acknowledged
// (the answer to the last push was lost): sending that stretch again costs
// a batch, but its answer marks the changes acknowledged here and tells
// which were refused, which the server's position alone would not. Before
// the handshake (hello nil, to be folded into the push) the replica sends
// from what it knows; a server behind it answers the handshake alone, and
// the replica sends again from there.
func (s *session) pushFrom(ctx context.Context, hello *fieldsyncv1.HelloResponse) (syncengine.Position, error) {
	cur, err := cursor(ctx, s.cfg.Store, s.t.Server)
	if err != nil {
		return 0, fmt.Errorf("fieldsync: push: %w", err)
	}
	if hello == nil {
		return cur.Acked, nil
	}
	return min(cur.Acked, syncengine.Position(hello.GetAcknowledgedPosition())), nil
}

// pushBatch sends batch b as req with Push and records the server's answer.
func (s *session) pushBatch(ctx context.Context, b syncengine.Batch, req *fieldsyncv1.PushRequest) (syncengine.Receipt, error) {
	pctx, cancel := context.WithTimeout(ctx, RPCDeadline(proto.Size(req)))
	resp, err := s.rpc.Push(pctx, req)
	cancel()
	if err != nil {
		return syncengine.Receipt{}, fmt.Errorf("fieldsync: push: %w", err)
	}
	rc, err := s.acknowledge(ctx, b, resp)
	if err != nil {
		return rc, fmt.Errorf("fieldsync: push: %w", err)
	}
	return rc, nil
}

// exchange sends batch b as req with Exchange, with the round's handshake
// when withHello and naming this build's record schema when packed, and
// takes the answer: the handshake's is checked before
// anything is recorded, then the push's recorded, then the handshake's
// taken (its clock correction sees what this push had acknowledged). took
// is false when the server took nothing of the batch (it answered the
// handshake alone).
func (s *session) exchange(ctx context.Context, b syncengine.Batch, req *fieldsyncv1.PushRequest, withHello, packed bool) (hello *fieldsyncv1.HelloResponse, rc syncengine.Receipt, took bool, err error) {
	xreq := &fieldsyncv1.ExchangeRequest{Push: req}
	if packed {
		xreq.RecordSchema = wire.RecordSchema()
	}
	deadline := RPCDeadline(proto.Size(req))
	if withHello {
		xreq.Hello = s.helloRequest(ctx)
		// The first RPC of a connection also waits for the connection.
		deadline += ConnectTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, deadline)
	resp, err := s.rpc.Exchange(pctx, xreq, grpc.UseCompressor(zstdgrpc.Name))
	cancel()
	if err != nil {
		return nil, rc, false, fmt.Errorf("fieldsync: push: %w", err)
	}
	localMS := s.cfg.now().UnixMilli()
	hello = resp.GetHello()
	if withHello {
		if hello == nil {
			return nil, rc, false, fmt.Errorf("fieldsync: push: the server answered the handshake with nothing: it is not a fieldsync server this app can sync with; tell its operator")
		}
		if err := s.checkHello(hello); err != nil {
			return nil, rc, false, err
		}
	}
	took = len(resp.GetPush().GetResults()) > 0
	if took {
		if rc, err = s.acknowledge(ctx, b, resp.GetPush()); err != nil {
			return nil, rc, false, fmt.Errorf("fieldsync: push: %w", err)
		}
	}
	if withHello {
		if err := s.takeHello(ctx, hello, localMS); err != nil {
			return nil, rc, false, err
		}
	}
	return hello, rc, took, nil
}

// maxPlausibleCounter is the highest dot counter of its own a replica takes
// from a server's handshake (HelloResponse.max_counter) as the floor of its
// next changes: far beyond what any replica makes, far below overflow.
const maxPlausibleCounter = 1 << 48

// reusedDot returns the position of the change of self the server refused,
// and did not acknowledge, because it holds another change under its dot
// (REASON_DOT_REUSED), if any.
func reusedDot(rc syncengine.Receipt, self syncengine.ReplicaID) (syncengine.Position, bool) {
	for _, r := range rc.Results {
		if r.Reason == wire.ReasonString(fieldsyncv1.Reason_REASON_DOT_REUSED) && r.Pos > rc.Through && r.Dot.Replica == self {
			return r.Pos, true
		}
	}
	return 0, false
}

// renumber answers a refusal of the change at pos for a reused dot: the
// replica was restored from an older copy of itself, and the server holds
// other changes of it under the dots it numbered on from. Its unsent changes
// from pos on are numbered again above the server's highest dot of it
// (syncengine.Renumber), its pull position is forgotten so that the next
// pull is a snapshot that brings back what the copy lost, and the round is
// tried again.
func (s *session) renumber(ctx context.Context, hello *fieldsyncv1.HelloResponse, pos syncengine.Position) error {
	self := s.cfg.Store.Replica()
	n, err := syncengine.Renumber(ctx, s.cfg.Store, self, pos, hello.GetMaxCounter(), func(ctx context.Context, tx syncengine.Tx) error {
		return tx.SetMeta(ctx, s.cfg.CursorKey, []byte{})
	})
	if err != nil {
		return fmt.Errorf("fieldsync: push: the server holds other changes under this replica's dots (restored from an older copy?): %w", err)
	}
	return fmt.Errorf("fieldsync: push: %w", &retryError{fmt.Errorf("this replica was restored from an older copy of itself: %d unsent changes numbered again from position %d, above the server's dot %d", n, pos, hello.GetMaxCounter())})
}

// acknowledge records the server's answer to pushing b: the changes it took
// are acknowledged and those it refused for good recorded with their reasons
// and field errors, in one transaction (syncengine.Acknowledge), and the
// progress reported.
func (s *session) acknowledge(ctx context.Context, b syncengine.Batch, resp *fieldsyncv1.PushResponse) (syncengine.Receipt, error) {
	srv := s.t.Server
	rc, err := receipt(srv, b, resp)
	if err != nil {
		return rc, err
	}
	if err := syncengine.Acknowledge(ctx, s.cfg.Store, srv, rc); err != nil {
		return rc, err
	}
	for _, e := range b.Changes {
		if e.Pos <= rc.Through {
			s.run.p.Pushed++
		}
	}
	for _, r := range rc.Results {
		if r.Outcome.Refused() && r.Pos <= rc.Through {
			s.run.p.Rejected++
		}
	}
	s.run.report(PhasePush)
	return rc, nil
}

func lastDetail(rc syncengine.Receipt) string {
	if n := len(rc.Results); n > 0 {
		return rc.Results[n-1].Detail
	}
	return "no progress"
}

// pushRequest is batch b on the wire: its changes with their positions, and
// b.After+1..b.Through as the range they account for; with packed, the
// records packed (wire.PackChange, for Exchange only).
func pushRequest(b syncengine.Batch, packed bool) (*fieldsyncv1.PushRequest, error) {
	req := &fieldsyncv1.PushRequest{
		FirstPosition: uint64(b.After) + 1,
		LastPosition:  uint64(b.Through),
	}
	for _, e := range b.Changes {
		pc, err := wire.ChangeToProto(e.Change)
		if err == nil && packed {
			err = wire.PackChange(pc)
		}
		if err != nil {
			return nil, err
		}
		req.Changes = append(req.Changes, pc)
		req.Positions = append(req.Positions, uint64(e.Pos))
	}
	return req, nil
}

// receipt turns the server's answer to batch b into the engine's receipt,
// with each refused change's reason and field errors.
func receipt(srv syncengine.ReplicaID, b syncengine.Batch, resp *fieldsyncv1.PushResponse) (syncengine.Receipt, error) {
	if len(resp.GetResults()) > len(b.Changes) {
		return syncengine.Receipt{}, fmt.Errorf("%d results for %d changes", len(resp.GetResults()), len(b.Changes))
	}
	rc := syncengine.Receipt{Sender: srv, Through: syncengine.Position(resp.GetAcknowledgedPosition())}
	if rc.Through > b.Through {
		return syncengine.Receipt{}, fmt.Errorf("server acknowledged position %d beyond %d sent", rc.Through, b.Through)
	}
	for i, r := range resp.GetResults() {
		e := b.Changes[i]
		out, ok := wire.OutcomeFromProto(r.GetOutcome())
		if !ok {
			return syncengine.Receipt{}, fmt.Errorf("change %v: unknown outcome %v", e.Change.ID, r.GetOutcome())
		}
		rc.Results = append(rc.Results, syncengine.ChangeResult{
			Pos: e.Pos, ID: e.Change.ID, Dot: e.Change.Dot, Outcome: out, Detail: r.GetMessage(),
			Reason: wire.ReasonString(r.GetReason()), Fields: wire.FieldErrorsFromProto(r.GetFieldErrors()),
		})
	}
	return rc, nil
}
