-- The sync engine's state on a device: the change log (which is also the
-- outbox), record states, cursors per peer, rejections and open conflicts.
-- Ids (replica, record, change) are 16-byte BLOBs; `hex(id)` shows them.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- The change log in append order. AUTOINCREMENT: a position is never reused,
-- even after old entries are dropped.
CREATE TABLE log (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id  BLOB NOT NULL,
    origin     BLOB NOT NULL,
    counter    INTEGER NOT NULL,
    record_id  BLOB NOT NULL,
    kind       INTEGER NOT NULL,
    area_code  TEXT NOT NULL,
    deletion   INTEGER NOT NULL,
    hlc_wall_ms INTEGER NOT NULL,
    change     BLOB NOT NULL -- the engine's encoding of the change
);
CREATE INDEX log_record ON log (record_id);

-- Every change ever logged, by dot; kept when log entries are dropped so a
-- retried old change is still recognised.
CREATE TABLE dots (
    origin   BLOB NOT NULL,
    counter  INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (origin, counter)
) WITHOUT ROWID;

-- The merged state of every record the replica holds.
CREATE TABLE records (
    record_id BLOB PRIMARY KEY,
    kind      INTEGER NOT NULL,
    area_code TEXT NOT NULL,
    deleted   INTEGER NOT NULL,
    state     BLOB NOT NULL -- the engine's encoding of the record state
) WITHOUT ROWID;
CREATE INDEX records_area ON records (area_code, record_id);

-- What this replica remembers about each peer: how far it has received the
-- peer's log, and how far the peer has acknowledged this replica's log.
CREATE TABLE cursors (
    peer     BLOB PRIMARY KEY,
    received INTEGER NOT NULL,
    acked    INTEGER NOT NULL
) WITHOUT ROWID;

-- Changes of this replica's log that a peer refused for good, for a person to fix.
CREATE TABLE rejections (
    peer      BLOB NOT NULL,
    origin    BLOB NOT NULL,
    counter   INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    change_id BLOB NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    PRIMARY KEY (peer, origin, counter)
) WITHOUT ROWID;

-- Open conflicts, rewritten from the record state whenever it changes.
CREATE TABLE conflicts (
    conflict_id TEXT PRIMARY KEY,
    record_id   BLOB NOT NULL,
    kind        INTEGER NOT NULL,
    area_code   TEXT NOT NULL,
    field       INTEGER NOT NULL,
    writes      INTEGER NOT NULL -- number of concurrent values
) WITHOUT ROWID;
CREATE INDEX conflicts_record ON conflicts (record_id);

-- The outbox as a technician reads it: every change this replica made, with
-- its state towards the server (the replica's only peer on a device).
CREATE VIEW outbox AS
SELECT l.position,
       hex(l.change_id) AS change_id,
       hex(l.record_id) AS record_id,
       l.kind,
       l.area_code,
       CASE
         WHEN r.outcome IS NOT NULL THEN 'rejected'
         WHEN l.position <= (SELECT coalesce(max(acked), 0) FROM cursors) THEN 'acknowledged'
         ELSE 'pending'
       END AS state,
       r.outcome AS reason,
       r.detail
FROM log l
LEFT JOIN rejections r ON r.origin = l.origin AND r.counter = l.counter
WHERE l.origin = (SELECT value FROM meta WHERE key = 'replica_id');
