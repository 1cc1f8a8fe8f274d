-- The read model: one table per record kind, with real columns for what people
-- look up and the full record (encoded fieldsync.v1 body message) in `record`.
-- Rows are rewritten from the merged record state whenever a change is applied,
-- locally or from a sync, in the same transaction. Dates are ISO text
-- (YYYY-MM-DD) and times RFC 3339 text in China Standard Time, so the stock
-- sqlite3 tool shows them readably and they sort correctly.

CREATE TABLE households (
    id             TEXT PRIMARY KEY,
    area_code      TEXT NOT NULL,
    head_name      TEXT NOT NULL,
    address        TEXT NOT NULL,
    status         TEXT NOT NULL,
    record         BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX households_area ON households (area_code);

CREATE TABLE persons (
    id             TEXT PRIMARY KEY,
    area_code      TEXT NOT NULL,
    household_id   TEXT NOT NULL,
    name           TEXT NOT NULL,
    id_masked      TEXT NOT NULL,
    sex            TEXT NOT NULL,
    birth_date     TEXT,
    residency      TEXT NOT NULL,
    chronic        INTEGER NOT NULL, -- 1 when the person has a chronic condition
    record         BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX persons_household ON persons (household_id);
CREATE INDEX persons_area_name ON persons (area_code, name);

CREATE TABLE clinics (
    id             TEXT PRIMARY KEY,
    area_code      TEXT NOT NULL,
    name           TEXT NOT NULL,
    record         BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE workers (
    id             TEXT PRIMARY KEY,
    area_code      TEXT NOT NULL,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    licence_number TEXT NOT NULL,
    record         BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE household_visits (
    id                TEXT PRIMARY KEY,
    area_code         TEXT NOT NULL,
    household_id      TEXT NOT NULL,
    visitor_worker_id TEXT NOT NULL,
    campaign          TEXT NOT NULL,
    started_at        TEXT,
    record            BLOB NOT NULL
) WITHOUT ROWID;
-- Households not yet visited in a campaign.
CREATE INDEX household_visits_campaign ON household_visits (campaign, household_id);

CREATE TABLE clinic_audits (
    id                TEXT PRIMARY KEY,
    area_code         TEXT NOT NULL,
    clinic_id         TEXT NOT NULL,
    auditor_worker_id TEXT NOT NULL,
    audited_at        TEXT,
    record            BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX clinic_audits_clinic ON clinic_audits (clinic_id, audited_at);

CREATE TABLE follow_ups (
    id               TEXT PRIMARY KEY,
    area_code        TEXT NOT NULL,
    person_id        TEXT NOT NULL,
    disease          TEXT NOT NULL,
    followed_up_at   TEXT,
    classification   TEXT NOT NULL,
    next_due_on      TEXT,
    record           BLOB NOT NULL
) WITHOUT ROWID;
-- The latest follow-up per person and disease, and who is due or overdue.
CREATE INDEX follow_ups_person ON follow_ups (person_id, disease, followed_up_at);
CREATE INDEX follow_ups_due ON follow_ups (area_code, next_due_on);

CREATE TABLE problems (
    id               TEXT PRIMARY KEY,
    area_code        TEXT NOT NULL,
    item             TEXT NOT NULL,
    person_id        TEXT NOT NULL,
    source_record_id TEXT NOT NULL,
    severity         TEXT NOT NULL,
    status           TEXT NOT NULL,
    responsible      TEXT NOT NULL,
    deadline         TEXT,
    record           BLOB NOT NULL
) WITHOUT ROWID;
-- Open problems in my villages, by deadline.
CREATE INDEX problems_open ON problems (status, area_code, deadline);

CREATE TABLE risk_flags (
    id               TEXT PRIMARY KEY,
    area_code        TEXT NOT NULL,
    household_id     TEXT NOT NULL,
    person_id        TEXT NOT NULL,
    status           TEXT NOT NULL,
    flagged_at       TEXT,
    record           BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX risk_flags_status ON risk_flags (status, area_code);
