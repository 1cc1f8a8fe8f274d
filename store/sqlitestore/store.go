package sqlitestore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Store is a device replica in one SQLite file. It is safe for concurrent use:
// write transactions are serialised on one connection (BEGIN IMMEDIATE), read
// transactions run on a pool of read-only connections and see a consistent
// snapshot (WAL).
type Store struct {
	path    string
	write   *sql.DB
	read    *sql.DB
	wstmts  *stmtCache // statements prepared on write
	rstmts  *stmtCache // statements prepared on read
	replica syncengine.ReplicaID
	// seal is nil for a clear replica; see seal.go.
	seal atomic.Pointer[sealer]
}

var _ syncengine.Store = (*Store)(nil)

// Open opens the replica file at path, creating it if it does not exist, and
// brings its schema up to date. A file that is not an SQLite database, fails
// its integrity check, or comes from a newer version of fieldsync is refused
// with an error naming the file and what to do (ErrNotReplica, ErrCorrupt,
// ErrNewerSchema); Open never replaces such a file with an empty replica.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := checkFile(path); err != nil {
		return nil, err
	}
	write, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	s := &Store{path: path, write: write}
	if err := s.init(ctx); err != nil {
		write.Close()
		return nil, err
	}
	s.read, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open replica %s: %w", path, err)
	}
	s.read.SetMaxOpenConns(max(2, runtime.GOMAXPROCS(0)))
	s.wstmts, s.rstmts = newStmtCache(s.write), newStmtCache(s.read)
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("%s: %w (%v): move it aside and restore from a backup, or enrol the device again", s.path, ErrNotReplica, err)
	}
	if err := integrityCheck(ctx, s.write, s.path, false); err != nil {
		return err
	}
	if err := migrate(ctx, s.write, s.path); err != nil {
		return err
	}
	var id []byte
	err := s.write.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'replica_id'").Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := rand.Read(s.replica[:]); err != nil {
			return err
		}
		if _, err := s.write.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('replica_id', ?)", s.replica[:]); err != nil {
			return fmt.Errorf("%s: store replica id: %w", s.path, err)
		}
	case err != nil:
		return fmt.Errorf("%s: read replica id: %w", s.path, err)
	case len(id) != len(s.replica):
		return fmt.Errorf("%s: %w: replica id has %d bytes", s.path, ErrCorrupt, len(id))
	default:
		copy(s.replica[:], id)
	}
	var check []byte
	err = s.write.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaSealed).Scan(&check)
	switch {
	case err == nil:
		s.seal.Store(&sealer{}) // locked until Unlock
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: read meta: %w", s.path, err)
	}
	return nil
}

// Path returns the replica file's path.
func (s *Store) Path() string { return s.path }

// Replica returns the replica's id, made when the file was created.
func (s *Store) Replica() syncengine.ReplicaID { return s.replica }

// Close closes the replica. Transactions must have ended.
func (s *Store) Close() error {
	s.wstmts.close()
	s.rstmts.close()
	return errors.Join(s.read.Close(), s.write.Close())
}

// Check runs SQLite's full integrity check (PRAGMA integrity_check) and returns
// an error wrapping ErrCorrupt if it finds a problem.
func (s *Store) Check(ctx context.Context) error {
	return integrityCheck(ctx, s.read, s.path, true)
}

// Update runs fn in a write transaction (BEGIN IMMEDIATE) and commits it if fn
// returns nil; otherwise it rolls back and returns fn's error unchanged.
func (s *Store) Update(ctx context.Context, fn func(syncengine.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sqlTx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", s.path, err)
	}
	defer s.wstmts.flush(ctx)
	if err := fn(&tx{readTx: readTx{tx: sqlTx, stmts: s.wstmts, seal: s.seal.Load()}}); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", s.path, err)
	}
	return nil
}

// View runs fn in a read-only transaction that sees one consistent snapshot.
func (s *Store) View(ctx context.Context, fn func(syncengine.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sqlTx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%s: begin read: %w", s.path, err)
	}
	defer s.rstmts.flush(ctx)
	defer sqlTx.Rollback()
	return fn(&readTx{tx: sqlTx, stmts: s.rstmts, seal: s.seal.Load()})
}

// Meta returns the value stored under key by SetMeta, or nil.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.read.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

// SetMeta stores value under key (for the SDK: server address, device token,
// ID-hash key). Keys starting with "replica_" are reserved.
func (s *Store) SetMeta(ctx context.Context, key string, value []byte) error {
	return setMeta(ctx, s.write, key, value)
}

// SetMeta stores value under key in the transaction, so that it commits
// with its other writes (a pull cursor with its batch).
func (t *tx) SetMeta(ctx context.Context, key string, value []byte) error {
	if key == "" || strings.ContainsRune(key, 0) {
		return fmt.Errorf("sqlitestore: meta key %q", key)
	}
	_, err := t.exec(ctx, metaUpsert, key, append([]byte{}, value...))
	return err
}

// Meta returns the value stored under key, in the transaction, or nil.
func (t *readTx) Meta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := t.queryRow(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

const metaUpsert = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"

func setMeta(ctx context.Context, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, key string, value []byte) error {
	_, err := db.ExecContext(ctx, metaUpsert, key, value)
	return err
}

// RaiseCounterFloor raises to n the counter the replica's next own change
// numbers after (MaxCounter), if it is below: the server's highest dot of
// this replica, which a replica restored from an older copy of itself is
// behind. Its new changes then never reuse a dot the server holds. When it
// raises the floor it also empties the meta values of reset, in the same
// transaction (the pull token, so that the next pull is a snapshot that
// brings back what the older copy lacked), and reports true.
func (s *Store) RaiseCounterFloor(ctx context.Context, n uint64, reset ...string) (bool, error) {
	raised := false
	err := s.Update(ctx, func(st syncengine.Tx) error {
		raised = false
		have, err := st.MaxCounter(ctx, s.replica)
		if err != nil || n <= have {
			return err
		}
		if err := st.SetMeta(ctx, "counter_floor", []byte(strconv.FormatUint(n, 10))); err != nil {
			return err
		}
		for _, key := range reset {
			if err := st.SetMeta(ctx, key, []byte{}); err != nil {
				return err
			}
		}
		raised = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: raise the counter floor: %w", s.path, err)
	}
	return raised, nil
}
