package syncengine

import "context"

// Position is a place in one replica's change log. Positions are assigned by
// the log's owner, strictly increasing in append order; 0 is before the first
// entry. A position means nothing to any other replica's log.
type Position uint64

// Entry is one change in a log, with its position.
type Entry struct {
	Pos    Position
	Change Change
	// From is the peer this replica received the change from, where the
	// store keeps it (NoteFrom); zero for the replica's own changes and
	// where it is not kept. A replica never sends a peer what came from it.
	From ReplicaID
}

// Cursor is what a replica remembers about one peer.
type Cursor struct {
	// Received is the position in the peer's log through which this replica
	// has durably received the peer's changes (applied them, already had
	// them, or refused them for good). It is written in the same transaction
	// as the changes it covers, and is the authority a peer resumes from.
	Received Position
	// Acked is the position in this replica's own log through which the peer
	// has acknowledged receiving. It is the sender's copy of the peer's
	// Received, used to know what is still unsent.
	Acked Position
}

// Rejection records, at the sender, that a peer refused one of its changes for
// good (for example because the record failed validation). The change stays in
// the sender's log; the rejection is how the device shows it to the user to fix.
type Rejection struct {
	Peer    ReplicaID
	Pos     Position // the change's position in the sender's log
	ID      ChangeID
	Dot     Dot
	Outcome Outcome
	Detail  string
	// Reason and Fields are the peer's reason code and field errors
	// (ChangeResult).
	Reason string
	Fields []FieldError
}

// Store is the storage a replica's sync sessions and local writes run against:
// a change log, the state of every record, and cursors per peer. It is declared
// here, by its user; syncengine/memstore is the in-memory reference
// implementation.
//
// A Store must be safe for concurrent use. Update transactions must be
// serializable with respect to each other and to View transactions, and
// atomic: when fn returns an error, or the process dies before Update returns
// nil, none of fn's writes may be visible afterwards.
type Store interface {
	// Update runs fn in a read-write transaction and commits it if fn returns
	// nil. It returns fn's error (unchanged, so errors.Is works) or a commit
	// error. It returns ctx.Err() without running fn if ctx is already done.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction and returns its error.
	View(ctx context.Context, fn func(ReadTx) error) error
}

// ReadTx reads one consistent snapshot of a store. A ReadTx (and a Tx) is only
// valid during the call of the function it was passed to, and is not safe for
// concurrent use. Values it returns belong to the caller: the store keeps no
// reference to them and the caller may keep them after the transaction.
// Errors other than those documented are storage failures.
type ReadTx interface {
	// Record returns the state of record id, or the zero Record if no change
	// to it has been stored.
	Record(ctx context.Context, id RecordID) (Record, error)
	// Seen reports whether the log holds the change with dot d.
	Seen(ctx context.Context, d Dot) (bool, error)
	// MaxCounter returns the highest dot counter of origin's changes in the
	// log, or 0. A replica's next local change takes MaxCounter(self)+1.
	MaxCounter(ctx context.Context, origin ReplicaID) (uint64, error)
	// ReadLog returns up to limit entries with positions after after, in log
	// order. Fewer than limit entries means the end of the log was reached.
	ReadLog(ctx context.Context, after Position, limit int) ([]Entry, error)
	// Cursor returns what this replica remembers about peer (zero if nothing).
	Cursor(ctx context.Context, peer ReplicaID) (Cursor, error)
	// RecordsInArea returns the states of the stored records of the given
	// kinds whose area is exactly area (a village's registry, for the rules
	// that compare a survey with it), deleted ones included, in record-id
	// order.
	RecordsInArea(ctx context.Context, area string, kinds ...Kind) ([]Record, error)
	// Meta returns the value the program stored under key with SetMeta, or
	// nil: small state it reads and writes with the sync's own (a pull
	// cursor with the batch it follows, a device's clock with its saves).
	Meta(ctx context.Context, key string) ([]byte, error)
}

// FromAppender is what a store's transaction may offer to append a change
// received from a peer together with that peer (Tx.Append, then
// Tx.NoteFrom, otherwise): a store that keeps the peer in the change's log
// entry then writes the entry once.
type FromAppender interface {
	AppendFrom(ctx context.Context, c Change, from ReplicaID) (Position, error)
}

// Tx is a read-write transaction. Reads see the transaction's own writes.
type Tx interface {
	ReadTx
	// PutRecord stores r as the state of record r.ID(), replacing any.
	PutRecord(ctx context.Context, r Record) error
	// Append adds c at the end of the log and returns its position. It
	// returns an error wrapping ErrDotExists if the log holds c.Dot already.
	Append(ctx context.Context, c Change) (Position, error)
	// NoteFrom records that the change at pos was received from peer from,
	// for ReadLog's Entry.From. A store that keeps no such record (a phone,
	// which sends only its own changes) does nothing.
	NoteFrom(ctx context.Context, pos Position, from ReplicaID) error
	// ReplaceChange overwrites the change at pos with c, which must have the
	// same dot (only a device's unsent changes are rewritten, when their
	// stamps are corrected). It returns an error wrapping ErrNoEntry if pos
	// holds no change or one with another dot.
	ReplaceChange(ctx context.Context, pos Position, c Change) error
	// SetCursor stores what this replica remembers about peer.
	SetCursor(ctx context.Context, peer ReplicaID, c Cursor) error
	// SetMeta stores value under key (a non-empty key without NUL bytes),
	// replacing any; Meta reads it (an empty value may read as nil).
	SetMeta(ctx context.Context, key string, value []byte) error
	// PutRejection records that a peer refused a change of this replica's log
	// for good, replacing any rejection of the same dot by the same peer.
	PutRejection(ctx context.Context, r Rejection) error
}
