-- Live records shown elsewhere than their area_code names, or without one
-- (package moves: Misplaced), which ForgetOutside looks at again. Every live
-- record is marked once, so the first check after this step looks at them all.
ALTER TABLE records ADD COLUMN misplaced INTEGER NOT NULL DEFAULT 0;
UPDATE records SET misplaced = 1 WHERE deleted = 0;
CREATE INDEX records_misplaced ON records (record_id) WHERE misplaced = 1;

-- Records a fresh snapshot has not brought (yet): marked when it begins,
-- cleared by every write of the record, dropped when it ends (MarkUnseen,
-- DropUnseen).
ALTER TABLE records ADD COLUMN unseen INTEGER NOT NULL DEFAULT 0;
CREATE INDEX records_unseen ON records (record_id) WHERE unseen = 1;
