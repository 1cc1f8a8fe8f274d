package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// The handshake, alone (Hello) or folded into the first batch of an
// Exchange (protocol version 2), and what only Exchange does.

// noteHello checks the handshake req of device p, alone or folded into a
// push, and notes what it tells of the device for the operator's status. It
// returns the server's present, which the answer tells the device.
func (s *Server) noteHello(ctx context.Context, p Peer, req *fieldsyncv1.HelloRequest) (time.Time, error) {
	if id := req.GetReplicaId(); len(id) != 0 && syncengine.ReplicaID(id) != p.ID {
		return time.Time{}, fmt.Errorf("hello from device %v: %w", p.ID, ErrReplicaMismatch)
	}
	now := s.now()
	s.noteActivity(ctx, p.ID, func(a *boltstore.Activity) {
		a.LastSeen, a.Pending, a.LastError = now, int(max(0, req.GetPendingChanges())), truncate(req.GetLastError(), maxReportedError)
	})
	return now, nil
}

// helloResponse answers the handshake req of device p, made at now: for a
// handshake folded into a push, after the push.
func (s *Server) helloResponse(ctx context.Context, p Peer, req *fieldsyncv1.HelloRequest, now time.Time) (*fieldsyncv1.HelloResponse, error) {
	var cur syncengine.Cursor
	var maxCounter uint64
	err := s.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		if cur, err = tx.Cursor(ctx, p.ID); err != nil {
			return err
		}
		maxCounter, err = tx.MaxCounter(ctx, p.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	var offset int64
	if req.GetClientTime().IsValid() {
		offset = now.UnixMilli() - req.GetClientTime().AsTime().UnixMilli()
	}
	hasUp, upCounter, err := s.upstreamReceipt(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	srv := s.store.Replica()
	_, rules, err := s.rules(ctx)
	if err != nil {
		return nil, fmt.Errorf("hello from device %v: %w", p.ID, err)
	}
	return &fieldsyncv1.HelloResponse{
		Rules:                       rules,
		HasUpstream:                 hasUp,
		UpstreamAcknowledgedCounter: upCounter,
		ServerReplicaId:             srv[:],
		ServerTime:                  timestamppb.New(now),
		ClockOffsetMs:               offset,
		AreaPrefixes:                p.Areas,
		CapabilityVersion:           wire.CapabilityVersion,
		Limits:                      s.limits(),
		MaxClockSkewMs:              s.cfg.MaxClockSkew.Milliseconds(),
		AcknowledgedPosition:        uint64(cur.Received),
		MaxCounter:                  maxCounter,
		RecordSchema:                wire.RecordSchema(),
	}, nil
}

// Exchange is Push with the handshake of the session folded into its first
// batch (protocol version 2), answered after the push.
func (v syncService) Exchange(ctx context.Context, req *fieldsyncv1.ExchangeRequest) (*fieldsyncv1.ExchangeResponse, error) {
	s := v.s
	p, err := peer(ctx)
	if err != nil {
		return nil, err
	}
	push, hr := req.GetPush(), req.GetHello()
	if push == nil {
		push = &fieldsyncv1.PushRequest{}
	}
	// A batch packed with another schema would be read back wrong.
	takes := !packed(push) || wire.SameSchema(req.GetRecordSchema())
	if hr == nil {
		if !takes {
			return nil, fmt.Errorf("exchange from device %v: %w", p.ID, ErrSchemaMismatch)
		}
		resp, err := s.push(ctx, p, push, time.Time{})
		if err != nil {
			return nil, err
		}
		return &fieldsyncv1.ExchangeResponse{Push: resp}, nil
	}
	now, err := s.noteHello(ctx, p, hr)
	if err != nil {
		return nil, err
	}
	var ahead time.Time
	if hr.GetRefuseStampsAhead() {
		ahead = now
	}
	resp := &fieldsyncv1.ExchangeResponse{Push: &fieldsyncv1.PushResponse{}}
	if takes && len(push.GetChanges()) <= s.cfg.MaxPushChanges {
		// A batch over the limits, or packed with another schema, is
		// answered with the handshake alone: the caller learns the limits
		// and the schema.
		pr, err := s.push(ctx, p, push, ahead)
		switch {
		case errors.Is(err, syncengine.ErrCursorGap):
			// The caller's idea of the server's cursor is ahead of it (the
			// server was restored from a backup): the handshake tells it
			// where to send from.
		case err != nil:
			return nil, err
		default:
			resp.Push = pr
		}
	}
	// A batch answered with the handshake alone acknowledges nothing (its
	// acknowledged position stays 0): the caller sends again from the
	// handshake's.
	if resp.Hello, err = s.helloResponse(ctx, p, hr, now); err != nil {
		return nil, err
	}
	return resp, nil
}

// refuseAhead refuses, in results, the first new change of b's sender's own
// (its dot not in held) stamped after nowMS, for clock skew, and returns b
// through the change before it and its slot; -1 when there is none. The
// sender corrects its clock from the handshake answered with the push
// (HelloRequest.refuse_stamps_ahead) and sends it again re-stamped.
func refuseAhead(b syncengine.Batch, results []*fieldsyncv1.ChangeResult, slot map[syncengine.Position]int, held map[syncengine.Dot]syncengine.ChangeID, nowMS int64) (syncengine.Batch, int) {
	for i, e := range b.Changes {
		c := e.Change
		if c.Origin != b.Sender || c.Stamp.WallMS <= nowMS {
			continue
		}
		if _, ok := held[c.Dot]; ok {
			continue // stored already: its stamp is the one the server holds
		}
		results[slot[e.Pos]] = &fieldsyncv1.ChangeResult{
			ChangeId: append([]byte(nil), c.ID[:]...),
			Outcome:  fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_CLOCK_SKEW,
			Reason:   fieldsyncv1.Reason_REASON_CLOCK_SKEW,
			Message: fmt.Sprintf("stamped %d ms after the server's present: correct the clock from the handshake's server time, "+
				"re-stamp this change and the ones after it, and send them again", c.Stamp.WallMS-nowMS),
		}
		b.Changes, b.Through = b.Changes[:i], e.Pos-1
		return b, slot[e.Pos]
	}
	return b, -1
}
