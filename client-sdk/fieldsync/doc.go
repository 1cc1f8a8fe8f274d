// Package fieldsync is the device side of fieldsync for Go apps: a replica in
// one SQLite file that records survey work offline (Save, Get and the daily
// queries) and syncs it with the township server over gRPC (Enroll, Sync,
// Status).
//
// A Client is safe for concurrent use; Sync calls are serialised. Records
// passed to and returned from the Client belong to the caller.
//
// Sync is resumable: every batch it receives is stored in one transaction of
// the replica, and the server's pull cursor is written after that commit, so
// a cut connection or a crash makes the next Sync receive at most one batch
// again (applying a batch twice changes nothing), never lose one. Pushes
// resume from the position the server reports in its handshake.
package fieldsync
