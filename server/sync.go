package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// syncService implements SyncService for authenticated devices.
type syncService struct {
	fieldsyncv1.UnimplementedSyncServiceServer
	s *Server
}

// peer returns the authenticated device of ctx. The interceptors always set
// it on SyncService calls; its absence is a wiring bug.
func peer(ctx context.Context) (Peer, error) {
	p, ok := PeerFromContext(ctx)
	if !ok {
		return Peer{}, errors.New("sync call without an authenticated device")
	}
	return p, nil
}

// Hello answers the server's time, the caller's clock offset, areas, limits
// and the position of the caller's log the server has stored through.
func (v syncService) Hello(ctx context.Context, req *fieldsyncv1.HelloRequest) (*fieldsyncv1.HelloResponse, error) {
	p, err := peer(ctx)
	if err != nil {
		return nil, err
	}
	now, err := v.s.noteHello(ctx, p, req)
	if err != nil {
		return nil, err
	}
	return v.s.helloResponse(ctx, p, req, now)
}

func (s *Server) limits() *fieldsyncv1.BatchLimits {
	return &fieldsyncv1.BatchLimits{
		MaxPushChanges: int32(s.cfg.MaxPushChanges),
		MaxPushBytes:   int32(s.cfg.MaxPushBytes),
		MaxPullBytes:   int32(s.cfg.MaxPullBytes),
	}
}

// Push stores a contiguous run of the caller's log: changes that fail
// conversion are answered REJECTED_MALFORMED and not stored; the others go
// through syncengine.ReceiveBatch in one transaction, validated for scope and
// with survey. Results are in request order; when a change is refused for
// clock skew the engine stops there, and the results end with it.
func (v syncService) Push(ctx context.Context, req *fieldsyncv1.PushRequest) (*fieldsyncv1.PushResponse, error) {
	p, err := peer(ctx)
	if err != nil {
		return nil, err
	}
	if packed(req) {
		return nil, fmt.Errorf("push from device %v: %w: packed records travel only in Exchange", p.ID, ErrBadRequest)
	}
	return v.s.push(ctx, p, req, time.Time{})
}

// packed reports whether a change of req carries a packed record.
func packed(req *fieldsyncv1.PushRequest) bool {
	for _, c := range req.GetChanges() {
		if len(c.GetUpsert().GetPackedRecord()) > 0 {
			return true
		}
	}
	return false
}

// push stores req's run of device p's log (Push). With ahead set, the first
// of p's own new changes stamped after it is refused for clock skew, and
// the changes after it are neither stored nor answered.
func (s *Server) push(ctx context.Context, p Peer, req *fieldsyncv1.PushRequest, ahead time.Time) (*fieldsyncv1.PushResponse, error) {
	b, results, slot, err := s.pushBatch(p, req)
	if err != nil {
		return nil, err
	}
	b, stop, held, err := s.refuseReusedDots(ctx, b, results, slot)
	if err != nil {
		return nil, fmt.Errorf("push from device %v: %w", p.ID, err)
	}
	if !ahead.IsZero() {
		var early int
		if b, early = refuseAhead(b, results, slot, held, ahead.UnixMilli()); early >= 0 {
			stop = early
		}
	}
	if stop >= 0 {
		results = results[:stop+1] // the changes after it are not answered
	}
	if b, err = s.refuseForgedOrigins(ctx, p, b, results, slot); err != nil {
		return nil, fmt.Errorf("push from device %v: %w", p.ID, err)
	}
	val := &validator{peer: p, areas: p.Areas, now: s.now()}
	rc, err := syncengine.ReceiveBatch(ctx, s.store, b, syncengine.ReceiveOptions{
		Validate: val.validate, Clock: s.clock, WallMS: s.now().UnixMilli(),
	})
	if err != nil {
		return nil, fmt.Errorf("push from device %v: %w", p.ID, err)
	}
	for _, r := range rc.Results {
		results[slot[r.Pos]] = changeResult(r)
	}
	s.bindOrigins(ctx, p, rc)
	ack := rc.Through
	if len(req.GetChanges()) > 0 {
		// Never beyond what the device sent: a device restored from an
		// older copy of its replica sends positions the server's cursor is
		// past (those of the changes the copy lost), and acknowledges only
		// what it sent; after a reused dot or a stamp ahead, only what is
		// before it.
		ack = min(ack, b.Through)
	}
	if n := len(rc.Results); n > 0 && rc.Results[n-1].Outcome == syncengine.OutcomeClockSkew {
		skewed := rc.Results[n-1].Pos
		results = results[:slot[skewed]+1]
		ack = min(ack, skewed-1) // nor the change refused for skew
	}
	s.logPush(ctx, p.ID, rc)
	if len(rc.Results) > 0 {
		s.nudgeUpstream()
	}
	s.noteActivity(ctx, p.ID, func(a *boltstore.Activity) { a.Pending = max(0, a.Pending-len(results)) })
	return &fieldsyncv1.PushResponse{Results: results, AcknowledgedPosition: uint64(ack)}, nil
}

// pushBatch checks req's shape and converts its changes into a batch from
// sender p. It returns the result slots, already filled for the malformed
// changes, which the batch leaves out, and the slot of each log position.
func (s *Server) pushBatch(p Peer, req *fieldsyncv1.PushRequest) (syncengine.Batch, []*fieldsyncv1.ChangeResult, map[syncengine.Position]int, error) {
	n := len(req.GetChanges())
	if n > s.cfg.MaxPushChanges {
		return syncengine.Batch{}, nil, nil, fmt.Errorf("push: %w: %d changes, at most %d", ErrBadRequest, n, s.cfg.MaxPushChanges)
	}
	positions, err := pushPositions(req)
	if err != nil {
		return syncengine.Batch{}, nil, nil, err
	}
	b := syncengine.Batch{Sender: p.ID}
	if n == 0 {
		return b, nil, nil, nil
	}
	b.After, b.Through = syncengine.Position(req.GetFirstPosition()-1), syncengine.Position(req.GetLastPosition())
	results := make([]*fieldsyncv1.ChangeResult, n)
	slot := make(map[syncengine.Position]int, n)
	for i, pc := range req.GetChanges() {
		slot[positions[i]] = i
		if why, bad := undecodableReason(pc); bad {
			results[i] = &fieldsyncv1.ChangeResult{
				ChangeId: pc.GetChangeId(),
				Outcome:  fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_MALFORMED,
				Message:  why,
				Reason:   fieldsyncv1.Reason_REASON_MALFORMED_CHANGE,
			}
			continue
		}
		c, err := wire.ChangeFromProto(pc)
		if err == nil {
			err = wire.CheckUnknown(c)
		}
		if err != nil {
			results[i] = &fieldsyncv1.ChangeResult{
				ChangeId: pc.GetChangeId(),
				Outcome:  fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_MALFORMED,
				Message:  err.Error(),
				Reason:   fieldsyncv1.Reason_REASON_MALFORMED_CHANGE,
			}
			continue
		}
		// A device pushes only the changes it made. Taking one in another
		// replica's name would let it claim that replica's next dot, and the
		// real change with that dot would then be answered ALREADY_APPLIED and
		// lost. A relaying township pushes its devices' changes too, within
		// its areas, which the validator checks as for any peer.
		if c.Origin != p.ID && !p.Relay {
			results[i] = &fieldsyncv1.ChangeResult{
				ChangeId: pc.GetChangeId(),
				Outcome:  fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE,
				Message:  fmt.Sprintf("change made by replica %v: a device may push only its own changes", c.Origin),
				Reason:   fieldsyncv1.Reason_REASON_NOT_OWN_CHANGE,
			}
			continue
		}
		b.Changes = append(b.Changes, syncengine.Entry{Pos: positions[i], Change: c})
	}
	return b, results, slot, nil
}

// refuseReusedDots refuses, in results, the first change of b whose dot the
// server holds for a different change, and returns b without it and the
// changes after it, its Through before it, the slot of its result (-1
// when there is none), and the dots of b the server holds with their
// change ids. A retry carries the same change id and is answered
// ALREADY_APPLIED as usual; a different id under a known dot means the
// device numbers its changes again from an older point: its replica file was
// restored from a backup. Taking such a change as a duplicate would
// acknowledge it and lose it. The push stops there, as for clock skew: the
// change is answered REASON_DOT_REUSED and not acknowledged, so the device
// numbers it and the changes after it again, above the highest dot the
// server holds of it (HelloResponse.max_counter), and pushes them again.
func (s *Server) refuseReusedDots(ctx context.Context, b syncengine.Batch, results []*fieldsyncv1.ChangeResult, slot map[syncengine.Position]int) (syncengine.Batch, int, map[syncengine.Dot]syncengine.ChangeID, error) {
	if len(b.Changes) == 0 {
		return b, -1, nil, nil
	}
	dots := make([]syncengine.Dot, len(b.Changes))
	for i, e := range b.Changes {
		dots[i] = e.Change.Dot
	}
	held, err := s.store.ChangesAtDots(ctx, dots)
	if err != nil || len(held) == 0 {
		return b, -1, held, err
	}
	kept := b.Changes[:0:0]
	for _, e := range b.Changes {
		id, ok := held[e.Change.Dot]
		if !ok || id == e.Change.ID {
			kept = append(kept, e)
			continue
		}
		res := &fieldsyncv1.ChangeResult{
			ChangeId: append([]byte(nil), e.Change.ID[:]...),
			Outcome:  fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_MALFORMED,
			Reason:   fieldsyncv1.Reason_REASON_DOT_REUSED,
		}
		results[slot[e.Pos]] = res
		if e.Change.Origin != b.Sender {
			// Relayed from a replica restored from an older copy, which
			// its own server should have stopped: refused for good, so
			// that it is neither lost as a duplicate nor blocks the relay.
			res.Message = fmt.Sprintf("the server holds another change under dot %v: replica %v was restored from an older copy of itself", e.Change.Dot, e.Change.Origin)
			continue
		}
		res.Message = fmt.Sprintf("the server holds another change under dot %d of this device: its replica was restored from an older copy of itself; "+
			"it numbers this change and the ones after it again, above the highest dot the server holds of it, and sends them again", e.Change.Dot.Counter)
		b.Changes, b.Through = kept, e.Pos-1
		return b, slot[e.Pos], held, nil
	}
	b.Changes = kept
	return b, -1, held, nil
}

// refuseForgedOrigins refuses, in results, the new changes of b (those whose
// dot the server does not hold) that claim an origin the sender may not speak
// for or a dot counter the origin could not have reached, and returns b
// without them:
//
//   - a change in the name of this server: only this server numbers its own
//     changes, and taking one would make its next own change reuse a dot;
//   - from a relay, a change of a replica enrolled at this server directly, or
//     of a replica another relay speaks for (bindOrigins): a township speaks
//     for itself and the devices below it, never for another township's;
//   - a dot counter more than Config.MaxDotGap beyond the highest the server
//     holds of its origin (or beyond the change before it in the batch): no
//     replica makes that many changes between two syncs, and a counter near
//     2^64 would leave it nothing to number its next changes with.
func (s *Server) refuseForgedOrigins(ctx context.Context, p Peer, b syncengine.Batch, results []*fieldsyncv1.ChangeResult, slot map[syncengine.Position]int) (syncengine.Batch, error) {
	if len(b.Changes) == 0 {
		return b, nil
	}
	dots := make([]syncengine.Dot, len(b.Changes))
	for i, e := range b.Changes {
		dots[i] = e.Change.Dot
	}
	held, err := s.store.ChangesAtDots(ctx, dots)
	if err != nil {
		return b, err
	}
	self := s.store.Replica()
	// The highest counter of each origin, as the store holds it.
	high := make(map[syncengine.ReplicaID]uint64)
	var foreign []syncengine.ReplicaID
	err = s.store.View(ctx, func(tx syncengine.ReadTx) error {
		for _, e := range b.Changes {
			o := e.Change.Origin
			if _, dup := held[e.Change.Dot]; dup {
				// A change the server holds: a retry, or a change the relay
				// pulled from here and sends back. It proves nothing about
				// which relay speaks for its origin, and binds nothing.
				continue
			}
			if _, ok := high[o]; ok {
				continue
			}
			n, err := tx.MaxCounter(ctx, o)
			if err != nil {
				return err
			}
			high[o] = n
			if p.Relay && o != p.ID && o != self {
				foreign = append(foreign, o)
			}
		}
		return nil
	})
	if err != nil {
		return b, err
	}
	enrolledHere, taken, err := s.speaksFor(ctx, p, foreign)
	if err != nil {
		return b, err
	}
	kept := b.Changes[:0:0]
	for _, e := range b.Changes {
		c := e.Change
		if _, dup := held[c.Dot]; dup {
			kept = append(kept, e) // a retry, answered ALREADY_APPLIED
			continue
		}
		var why string
		outcome := fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_OUT_OF_SCOPE
		switch n := high[c.Origin]; {
		case c.Origin == self:
			why = fmt.Sprintf("change in the name of this server (%v): only the server makes its own changes", self)
		case enrolledHere[c.Origin]:
			why = fmt.Sprintf("change made by replica %v, which is enrolled here itself: a relay pushes only its own changes and those of the devices below it", c.Origin)
		case taken[c.Origin] != syncengine.ReplicaID{}:
			why = fmt.Sprintf("change made by replica %v, whose changes come from relay %v: a relay pushes only its own changes and those of the devices below it", c.Origin, taken[c.Origin])
		case c.Dot.Counter > n && c.Dot.Counter-n > uint64(s.cfg.MaxDotGap):
			outcome = fieldsyncv1.ChangeOutcome_CHANGE_OUTCOME_REJECTED_MALFORMED
			why = fmt.Sprintf("dot counter %d of replica %v is more than %d beyond the last of its changes here (%d): no replica makes that many changes between syncs", c.Dot.Counter, c.Origin, s.cfg.MaxDotGap, n)
		default:
			high[c.Origin] = max(n, c.Dot.Counter)
			kept = append(kept, e)
			continue
		}
		s.log.WarnContext(ctx, "pushed change refused", "device", p.ID.String(), "origin", c.Origin.String(), "outcome", outcome.String())
		results[slot[e.Pos]] = &fieldsyncv1.ChangeResult{
			ChangeId: append([]byte(nil), c.ID[:]...), Outcome: outcome, Message: why, Reason: fieldsyncv1.Reason_REASON_FORGED_ORIGIN,
		}
	}
	b.Changes = kept
	return b, nil
}

// speaksFor says, of the origins a relay pushes changes of, those enrolled
// here themselves and those another relay speaks for (its id).
func (s *Server) speaksFor(ctx context.Context, p Peer, origins []syncengine.ReplicaID) (map[syncengine.ReplicaID]bool, map[syncengine.ReplicaID]syncengine.ReplicaID, error) {
	enrolledHere := make(map[syncengine.ReplicaID]bool)
	var unbound []syncengine.ReplicaID
	for _, o := range origins {
		_, err := s.registry.Device(ctx, o)
		switch {
		case err == nil:
			enrolledHere[o] = true
		case errors.Is(err, boltstore.ErrNoDevice):
			unbound = append(unbound, o)
		default:
			return nil, nil, err
		}
	}
	taken, err := s.registry.OriginsTaken(ctx, p.ID, unbound)
	return enrolledHere, taken, err
}

// bindOrigins binds to relay p the origins of the changes of others it got
// applied (boltstore.BindOrigins): only a change the server took, never a
// refused one, makes a relay the one that speaks for its origin. A failure
// only delays the binding to a later push.
func (s *Server) bindOrigins(ctx context.Context, p Peer, rc syncengine.Receipt) {
	if !p.Relay {
		return
	}
	var origins []syncengine.ReplicaID
	for _, r := range rc.Results {
		if o := r.Dot.Replica; r.Outcome == syncengine.OutcomeApplied && o != p.ID && !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	if len(origins) == 0 {
		return
	}
	if _, err := s.registry.BindOrigins(context.WithoutCancel(ctx), p.ID, origins); err != nil {
		s.log.WarnContext(ctx, "binding the origins of a relayed push", "relay", p.ID.String(), "err", err)
	}
}

// pushPositions returns the log position of each change of req: its
// positions list, or first_position onwards one by one. It refuses positions
// that do not fit first_position..last_position with ErrPositionMismatch.
func pushPositions(req *fieldsyncv1.PushRequest) ([]syncengine.Position, error) {
	n := len(req.GetChanges())
	first, last, listed := req.GetFirstPosition(), req.GetLastPosition(), req.GetPositions()
	switch {
	case n == 0 && (first != 0 || last != 0 || len(listed) != 0):
		return nil, fmt.Errorf("push: %w: no changes for positions %d..%d", ErrPositionMismatch, first, last)
	case n == 0:
		return nil, nil
	case first == 0 || last < first:
		return nil, fmt.Errorf("push: %w: positions %d..%d", ErrPositionMismatch, first, last)
	case len(listed) == 0 && last-first+1 != uint64(n):
		return nil, fmt.Errorf("push: %w: %d changes for positions %d..%d", ErrPositionMismatch, n, first, last)
	case len(listed) != 0 && len(listed) != n:
		return nil, fmt.Errorf("push: %w: %d positions for %d changes", ErrPositionMismatch, len(listed), n)
	}
	out := make([]syncengine.Position, n)
	for i := range out {
		pos := first + uint64(i)
		if len(listed) != 0 {
			pos = listed[i]
		}
		if pos < first || pos > last || (i > 0 && pos <= uint64(out[i-1])) {
			return nil, fmt.Errorf("push: %w: position %d of change %d is outside %d..%d or out of order", ErrPositionMismatch, pos, i, first, last)
		}
		out[i] = syncengine.Position(pos)
	}
	return out, nil
}

func changeResult(r syncengine.ChangeResult) *fieldsyncv1.ChangeResult {
	return &fieldsyncv1.ChangeResult{
		ChangeId:    append([]byte(nil), r.ID[:]...),
		Outcome:     wire.OutcomeToProto(r.Outcome),
		Message:     r.Detail,
		Reason:      wire.ParseReason(r.Reason),
		FieldErrors: wire.FieldErrorsToProto(r.Fields),
	}
}

// logPush logs counts only: no record contents, which hold personal data.
func (s *Server) logPush(ctx context.Context, device syncengine.ReplicaID, rc syncengine.Receipt) {
	counts := make(map[syncengine.Outcome]int)
	for _, r := range rc.Results {
		counts[r.Outcome]++
	}
	s.log.InfoContext(ctx, "push", "device", device.String(), "through", uint64(rc.Through),
		"applied", counts[syncengine.OutcomeApplied], "duplicate", counts[syncengine.OutcomeDuplicate],
		"invalid", counts[syncengine.OutcomeInvalid], "out_of_scope", counts[syncengine.OutcomeOutOfScope],
		"clock_skew", counts[syncengine.OutcomeClockSkew], "malformed", counts[syncengine.OutcomeMalformed])
}

// Problem fields that record the ledger's workflow (ledger.proto), from its
// descriptor: status, measure, rectified_at, verified_at,
// verified_by_worker_id, rectified_by_worker_id, reopen_reason, reopened_at,
// reopened_by_worker_id.
var problemStatusField, problemWorkflowFields = func() (int32, []int32) {
	fs := (&fieldsyncv1.Problem{}).ProtoReflect().Descriptor().Fields()
	var nums []int32
	for _, name := range []string{"status", "measure", "rectified_at", "verified_at", "verified_by_worker_id",
		"rectified_by_worker_id", "reopen_reason", "reopened_at", "reopened_by_worker_id"} {
		nums = append(nums, int32(fs.ByName(protoreflect.Name(name)).Number()))
	}
	return nums[0], nums
}()

// maxReportedError bounds the error text a device reports in Hello.
const maxReportedError = 512

// noteActivity records what a device's sync did, for SyncStatus. Failing to
// record it only loses that note: it never fails the device's call.
func (s *Server) noteActivity(ctx context.Context, id syncengine.ReplicaID, fn func(*boltstore.Activity)) {
	if err := s.registry.UpdateActivity(context.WithoutCancel(ctx), id, fn); err != nil {
		s.log.WarnContext(ctx, "recording device activity", "device", id.String(), "err", err)
	}
}
