-- Live records of one kind in id order, for the SDK's typed lists.
CREATE INDEX records_kind ON records (kind, record_id) WHERE deleted = 0;
