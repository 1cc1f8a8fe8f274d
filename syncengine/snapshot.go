package syncengine

import "errors"

// ErrCompacted is returned (wrapped) by a store's ReadTx.ReadLog when the
// entries after the requested position have been dropped by log retention. The
// caller falls back to a snapshot of current state.
var ErrCompacted = errors.New("syncengine: log compacted past cursor")

// SnapshotPage is one page of a snapshot: the current state of records whose
// area starts with a prefix, in the store's key order (area code, then record
// id), read in one transaction.
//
// A snapshot read page by page is not one atomic read: a record may be newer
// than AsOf of the first page. That is safe because changes are idempotent: the
// reader continues incrementally after the first page's AsOf, and changes it
// already holds through a snapshot record are no-ops when they arrive again.
type SnapshotPage struct {
	// Records holds the state of each record of the page, deleted ones
	// included (their tombstones still take part in merges).
	Records []Record
	// AsOf is the log position the page was read at: every change at or before
	// it is reflected in the page's records.
	AsOf Position
	// Next is the opaque token to pass for the following page, or nil when this
	// was the last page.
	Next []byte
}
