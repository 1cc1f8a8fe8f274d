// Package boltstore is the server's syncengine.Store, kept in one bbolt file: a
// township or county server's change log, the state of every record, the
// indexes that let a pull or a snapshot for one village or township read only
// its own data, per-peer cursors, rejections, the device registry, the
// audit trail of admin actions and the staff who may sign in to the web page.
//
// # Transactions and durability
//
// Store.Update is one bbolt read-write transaction and Store.View one read-only
// transaction; syncengine.ReceiveBatch therefore applies a whole batch in one
// transaction, with one commit (two fsyncs) per batch. Commits are synced
// before Update returns, so a batch is durable before it is acknowledged. The
// freelist is a hashmap (bbolt.FreelistMapType) that is not written at each
// commit (NoFreelistSync, as etcd and containerd run bbolt): after a large
// compaction a synced freelist would add megabytes to every commit, and a
// freelist rebuilt from the tree at open cannot be corrupt.
//
// # Bucket layout
//
// Integers in keys and values are big-endian uint64 (8 bytes); ids are their
// 16 raw bytes; area codes are their 12 ASCII digits.
//
//	meta        "schema"    → schema version (8 bytes, currently 10)
//	            "replica"   → the store's own replica id (16 bytes)
//	            "compacted" → log position through which entries were dropped
//	            "logmarks"  → arrival marks of CompactRetained: pairs of Unix
//	                          ms and log position (16 bytes each), oldest first
//	            "x/" + key  → Meta and SetMeta (the upstream relay's state)
//	            "dict"      → the id of the dictionary new log entries use
//	            "dict/" + id → a dictionary of log entries (see logvalue.go)
//	            "txidbase"  → in a file Rewrite wrote, the store's last
//	                          transaction before it (see keyTxidBase)
//	log         position → the change and the peer it came from, packed
//	            with S2 (logvalue.go); written before schema 10, an area
//	            envelope and the syncengine.Change binary
//	            (the bucket's sequence is the last position ever assigned)
//	logfrom     position → the replica id of the peer the change came from,
//	            for entries written before schema 10 (NoteFrom)
//	logarea     area code + position → empty, or the other end of a move
//	            (see below)
//	dots        origin + dot counter → position, + the change id once
//	            compaction has dropped the entry
//	records     record id → syncengine.Record in the keyed compact
//	            encoding, sharing values with the log (below); written
//	            before schema 10, an area envelope and the first encoding
//	recarea     area code + record id → empty
//	cursors     peer id → Cursor.Received + Cursor.Acked
//	rejections  peer id + dot origin + dot counter →
//	            position + change id + outcome (1 byte) + detail (UTF-8)
//	devices     device id → Device as JSON (see deviceJSON)
//	devtokens   token hash (32 bytes) → device id
//	enrolcodes  code hash (32 bytes) → EnrolCode as JSON (see enrolCodeJSON)
//	origins     replica id → id of the relay that pushes its changes (BindOrigins)
//	audit       recorder's replica id + sequence → AuditEntry as JSON (see
//	            auditJSON); the bucket's sequence is the last number this
//	            store gave an entry of its own (AppendAuditTx)
//	audittime   Unix ns of the entry's time + its audit key → empty
//	staff       name (UTF-8) → Staff as JSON (see staffJSON): who may sign in
//	            to the web page, with the password's slow hash
//	devicereports relay's replica id → the device registry it last reported,
//	            whole (see reportJSON); relay's id + 'p' → a report whose
//	            parts are arriving
//
// An area envelope, in values written before schema 10 (the upgrade leaves
// them as they are until they are written again, or Rewrite copies the
// file), is one length byte followed by the area code of the change or of
// the record. Since schema 10 the store reads
// an area from the decoded change or record: it decodes them anyway where
// it needs one (a record it puts, an entry it drops), and the envelope took
// 13 bytes of every value.
//
// A change that moves its record to another area (the record's area before
// the change, as the store's PutRecord found it, is not the change's area) is
// filed in logarea under both areas: under its own area with the old area as
// the value, and under the old area with its own area as the value. A change
// that does not delete (a server settling a move, or an edit made after
// seeing an unsettled one) is also filed under the areas of the existence
// upserts it overwrites; the value of
// its own area's key then lists them all, sorted, 12 bytes each. So a pull of
// the village a household left sees the move, and ReadLogAreaMoves tells a
// reader whether an entry brought its record into the areas read or took it
// out. Compact and ReplaceChange keep the keys together; Check verifies that
// they name each other.
//
// # Records share their values with the log
//
// A change's values would be kept twice, in its log entry and in the state
// of its record. The state is stored in syncengine's compact encoding
// (AppendCompactSharing), which lists each change that wrote the record
// once and marks those whose values it shares: their writes' values are
// read from the change's log entry (found through the dots index) when the
// record is read. Append shares the values of the change it appends with
// the state the PutRecord before it stored (when each of its writes there
// holds the value the change gave); a later PutRecord keeps sharing those
// of the changes the stored state shared that still made its writes. Before
// compaction drops a log entry, or ReplaceChange or RenumberChange rewrites
// one, the state of its record takes those values back, so a state only
// ever shares values the log holds. A record written once is then little
// more than its stamps. A shared
// value the log lacks is damage (ErrCorrupt), for a read and for Check.
//
// Positions come from the log bucket's sequence (NextSequence): strictly
// increasing and never reused, also after compaction. The dots index keeps an
// entry for every change ever appended, compacted or not, so that Seen still
// recognises a retried old change and MaxCounter (a seek to the origin's last
// key) never goes back.
//
// # Snapshots, area pulls and retention
//
// Snapshot reads one page of the records under an area prefix (a township's 9
// digits, a village's 12) through recarea, in (area code, record id) order.
// ReadLogArea and ReadLogAreaMoves read the log entries of the areas under
// some prefixes through logarea, merging the areas' runs in position order. Compact drops log
// entries (and their logarea keys) through a position in bounded transactions
// and records the compaction point; reading the log from before it returns an
// error wrapping syncengine.ErrCompacted, and the reader falls back to a
// snapshot. CompactAcknowledged compacts through what every registered,
// non-revoked device has acknowledged. ForgetOutside deletes the states of
// the records that left a township's areas, keeping the log.
//
// # Damaged files
//
// Open checks the file's bbolt meta pages and size before handing it to bbolt
// (a truncated copy is refused, not mapped), then opens it read-only, with a
// lock timeout, checks the schema and reads every page, and only then opens it
// for writing (when bbolt walks the pages again, on a goroutine of its own, to
// rebuild the freelist). Any panic or memory fault of bbolt on a damaged page
// becomes an error wrapping ErrCorrupt that names the file and says what to
// do. A missing or empty file is created atomically (written beside it,
// synced, then linked or renamed into place); a file that is anything else is
// never replaced. Check runs bbolt's consistency check and verifies the
// store's own indexes.
package boltstore
