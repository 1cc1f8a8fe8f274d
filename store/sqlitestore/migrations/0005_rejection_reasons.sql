-- A rejection's reason code and the field errors of the record the change
-- would have left, so the phone keeps one copy of each rejection, written
-- with the receipt. On a sealed replica its detail and field errors are
-- sealed (sealed = 1), bound to the change id: they may quote a reading. The
-- rows of a replica sealed before this step are sealed at its next Unlock.
ALTER TABLE rejections ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE rejections ADD COLUMN fields BLOB;
ALTER TABLE rejections ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
