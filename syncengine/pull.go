package syncengine

import (
	"context"
	"errors"
	"fmt"
)

// PullPhase is what a pull is reading: a snapshot, or the log after it.
type PullPhase uint8

// Phases of a PullCursor.
const (
	PullSnapshot PullPhase = 1
	PullLog      PullPhase = 2
)

// PullCursor is how far a puller has got in a server's AreaLog. The server
// hands it to the puller, encoded, with every page, and gets it back on the
// next pull.
type PullCursor struct {
	Phase PullPhase
	// Pos is, in PullSnapshot, the log end when the snapshot began (the log
	// part continues after it) and, in PullLog, the position through which
	// the puller has everything in its areas.
	Pos Position
	// Prefix is the index, in the puller's Scope, of the prefix a snapshot
	// is reading, and Page the AreaLog's token within it (nil at its
	// start). Both are zero in PullLog.
	Prefix int
	Page   []byte
}

// SnapshotCause is why a pull starts a snapshot. The values match the wire
// enum SnapshotCause.
type SnapshotCause uint8

// Causes of a snapshot.
const (
	// NoSnapshot: the pull goes on from its cursor.
	NoSnapshot SnapshotCause = iota
	// SnapshotNoCursor: the puller sent no cursor.
	SnapshotNoCursor
	// SnapshotCursorExpired: the log was compacted past the cursor.
	SnapshotCursorExpired
	// SnapshotScopeChanged: the cursor was issued for other areas, or
	// before the server's records changed outside its log.
	SnapshotScopeChanged
)

// PullRequest says whose pull it is, of which areas, and from where.
type PullRequest struct {
	// Puller is the replica pulling: its own changes, and those received
	// from it, are not sent back.
	Puller ReplicaID
	// Scope is the puller's areas.
	Scope Scope
	// Cursor is where the puller has got to; a zero Phase means none, and
	// the pull starts with a snapshot.
	Cursor PullCursor
	// ScopeChanged says that Cursor was issued for other areas, or before
	// the server's records changed outside its log: the pull sends the
	// changes after Cursor that took records out of the puller's areas
	// (departures, which a snapshot does not tell), then a snapshot.
	ScopeChanged bool
	// Limit is about the most encoded bytes of records and changes per
	// page; a record or change larger than that goes alone. <= 0 means
	// DefaultPullLimit.
	Limit int
}

// DefaultPullLimit is the page size of a PullRequest that gives none.
const DefaultPullLimit = 256 << 10

// PullPage is one page of a pull, sent as one response. A puller stores a
// page, with its Cursor, in one transaction: Records first (merged into the
// stored states), then Changes (ReceivePulledTx).
type PullPage[R, C any] struct {
	// Begin is set on the first page of a snapshot: why it is sent.
	Begin SnapshotCause
	// End is set on the page that ends a snapshot.
	End bool
	// Records are whole record states: a snapshot's, or those the page's
	// changes bring into the puller's areas (a household moved in).
	Records []R
	// Changes are log entries in the puller's areas, in log order.
	Changes []C
	// Cursor is where the next page starts.
	Cursor PullCursor
	// Departures marks a page of the changes that took records out of the
	// puller's areas since the cursor a snapshot replaces: Cursor is in
	// that cursor's terms (PullRequest.ScopeChanged).
	Departures bool
	// CaughtUp is set on the last page: the puller has everything in its
	// areas through the log end the pull read.
	CaughtUp bool
}

// PullEncoder encodes what a pull sends, the records as R and the changes
// as C, and gives each one's encoded size, which a page's Limit counts.
type PullEncoder[R, C any] interface {
	EncodeRecord(r Record) (R, int)
	EncodeChange(c Change) (C, int, error)
}

// Pull-reading page sizes.
const (
	// snapshotPageLimit is the most records read per snapshot page; a page
	// that would overflow a response is read again, smaller.
	snapshotPageLimit = 64
	// logPageLimit is the most log entries read per ReadLogAreaMoves call.
	logPageLimit = 128
)

// Puller is the server's half of a pull: it reads a server's AreaLog for a
// puller's areas, a snapshot if the puller has no usable cursor, then the
// log after it, and hands over the pages to send. Push has NextBatch and
// ReceiveBatch; Pull is its counterpart for the server's log, which the
// server filters by area and in which records move.
//
// Records move between areas (package moves): a record that enters the
// puller's areas is sent whole, in the page of the change that brought it
// (before the changes, so a relay files what precedes it under the areas it
// was in then); the change that took a record out of them is sent, so the
// puller forgets it; and before a snapshot that replaces a cursor, the
// changes that took records out since that cursor are sent (departures).
type Puller[R, C any] struct {
	Log     AreaLog
	Encoder PullEncoder[R, C]
	// Settler, if not nil, settles the unsettled moves a pull is about to
	// read, and says which moved records a puller would forget.
	Settler MoveSettler
}

// Pull sends, through send, the pages of req's pull until the puller has
// caught up, and returns the cursor of the last page. A cursor the log has
// been compacted past restarts the pull with a snapshot. It returns an
// error wrapping ErrBadPullCursor for a cursor it did not make, send's
// error, or a storage error.
func (p Puller[R, C]) Pull(ctx context.Context, req PullRequest, send func(PullPage[R, C]) error) (PullCursor, error) {
	if req.Limit <= 0 {
		req.Limit = DefaultPullLimit
	}
	ps := &pullRun[R, C]{Puller: p, req: req, prefixes: req.Scope.Prefixes(), send: send}
	cur, cause := req.Cursor, NoSnapshot
	var departed *PullCursor // the cursor a new snapshot replaces
	switch {
	case cur.Phase == 0:
		cause = SnapshotNoCursor
	case cur.Phase != PullSnapshot && cur.Phase != PullLog:
		return PullCursor{}, fmt.Errorf("%w: phase %d", ErrBadPullCursor, cur.Phase)
	case req.ScopeChanged:
		cause = SnapshotScopeChanged
		departed = &PullCursor{Phase: PullLog, Pos: cur.Pos}
	}
	for attempt := 0; ; attempt++ {
		if cause != NoSnapshot {
			end, err := p.Log.LogEnd(ctx)
			if err != nil {
				return cur, fmt.Errorf("pull: %w", err)
			}
			// A snapshot only adds records: first tell the puller which of
			// those it may hold have left its areas since its cursor,
			// through at least the snapshot's position (later moves follow
			// it).
			if departed != nil {
				if err := ps.departures(ctx, *departed); err != nil {
					return cur, err
				}
				departed = nil
			}
			cur = PullCursor{Phase: PullSnapshot, Pos: end}
		}
		if cur.Phase == PullSnapshot {
			if err := ps.snapshot(ctx, &cur, cause); err != nil {
				return cur, err
			}
		}
		err := ps.log(ctx, &cur)
		if errors.Is(err, ErrCompacted) && attempt == 0 {
			cause = SnapshotCursorExpired
			continue
		}
		return cur, err
	}
}

// pullRun is the state of one Pull.
type pullRun[R, C any] struct {
	Puller[R, C]
	req      PullRequest
	prefixes []string
	send     func(PullPage[R, C]) error
	// departing: the log phase sends only the changes that took records
	// out of the puller's areas (departures).
	departing bool
}

// snapshot sends the snapshot from cur on, Begin marked when cause is set
// (a new snapshot), and leaves cur in PullLog after the End page.
func (ps *pullRun[R, C]) snapshot(ctx context.Context, cur *PullCursor, cause SnapshotCause) error {
	first := cause != NoSnapshot
	if cur.Prefix < 0 || cur.Prefix > len(ps.prefixes) || (cur.Prefix == len(ps.prefixes) && cur.Page != nil) {
		return fmt.Errorf("%w: snapshot past the last area", ErrBadPullCursor)
	}
	for {
		page := PullPage[R, C]{}
		if first {
			page.Begin = cause
		}
		size := 0
		for size < ps.req.Limit && cur.Prefix < len(ps.prefixes) {
			recs, n, next, full, err := ps.snapshotChunk(ctx, ps.prefixes[cur.Prefix], cur.Page, ps.req.Limit-size, len(page.Records) == 0)
			if err != nil {
				return err
			}
			if full {
				break
			}
			page.Records, size = append(page.Records, recs...), size+n
			if cur.Page = next; next == nil {
				cur.Prefix++
			}
		}
		if cur.Prefix == len(ps.prefixes) && !first {
			page.End = true
			*cur = PullCursor{Phase: PullLog, Pos: cur.Pos}
		}
		page.Cursor = *cur
		if err := ps.send(page); err != nil {
			return err
		}
		if cur.Phase == PullLog {
			return nil
		}
		first = false
	}
}

// snapshotChunk reads the records of prefix after token that fit in budget
// bytes (at least one when must is set) and returns them encoded, their
// size and the token to continue from (nil at the end of the prefix). When
// nothing fits and must is unset it reports full and reads nothing.
func (ps *pullRun[R, C]) snapshotChunk(ctx context.Context, prefix string, token []byte, budget int, must bool) (recs []R, size int, next []byte, full bool, err error) {
	for n := snapshotPageLimit; ; {
		page, err := ps.Log.Snapshot(ctx, prefix, token, n)
		if err != nil {
			return nil, 0, nil, false, fmt.Errorf("pull: %w", err)
		}
		// A record a concurrent edit took back out of its new village is
		// settled there first, and the page read again without it.
		if ps.Settler != nil {
			if settled, err := ps.Settler.Settle(ctx, page.Records); err != nil {
				return nil, 0, nil, false, fmt.Errorf("pull: %w", err)
			} else if settled > 0 {
				continue
			}
		}
		out := make([]R, 0, len(page.Records))
		size, fit := 0, 0
		for _, r := range page.Records {
			enc, sz := ps.Encoder.EncodeRecord(r)
			if size+sz > budget && !(must && fit == 0) {
				break
			}
			out, size, fit = append(out, enc), size+sz, fit+1
		}
		switch {
		case fit == len(page.Records):
			return out, size, page.Next, false, nil
		case fit == 0:
			return nil, 0, token, true, nil
		}
		n = fit // read again, only what fits, so the page token is right
	}
}

// log sends the log entries in the puller's areas after cur.Pos, not its
// own, until caught up. It returns an error wrapping ErrCompacted when
// cur.Pos is before the compacted log.
func (ps *pullRun[R, C]) log(ctx context.Context, cur *PullCursor) error {
	for {
		page := PullPage[R, C]{}
		caughtUp, err := ps.fillLog(ctx, cur, &page)
		if err != nil {
			return err
		}
		page.Cursor, page.CaughtUp = *cur, caughtUp
		if err := ps.send(page); err != nil {
			return err
		}
		if caughtUp {
			return nil
		}
	}
}

// departures sends, before a snapshot that replaces the puller's cursor old,
// the changes after old that took records out of the puller's areas and
// that it did not make: a snapshot sends the records in the areas and says
// nothing of those that left, which the puller would otherwise keep. Its
// pages carry old's cursor, so a pull cut short starts them again from
// where they got to, and then the snapshot. A log compacted past old has
// nothing left to tell: the puller then drops, as the snapshot ends, every
// record it did not bring.
func (ps *pullRun[R, C]) departures(ctx context.Context, old PullCursor) error {
	ps.departing = true
	defer func() { ps.departing = false }()
	for {
		page := PullPage[R, C]{Departures: true}
		caughtUp, err := ps.fillLog(ctx, &old, &page)
		if errors.Is(err, ErrCompacted) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(page.Changes) > 0 {
			page.Cursor = old
			if err := ps.send(page); err != nil {
				return err
			}
		}
		if caughtUp {
			return nil
		}
	}
}
