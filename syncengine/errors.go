package syncengine

import "errors"

// Sentinel errors. Functions wrap them with %w and a detail, so test for them with
// errors.Is.
var (
	// ErrClockSkew is returned when a remote stamp is further ahead of the local
	// (corrected) wall clock than the clock's configured maximum skew.
	ErrClockSkew = errors.New("syncengine: stamp too far in the future")

	// ErrInvalidChange is returned when a change is structurally invalid: a
	// missing id, a dot that does not belong to its origin, a bad area code, a
	// reserved field number, a delete that also sets fields, and the like.
	ErrInvalidChange = errors.New("syncengine: invalid change")

	// ErrRecordMismatch is returned when a change is applied to the state of
	// another record, or names another kind than the record already has.
	ErrRecordMismatch = errors.New("syncengine: change does not match record")

	// ErrMalformed is returned when bytes given to a decoder are not a valid,
	// canonical encoding. Decoders never panic on any input.
	ErrMalformed = errors.New("syncengine: malformed encoding")

	// ErrCursorGap is returned when a batch starts after the receiver's cursor
	// for its sender, so that applying it would skip changes. Nothing is stored;
	// the sender must resend from the receiver's cursor.
	ErrCursorGap = errors.New("syncengine: batch starts after receiver cursor")

	// ErrInvalidBatch is returned when a batch's positions are not strictly
	// increasing within (After, Through].
	ErrInvalidBatch = errors.New("syncengine: invalid batch")

	// ErrDotExists is returned by a store's Tx.Append when the log already holds
	// a change with the same dot. The session logic checks Seen first, so it
	// never triggers this; it guards the "stored exactly once" invariant.
	ErrDotExists = errors.New("syncengine: dot already logged")

	// ErrNoEntry is returned by a store's Tx.ReplaceChange when no log entry
	// exists at the position, or the entry there has another dot.
	ErrNoEntry = errors.New("syncengine: no such log entry")

	// ErrOutOfScope may be returned (wrapped) by a batch validator to refuse a
	// change outside the sender's areas; the change is then reported with
	// OutcomeOutOfScope rather than OutcomeInvalid.
	ErrOutOfScope = errors.New("syncengine: change outside sender's scope")
)
