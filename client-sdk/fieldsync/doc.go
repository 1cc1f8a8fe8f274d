// Package fieldsync is the device side of fieldsync for Go apps: a replica in
// one SQLite file that records survey work offline and syncs it with the
// township server over gRPC.
//
// # Records
//
// Save stores any record as a local change after survey.Validate; Get and
// List read records back (List returns every live record of a kind, ordered
// by id). Typed wrappers cover the kinds a village doctor edits: Households,
// Household and SaveHousehold, and the same for Person, HouseholdVisit,
// ClinicAudit, FollowUp and Problem. ParseKind turns names such as
// "household" or "visit" into record kinds. DuePatients (every hypertension
// and diabetes patient due or overdue for a follow-up, never followed up
// included), UnvisitedHouseholds and OpenProblems are the daily queries;
// Conflicts shows concurrent edits for a person to resolve. Records passed to
// the Client are not modified or retained; records returned belong to the
// caller.
//
// # Sync
//
// Enroll exchanges a one-time code for a device token; Sync then runs rounds
// of handshake, push of the device's changes and pull of the server's; Status
// tells what is pending, what the server rejected and how the last Sync
// ended. OnProgress reports a round's progress (attempt, phase, counts).
//
// Sync is resumable: every batch it receives is stored in one transaction of
// the replica together with the server's pull cursor after it, so a cut
// connection or a crash makes the next attempt resume exactly after the last
// batch kept (and a batch received twice would change nothing). Pushes
// resume from the position both ends agree the server holds.
//
// Sync retries transient failures itself — server unreachable or
// restarting, a cut or stalled connection, one RPC past its deadline — with
// exponential backoff and jitter (1 s, ×1.6, ±20 %, at most 2 min; 5
// attempts), which WithRetry changes; ctx bounds the whole. Permanent
// failures return at once: not enrolled, another server, a revoked or
// unknown token, a refused request, a certificate the CA did not sign.
//
// # Transport
//
// Connections are tuned for 2G links (20 kbit/s, 1.3 s round trips):
// gzip-compressed messages, keepalive pings every 60 s only while a stream is
// open, connection attempts of at least 20 s, and per-RPC deadlines scaled to
// the payload (five round trips plus the bytes at 20 kbit/s). A pull stream
// on which no message arrives for that long is cancelled and the attempt
// retried, so a stalled link never hangs Sync.
//
// Deployments use TLS with the county's CA: open the client WithTLS. Without
// it the client speaks plaintext to loopback addresses only (development and
// tests) and Enroll and Sync to any other address fail with ErrTLSRequired
// before dialing; the device token is never sent in the clear to another
// machine. WithDialOptions adds gRPC dial options (a custom dialer).
//
// # Concurrency
//
// A Client is safe for concurrent use; Sync calls are serialised.
package fieldsync
