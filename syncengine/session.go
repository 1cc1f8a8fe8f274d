package syncengine

import (
	"context"
	"fmt"
	"strconv"
)

// Outcome is what a receiver did with one change of a batch. The values match
// the wire enum ChangeOutcome, and String returns a stable machine-readable code.
type Outcome uint8

// Outcomes of receiving a change.
const (
	// OutcomeApplied: applied to the record and appended to the log.
	OutcomeApplied Outcome = 1
	// OutcomeDuplicate: the log already held the change's dot; nothing stored.
	OutcomeDuplicate Outcome = 2
	// OutcomeInvalid: the batch validator refused it; not stored.
	OutcomeInvalid Outcome = 3
	// OutcomeOutOfScope: the validator refused it with ErrOutOfScope.
	OutcomeOutOfScope Outcome = 4
	// OutcomeClockSkew: stamped too far ahead; the batch stopped before it.
	OutcomeClockSkew Outcome = 5
	// OutcomeMalformed: structurally invalid, or for a record of another kind.
	OutcomeMalformed Outcome = 6
)

// String returns the outcome's stable code, such as "applied" or "clock_skew".
func (o Outcome) String() string {
	switch o {
	case OutcomeApplied:
		return "applied"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeInvalid:
		return "invalid"
	case OutcomeOutOfScope:
		return "out_of_scope"
	case OutcomeClockSkew:
		return "clock_skew"
	case OutcomeMalformed:
		return "malformed"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Refused reports whether o refuses the change for good: the receiver's cursor
// moves past it and the sender records a Rejection for the user to act on.
func (o Outcome) Refused() bool {
	return o == OutcomeInvalid || o == OutcomeOutOfScope || o == OutcomeMalformed
}

// ChangeResult is the receiver's answer for one change.
type ChangeResult struct {
	Pos     Position // the change's position in the sender's log
	ID      ChangeID
	Dot     Dot
	Outcome Outcome
	Detail  string // human-readable reason for a refusal
	// Reason is why a refused change was refused, for programs: the
	// protocol's Reason name (ReasonInvalidRecord, say). Fields are the
	// field errors of the record it would have left (RefusalError).
	Reason string
	Fields []FieldError
}

// Batch is one message of changes taken from a sender's log.
type Batch struct {
	// Sender is the replica whose log the batch comes from. A server must set
	// or check it from the authenticated peer, never trust it from the wire:
	// it selects the cursor the batch advances.
	Sender ReplicaID
	// After is the position the batch continues from: the receiver's cursor
	// as the sender knew it.
	After Position
	// Through is the last log position the batch accounts for. It can be past
	// the last change sent when filtered-out entries followed it.
	Through Position
	// Changes are in log order, positions strictly increasing in (After, Through].
	Changes []Entry
	// More is set when the sender's log may hold entries after Through.
	More bool
}

// DefaultBatchLimit is the batch size NextBatch uses when none is given.
const DefaultBatchLimit = 256

// SendOptions controls what NextBatch sends.
type SendOptions struct {
	// Limit is the most changes per batch; <= 0 means DefaultBatchLimit.
	Limit int
	// Exclude, if not zero, is a replica whose own changes, and those
	// received from it, are not sent (normally the receiver: it has them
	// already).
	Exclude ReplicaID
	// Filter, if not nil, keeps only the changes it returns true for (the
	// receiver's scopes). It must not modify the change.
	Filter func(*Change) bool
}

// NextBatch reads the batch that sender, whose log s holds, sends to a peer
// whose cursor in that log is after. It scans at most 16 batches' worth of
// entries, so heavy filtering cannot make one call read the whole log.
func NextBatch(ctx context.Context, s Store, sender ReplicaID, after Position, opts SendOptions) (Batch, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultBatchLimit
	}
	b := Batch{Sender: sender, After: after, Through: after}
	err := s.View(ctx, func(tx ReadTx) error {
		b.Changes, b.Through, b.More = nil, after, false
		for scanned := 0; scanned < 16*limit; {
			page, err := tx.ReadLog(ctx, b.Through, limit)
			if err != nil {
				return err
			}
			for _, e := range page {
				b.Through = e.Pos
				scanned++
				if keep(&e, opts) {
					b.Changes = append(b.Changes, e)
					if len(b.Changes) == limit {
						b.More = true
						return nil
					}
				}
			}
			if len(page) < limit {
				return nil
			}
		}
		b.More = true
		return nil
	})
	if err != nil {
		return Batch{}, fmt.Errorf("syncengine: read batch: %w", err)
	}
	return b, nil
}

// keep reports whether e goes to the receiver: not when the receiver made
// it, nor when it came from the receiver, and not when Filter says no.
func keep(e *Entry, opts SendOptions) bool {
	if !opts.Exclude.IsZero() && (e.Change.Origin == opts.Exclude || e.From == opts.Exclude) {
		return false
	}
	return opts.Filter == nil || opts.Filter(&e.Change)
}

// Receipt is the receiver's answer to a batch.
type Receipt struct {
	Sender ReplicaID
	// Through is the receiver's cursor for the sender after the batch: every
	// change at or before it has been stored or refused for good. It is the
	// position the sender acknowledges and resumes after.
	Through Position
	// Results has one entry per change processed, in batch order. When a
	// change is refused for clock skew, processing stops there: it is the
	// last result and Through stays before it.
	Results []ChangeResult
}

// ReceiveOptions controls how ReceiveBatch treats incoming changes.
type ReceiveOptions struct {
	// Validate, if not nil, checks each new change before it is stored. It gets
	// the record's state before the change (prev, zero for a new record) and
	// the merged state the change would leave (next), so it can judge the whole
	// record rather than the fields one change carries, and a move between
	// areas by both ends. A change it returns an error for is reported and not
	// stored; wrap ErrOutOfScope to report OutcomeOutOfScope, and return a
	// *RefusalError to give a reason and field errors.
	// It reads the batch's transaction tx (the registry a rule looks up) and
	// must not keep it.
	Validate func(ctx context.Context, tx ReadTx, c Change, prev, next Record) error
	// Clock, if not nil, observes every new change's stamp, refusing stamps
	// beyond its skew, so that later local stamps follow them.
	Clock *Clock
	// WallMS is the local wall clock, for Clock.
	WallMS int64
	// Also, if not nil, runs in the batch's transaction after the batch is
	// applied; its error undoes the whole batch. A device stores the server's
	// resume token with it, so the batch and the token commit together.
	Also func(ctx context.Context, tx Tx) error
}

// ReceiveBatch applies batch b from a peer in one transaction of s: changes
// whose dot the log already holds are skipped, the rest are validated, applied
// to their records and appended to the log, and the cursor for the sender
// moves to the end of what was processed, together with what it covers. It
// returns an error wrapping ErrCursorGap if b starts after the stored cursor,
// ErrInvalidBatch if its positions are out of order, or a storage error; then
// nothing is stored.
func ReceiveBatch(ctx context.Context, s Store, b Batch, opts ReceiveOptions) (Receipt, error) {
	prev := b.After
	for _, e := range b.Changes {
		if e.Pos <= prev || e.Pos > b.Through {
			return Receipt{}, fmt.Errorf("%w: position %d after %d, through %d", ErrInvalidBatch, e.Pos, prev, b.Through)
		}
		prev = e.Pos
	}
	var rc Receipt
	err := s.Update(ctx, func(tx Tx) error {
		rc = Receipt{Sender: b.Sender}
		cur, err := tx.Cursor(ctx, b.Sender)
		if err != nil {
			return err
		}
		if b.After > cur.Received {
			return fmt.Errorf("%w: batch after %d, cursor at %d", ErrCursorGap, b.After, cur.Received)
		}
		through := b.Through
		for _, e := range b.Changes {
			res, err := receiveOne(ctx, tx, e, b.Sender, opts)
			if err != nil {
				return err
			}
			rc.Results = append(rc.Results, res)
			if res.Outcome == OutcomeClockSkew {
				through = e.Pos - 1
				break
			}
		}
		if through > cur.Received {
			cur.Received = through
			if err := tx.SetCursor(ctx, b.Sender, cur); err != nil {
				return err
			}
		}
		rc.Through = cur.Received
		if opts.Also != nil {
			return opts.Also(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return Receipt{}, fmt.Errorf("syncengine: receive batch: %w", err)
	}
	return rc, nil
}

// receiveOne processes one change, received from peer from, inside the batch
// transaction. Its error is a storage failure, which aborts the whole batch.
func receiveOne(ctx context.Context, tx Tx, e Entry, from ReplicaID, opts ReceiveOptions) (ChangeResult, error) {
	c := &e.Change
	res := ChangeResult{Pos: e.Pos, ID: c.ID, Dot: c.Dot}
	refuse := func(o Outcome, reason string, err error) (ChangeResult, error) {
		res.Outcome, res.Reason, res.Detail = o, reason, err.Error()
		return res, nil
	}
	if err := c.Validate(); err != nil {
		return refuse(OutcomeMalformed, ReasonMalformed, err)
	}
	seen, err := tx.Seen(ctx, c.Dot)
	if err != nil {
		return res, err
	}
	if seen {
		res.Outcome = OutcomeDuplicate
		return res, nil
	}
	if opts.Clock != nil {
		if err := opts.Clock.Observe(c.Stamp, opts.WallMS); err != nil {
			return refuse(OutcomeClockSkew, ReasonClockSkew, err)
		}
	}
	rec, err := tx.Record(ctx, c.RecordID)
	if err != nil {
		return res, err
	}
	next, err := Apply(rec, c)
	if err != nil {
		return refuse(OutcomeMalformed, ReasonMalformed, err)
	}
	if opts.Validate != nil {
		if err := opts.Validate(ctx, tx, *c, rec, next); err != nil {
			o, reason, fields := refusalOf(err)
			res.Fields = fields
			return refuse(o, reason, err)
		}
	}
	if err := tx.PutRecord(ctx, next); err != nil {
		return res, err
	}
	if err := appendFrom(ctx, tx, c, from); err != nil {
		return res, err
	}
	res.Outcome = OutcomeApplied
	return res, nil
}

// Acknowledge records at the sender, in one transaction of its store s, that
// peer answered a batch with receipt rc: the peer's acknowledged position moves
// to rc.Through (never backwards) and every change the peer refused for good
// gets a Rejection, so the user can fix it. Unsent changes are those after the
// acknowledged position.
func Acknowledge(ctx context.Context, s Store, peer ReplicaID, rc Receipt) error {
	err := s.Update(ctx, func(tx Tx) error {
		cur, err := tx.Cursor(ctx, peer)
		if err != nil {
			return err
		}
		for _, r := range rc.Results {
			if !r.Outcome.Refused() || r.Pos > rc.Through {
				continue
			}
			rej := Rejection{Peer: peer, Pos: r.Pos, ID: r.ID, Dot: r.Dot, Outcome: r.Outcome, Detail: r.Detail, Reason: r.Reason, Fields: r.Fields}
			if err := tx.PutRejection(ctx, rej); err != nil {
				return err
			}
		}
		if rc.Through > cur.Acked {
			cur.Acked = rc.Through
			return tx.SetCursor(ctx, peer, cur)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("syncengine: acknowledge: %w", err)
	}
	return nil
}

// appendFrom appends c, received from peer from (zero for none), to the
// log of tx, with the peer.
func appendFrom(ctx context.Context, tx Tx, c *Change, from ReplicaID) error {
	if fa, ok := tx.(FromAppender); ok {
		_, err := fa.AppendFrom(ctx, *c, from)
		return err
	}
	pos, err := tx.Append(ctx, *c)
	if err != nil || from.IsZero() {
		return err
	}
	return tx.NoteFrom(ctx, pos, from)
}
