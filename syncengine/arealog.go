package syncengine

import (
	"context"
	"errors"
)

// ErrBadPullCursor is returned (wrapped) by Pull, and by an AreaLog's
// Snapshot, for a cursor or page token they did not make for the areas
// read: the puller starts again without it.
var ErrBadPullCursor = errors.New("syncengine: invalid pull cursor")

// Move says how a log entry moved its record with respect to the area
// prefixes of a read.
type Move uint8

// Moves of AreaLog.ReadLogAreaMoves.
const (
	// Stays: the change did not move its record, or moved it within the
	// prefixes.
	Stays Move = iota
	// MovesIn: the record came into the prefixes from outside them (no area
	// of AreaEntry.Areas is under them).
	MovesIn
	// MovesOut: the record left the prefixes (an area of AreaEntry.Areas is
	// under them, Change.Area is not).
	MovesOut
)

// String returns "stays", "moves in" or "moves out".
func (m Move) String() string {
	switch m {
	case MovesIn:
		return "moves in"
	case MovesOut:
		return "moves out"
	}
	return "stays"
}

// AreaEntry is a log entry as an AreaLog reads it for some area prefixes.
type AreaEntry struct {
	Entry
	// Areas lists, sorted, the areas the change took its record out of, when
	// it moved it to Change.Area: the area the record was in at this store
	// before the change and, for a change that sets no field and deletes
	// nothing (a server settling a move), the areas other replicas show the
	// record in by the writes it overwrote. It is nil for every other
	// change.
	Areas []string
	// Move is how the change moved its record with respect to the prefixes
	// read.
	Move Move
}

// AreaLog is what Pull needs of a server's store, declared here by its
// user: the records by area, page by page, and the log by area, each
// entry saying how it moved its record. store/boltstore implements it.
type AreaLog interface {
	Store
	// LogEnd returns the last position ever assigned in the log (0 for an
	// empty log): the AsOf of a snapshot read now.
	LogEnd(ctx context.Context) (Position, error)
	// Snapshot reads, in one read transaction, up to limit records whose
	// area starts with prefix (deleted ones included), in a fixed order,
	// after the page token (nil for the first page). The page's Next is
	// nil on the last page. A token it did not make for prefix is an error
	// wrapping ErrBadPullCursor.
	Snapshot(ctx context.Context, prefix string, token []byte, limit int) (SnapshotPage, error)
	// ReadLogAreaMoves returns, in log order, up to limit entries after
	// position after whose change's area is under one of prefixes (a
	// normalised Scope's), or that moved their record out of such an area,
	// each once, and the position through which the log has been scanned:
	// the last entry's when limit entries were returned, else the end of
	// the log (or after, if later). It returns an error wrapping
	// ErrCompacted when after is before the compacted log.
	ReadLogAreaMoves(ctx context.Context, prefixes []string, after Position, limit int) ([]AreaEntry, Position, error)
}

// MoveSettler is what a server that settles moves (package moves) offers a
// pull, so that no puller is sent a record back in the village a move took
// it out of by a server that can settle it.
type MoveSettler interface {
	// Settle settles, each with a change of the server appended to the log,
	// those of recs that are unsettled moves into its own area, and returns
	// how many it settled.
	Settle(ctx context.Context, recs []Record) (int, error)
	// Away reports whether r, shown in prefixes, is there only because an
	// edit raced a move out of them: a puller of prefixes forgets it, so
	// it is not sent.
	Away(r Record, prefixes []string) bool
}
