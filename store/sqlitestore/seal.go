package sqlitestore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/syncengine"
)

// A replica's people are sealed when the app gives the store a key (Unlock):
// every record state, log entry and read-model record is encrypted with
// AES-256-GCM, bound to its row (the record or change id is the additional
// data, so a sealed value cannot be moved to another row), and the read-model
// columns that name or identify a person (names, head of household, address,
// masked ID number, birth date, licence number, who is responsible) are left
// empty. What stays in clear is what the sync needs to find rows: ids, kinds,
// area codes, deletion flags, log positions and dots, statuses, severities and
// the dates of visits, follow-ups and deadlines. Without the key, the file
// shows no name, address or ID digit; with it, every query and sync works as
// on a clear replica.

// Errors of a sealed replica.
var (
	// ErrLocked is returned by every read or write of a sealed replica's
	// records before Unlock.
	ErrLocked = errors.New("the replica's records are encrypted: open it with its key")
	// ErrWrongKey is returned by Unlock with a key other than the one the
	// replica was sealed with.
	ErrWrongKey = errors.New("the key given is not the replica's key")
	// ErrScrubPending is returned by Unlock when the replica is sealed and
	// usable but the file could not yet be rid of the clear pages the sealing
	// left (no free space for VACUUM, a reader holding the write-ahead log);
	// the next Unlock tries again.
	ErrScrubPending = errors.New("the replica is sealed, but its old clear pages are still in the file")
)

// metaSealed marks a sealed replica: the check value sealed with its key;
// metaScrub a sealed replica whose clear pages may still be in the file.
const (
	metaSealed = "replica_sealed"
	metaScrub  = "replica_scrub"
)

// sealCheck is the plaintext of metaSealed.
var sealCheck = []byte("fieldsync replica sealed v1")

// sealer seals a sealed replica's values. A nil sealer is a clear replica;
// one without aead is a sealed replica not yet unlocked.
type sealer struct {
	aead cipher.AEAD
}

// seal returns b sealed for the row named by aad (nonce, then ciphertext), or
// b itself on a clear replica.
func (s *sealer) seal(b []byte, aad ...[]byte) ([]byte, error) {
	if s == nil {
		return b, nil
	}
	if s.aead == nil {
		return nil, ErrLocked
	}
	n := s.aead.NonceSize()
	out := make([]byte, n, n+len(b)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out, b, bytes.Join(aad, nil)), nil
}

// open reverses seal.
func (s *sealer) open(b []byte, aad ...[]byte) ([]byte, error) {
	if s == nil {
		return b, nil
	}
	if s.aead == nil {
		return nil, ErrLocked
	}
	n := s.aead.NonceSize()
	if len(b) < n {
		return nil, fmt.Errorf("%w: sealed value of %d bytes", ErrCorrupt, len(b))
	}
	out, err := s.aead.Open(nil, b[:n], b[n:], bytes.Join(aad, nil))
	if err != nil {
		return nil, fmt.Errorf("%w: a sealed value does not open with the replica's key (damaged, or moved from another row)", ErrCorrupt)
	}
	return out, nil
}

// personal is v for a read-model column that identifies a person: itself on
// a clear replica, empty on a sealed one (the sealed record has it).
func (s *sealer) personal(v string) string {
	if s != nil {
		return ""
	}
	return v
}

// personalDate is personal for a nullable date column.
func (s *sealer) personalDate(v any) any {
	if s != nil {
		return nil
	}
	return v
}

// The additional data of each sealed column names its table, so that a value
// cannot be moved from one table to another either.
var (
	aadState           = []byte("records.state:")
	aadChange          = []byte("log.change:")
	aadRejection       = []byte("rejections.fields:")
	aadRejectionDetail = []byte("rejections.detail:")
)

// Sealed reports whether the replica's records are sealed with a key.
func (s *Store) Sealed() bool { return s.seal.Load() != nil }

// Unlock gives the store the key of its sealed records, 32 bytes the app keeps
// outside the replica (the SDK derives it from its secret key). A clear
// replica is sealed with it: in one transaction every record state, log entry
// and read-model row is rewritten sealed, then the file is vacuumed so that no
// clear copy stays in free pages or the write-ahead log. A sealed replica
// checks the key and returns ErrWrongKey for another. Call it once, after Open
// and before any other use.
func (s *Store) Unlock(ctx context.Context, key []byte) error {
	if len(key) != 32 {
		return fmt.Errorf("%s: a replica key of %d bytes, want 32", s.path, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	sl := &sealer{aead: aead}
	check, err := s.Meta(ctx, metaSealed)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	if len(check) > 0 {
		got, err := sl.open(check, []byte(metaSealed))
		if err != nil || !bytes.Equal(got, sealCheck) {
			return fmt.Errorf("%s: %w", s.path, ErrWrongKey)
		}
		s.seal.Store(sl)
		if err := s.sealOldRejections(ctx, sl); err != nil {
			return fmt.Errorf("%s: seal rejections: %w", s.path, err)
		}
	} else {
		// Stored first, so that no write can come between the sealing's
		// commit and the store knowing it is sealed; taken back if the
		// sealing fails.
		s.seal.Store(sl)
		if err := s.sealAll(ctx, sl); err != nil {
			s.seal.Store(nil)
			return fmt.Errorf("%s: seal the replica: %w", s.path, err)
		}
	}
	return s.scrub(ctx)
}

// scrub finishes a sealing: VACUUM rewrites the file from the sealed rows
// only, and the checkpoint empties the write-ahead log, which held the clear
// pages' frames. The sealing's transaction marks the replica to scrub
// (metaScrub), and the mark goes only when both have run, so a scrub that
// failed (VACUUM needs about the file's size again in free space) runs again
// at the next Unlock.
func (s *Store) scrub(ctx context.Context) error {
	if v, err := s.Meta(ctx, metaScrub); err != nil || len(v) == 0 {
		return err
	}
	if _, err := s.write.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("%s: %w: VACUUM (it needs free space about the replica's size) runs again at the next open: %v", s.path, ErrScrubPending, err)
	}
	var busy, frames, done int
	if err := s.write.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("%s: %w: the checkpoint runs again at the next open: %v", s.path, ErrScrubPending, err)
	}
	if busy != 0 {
		return fmt.Errorf("%s: %w: the write-ahead log is in use; the checkpoint runs again at the next open", s.path, ErrScrubPending)
	}
	if _, err := s.write.ExecContext(ctx, "DELETE FROM meta WHERE key = ?", metaScrub); err != nil {
		return err
	}
	_, err := s.write.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}

// sealAll seals a clear replica's rows with sl in one transaction.
func (s *Store) sealAll(ctx context.Context, sl *sealer) error {
	return s.sealing(ctx, sl, func(clear, sealed *tx) (bool, error) {
		return true, sealAllIn(ctx, clear, sealed, sl)
	})
}

// sealing runs fn in one write transaction, seen through clear (reading
// rows as stored) and sealed (writing them sealed with sl), and commits if
// fn reports it wrote and returned no error.
func (s *Store) sealing(ctx context.Context, sl *sealer, fn func(clear, sealed *tx) (bool, error)) error {
	sqlTx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer s.wstmts.flush(ctx) // after the rollback: it takes the pool's one connection
	defer sqlTx.Rollback()
	clear := &tx{readTx: readTx{tx: sqlTx, stmts: s.wstmts}}
	sealed := &tx{readTx: readTx{tx: sqlTx, stmts: s.wstmts, seal: sl}}
	wrote, err := fn(clear, sealed)
	if err != nil || !wrote {
		return err
	}
	return sqlTx.Commit()
}

// sealAllIn seals every row of a clear replica (read through clear,
// written through sealed) and marks it sealed and to scrub.
func sealAllIn(ctx context.Context, clear, sealed *tx, sl *sealer) error {
	// The read model is built again from the sealed states.
	for _, table := range readModelTables {
		if _, err := sealed.exec(ctx, "DELETE FROM "+table); err != nil {
			return err
		}
	}
	var after syncengine.RecordID
	for {
		page, err := clear.recordPage(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, r := range page {
			if err := sealed.PutRecord(ctx, r); err != nil {
				return err
			}
			after = r.ID()
		}
		if len(page) < 500 {
			break
		}
	}
	if err := sealLog(ctx, clear, sealed, sl); err != nil {
		return err
	}
	if _, err := sealRejections(ctx, clear, sealed, sl); err != nil {
		return err
	}
	check, err := sl.seal(sealCheck, []byte(metaSealed))
	if err != nil {
		return err
	}
	if _, err := sealed.exec(ctx, metaUpsert, metaSealed, check); err != nil {
		return err
	}
	_, err = sealed.exec(ctx, metaUpsert, metaScrub, []byte{1})
	return err
}

// recordPage returns up to limit record states with ids after after, in id
// order, deleted ones included.
func (t *readTx) recordPage(ctx context.Context, after syncengine.RecordID, limit int) ([]syncengine.Record, error) {
	rows, err := t.query(ctx, "SELECT record_id, state FROM records WHERE record_id > ? ORDER BY record_id LIMIT ?", after[:], limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []syncengine.Record
	for rows.Next() {
		var id, b []byte
		if err := rows.Scan(&id, &b); err != nil {
			return nil, err
		}
		r, err := t.decodeRecord(id, b)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// decodeRecord opens and decodes the state b of the record with id.
func (t *readTx) decodeRecord(id, b []byte) (syncengine.Record, error) {
	var r syncengine.Record
	plain, err := t.seal.open(b, aadState, id)
	if err == nil && len(id) != len(syncengine.RecordID{}) {
		err = fmt.Errorf("a record id of %d bytes", len(id))
	}
	if err == nil {
		err = r.UnmarshalCompactKeyed(plain, syncengine.RecordID(id), nil)
	}
	if err == nil && r.ID() != syncengine.RecordID(id) {
		err = fmt.Errorf("the state of record %v", r.ID())
	}
	if err != nil {
		return syncengine.Record{}, fmt.Errorf("decode record %x: %w", id, err)
	}
	return r, nil
}

// encodeRecord encodes and seals r's state, in the keyed compact encoding
// (migration 0006; states written before, in the first encoding, read too).
func (t *readTx) encodeRecord(r syncengine.Record) ([]byte, error) {
	id := r.ID()
	return t.seal.seal(r.AppendCompactKeyed(nil, nil), aadState, id[:])
}

// decodeChange opens and decodes the log entry b of the change with id.
func (t *readTx) decodeChange(id, b []byte) (syncengine.Change, error) {
	var c syncengine.Change
	plain, err := t.seal.open(b, aadChange, id)
	if err == nil {
		err = c.UnmarshalBinary(plain)
	}
	return c, err
}

// encodeChange encodes and seals c.
func (t *readTx) encodeChange(c syncengine.Change) ([]byte, error) {
	b, err := c.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return t.seal.seal(b, aadChange, c.ID[:])
}

// rowRecord opens and decodes into m the encoded record b of read-model
// table's row id.
func (t *readTx) rowRecord(table, id string, b []byte, m proto.Message) error {
	plain, err := t.seal.open(b, []byte(table+".record:"+id))
	if err == nil {
		err = proto.Unmarshal(plain, m)
	}
	if err != nil {
		return fmt.Errorf("read %s %s: %w", table, id, err)
	}
	return nil
}

// sealRejections seals the detail and field errors of every rejection not
// sealed yet (read through clear, written through sealed), and returns how
// many it sealed.
func sealRejections(ctx context.Context, clear, sealed *tx, sl *sealer) (int, error) {
	rows, err := clear.query(ctx, "SELECT peer, origin, counter, change_id, detail, fields FROM rejections WHERE sealed = 0")
	if err != nil {
		return 0, err
	}
	type row struct {
		peer, origin, id, detail, fields []byte
		counter                          int64
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.peer, &r.origin, &r.counter, &r.id, &r.detail, &r.fields); err != nil {
			rows.Close()
			return 0, err
		}
		all = append(all, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	for _, r := range all {
		detail, err := sl.seal(r.detail, aadRejectionDetail, r.id)
		if err != nil {
			return 0, err
		}
		var fields []byte
		if r.fields != nil {
			if fields, err = sl.seal(r.fields, aadRejection, r.id); err != nil {
				return 0, err
			}
		}
		if _, err := sealed.exec(ctx, "UPDATE rejections SET detail = ?, fields = ?, sealed = 1 WHERE peer = ? AND origin = ? AND counter = ?",
			detail, fields, r.peer, r.origin, r.counter); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}

// sealOldRejections seals, on a replica sealed before rejections' details
// were, the rows kept in clear, and marks the file to scrub.
func (s *Store) sealOldRejections(ctx context.Context, sl *sealer) error {
	return s.sealing(ctx, sl, func(clear, sealed *tx) (bool, error) {
		n, err := sealRejections(ctx, clear, sealed, sl)
		if err != nil || n == 0 {
			return false, err
		}
		_, err = sealed.exec(ctx, metaUpsert, metaScrub, []byte{1})
		return true, err
	})
}

// sealLog seals every log entry's change (read through clear, written
// through sealed), in pages.
func sealLog(ctx context.Context, clear, sealed *tx, sl *sealer) error {
	for last := int64(0); ; {
		rows, err := clear.query(ctx, "SELECT position, change_id, change FROM log WHERE position > ? ORDER BY position LIMIT 500", last)
		if err != nil {
			return err
		}
		type entry struct {
			pos      int64
			id, data []byte
		}
		var page []entry
		for rows.Next() {
			var e entry
			if err := rows.Scan(&e.pos, &e.id, &e.data); err != nil {
				rows.Close()
				return err
			}
			page = append(page, e)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, e := range page {
			b, err := sl.seal(e.data, aadChange, e.id)
			if err != nil {
				return err
			}
			if _, err := sealed.exec(ctx, "UPDATE log SET change = ? WHERE position = ?", b, e.pos); err != nil {
				return err
			}
			last = e.pos
		}
		if len(page) < 500 {
			break
		}
	}
	return nil
}
