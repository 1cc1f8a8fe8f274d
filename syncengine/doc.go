// Package syncengine decides what every fieldsync replica believes. It holds
// hybrid logical clocks, dots and version vectors, changes, the per-field merge
// of a record's state with its conflicts, and the push/pull session logic,
// written against a small Store interface that storage packages implement. It
// does no I/O, starts no goroutines and never reads the clock: time is passed
// in as milliseconds, and storage comes in through Store.
//
// # Changes and causality
//
// Every replica (phone, township server, county server) has a ReplicaID and
// numbers the changes it makes 1, 2, 3, ...: the pair is the change's Dot, and
// names it everywhere. A Change writes one record: a set of top-level fields
// (field number to encoded protobuf bytes, never interpreted here, so fields
// unknown to this build travel untouched) or a delete. It carries the record's
// VersionVector as its author saw it, its Context: the change overwrites
// exactly the writes whose dots that vector contains. A change whose context
// does not contain another write is concurrent with it. Wall-clock time plays
// no part in deciding what overwrites what.
//
// # The merge rule
//
// A record's state keeps, for each field, the set of writes to it that no
// later write has overwritten (a multi-value register, like Dynamo's
// siblings), plus the join of the contexts of all writes to the field. Apply
// merges a change into it, field by field: join the change's context into the
// field's context, drop the writes that context now contains, and add the
// change's write unless the context contains it (a change that arrives after
// one that overwrote it). Fields the change does not set are not touched.
//
// This is a join of sets, so it is commutative, associative and idempotent: a
// record's state is a function of the set of changes applied to it. Replicas
// that have seen the same changes hold byte-identical states (Record.Digest),
// whatever order the changes came in, through whichever path, however often.
// It needs no causal delivery either: a change that arrives before a change it
// overwrote is already in place when the older one comes, and the older one
// is then dropped for the fields the newer one set and kept for the others.
//
// # Conflicts
//
// When a field ends with several surviving writes, they were made
// concurrently. The one with the highest (Stamp, origin) is the shown value, on
// every replica alike. If the surviving values differ, the field has an open
// Conflict (named by record and field, ConflictID) listing every surviving
// write with its dot, stamp and origin, for a person to review: nothing is
// resolved silently and no write is lost. Concurrent writes of the same value
// are not a conflict.
//
// A resolution is an ordinary change that sets the field (to either value, or
// a new one) with a context containing the conflicting writes, which is the
// case for any change made after seeing the conflict. Applying it overwrites
// them; a conflicting write that arrives after the resolution is overwritten
// on arrival. So the conflict closes on every replica, in any order. A write
// concurrent with the resolution itself reopens it, as it should.
//
// # Deletes and existence
//
// Whether a record exists is kept as one more field, ExistenceField (number
// 0), that every change writes: an upsert writes "alive", a delete writes
// "deleted" (both with the change's area code, which is how the record's area
// follows moves). So a delete only overwrites the upserts its author had seen.
// The record is alive while any surviving existence write is an upsert: a
// delete concurrent with an update keeps the record alive and opens a conflict
// on ExistenceField, which a person resolves by deleting again or by keeping
// (any upsert made after seeing the conflict, even one setting no fields). A
// deleted record keeps its field values as a tombstone; an upsert that
// causally follows the delete brings it back. Concurrent moves to different
// areas are not a conflict: the shown area is the winning upsert's.
//
// # Clocks
//
// Stamps (wall ms, counter, replica) from a hybrid logical clock only order
// concurrent writes. Phones' clocks are wrong, so a server refuses changes
// stamped further ahead than its configured skew (ErrClockSkew,
// OutcomeClockSkew), and a device corrects its clock from the server time in
// the handshake and re-stamps its unsent changes (CorrectClock, Restamp).
//
// # Logs, batches and cursors
//
// Every replica appends its own changes and every change it receives to its
// log, so a township relays its phones' changes to the county exactly as a
// phone sends its own. NextBatch reads what a peer has not acknowledged;
// ReceiveBatch skips dots already seen, validates and applies the rest, and
// moves the receiver's cursor for the sender in the same transaction, so a
// retry after a cut link resends from the last durable position and nothing is
// stored twice. A change refused for good (invalid, out of scope) is passed by
// the cursor and recorded as a Rejection at the sender by Acknowledge, so one
// bad record never blocks the queue behind it; a clock-skew refusal stops the
// batch instead, until the device has corrected its clock.
//
// Record states are a join semilattice too: Merge joins two states of a record
// into the state of all their changes, so a replica can take in a snapshot of
// record states without losing writes it holds that the snapshot lacks.
//
// # Pull
//
// A server's log is read by area: a puller gets what lies in its areas.
// Puller reads an AreaLog (the records by area, page by page, and the log by
// area, each entry saying whether it moved its record into the areas read or
// out of them): a snapshot of the areas when the puller has no cursor, then
// the log after the snapshot's start; from a cursor, the log after it; and
// a snapshot again when the log was compacted past the cursor, or the
// cursor was issued for other areas (after first sending the changes that
// took records out of the areas since it, which a snapshot cannot tell). A
// record moved into the areas goes whole, before the change that moved it.
// Each page carries the PullCursor to resume from, which the server hands
// out encoded. The puller stores each page with that cursor in one
// transaction (ReceivePulledTx): the records merged, then the changes, noted
// as received from the server, without positions, since a pull's cursor is
// the server's, not the puller's.
package syncengine
