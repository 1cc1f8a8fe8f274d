-- Record states are written in the engine's keyed compact encoding
-- (syncengine.Record.AppendCompactKeyed: each change that wrote a record
-- listed once, the id left to the row's key), about half the bytes of the
-- first encoding. States written before read as they are and are written
-- compactly when their record next changes; the version bump keeps older
-- builds, which read the first encoding only, from opening the replica.
SELECT 1;
