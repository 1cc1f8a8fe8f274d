package boltstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/syncengine"
)

var (
	_ syncengine.Store   = (*Store)(nil)
	_ syncengine.AreaLog = (*Store)(nil)
)

// Sentinel errors. They are returned wrapped, with the file's path or the
// offending value, so test for them with errors.Is.
var (
	// ErrNotStore is returned by Open when the file exists but is not a
	// fieldsync bbolt store (another kind of file, random bytes, zeros, or a
	// bbolt file of another program).
	ErrNotStore = errors.New("not a fieldsync store")

	// ErrCorrupt is returned by Open and Check when the file is a fieldsync
	// store that is damaged: truncated, with damaged pages, or with indexes
	// that disagree with the data.
	ErrCorrupt = errors.New("store file is damaged")

	// ErrNewerSchema is returned by Open when the file was written by a newer
	// version of fieldsync than this one.
	ErrNewerSchema = errors.New("store written by a newer version")

	// ErrReplicaMismatch is returned by Open when Options.Replica is set and
	// the file belongs to another replica.
	ErrReplicaMismatch = errors.New("store belongs to another replica")

	// ErrLocked is returned by Open when another process holds the file open
	// for longer than Options.Timeout.
	ErrLocked = errors.New("store in use by another process")

	// ErrInvalidPrefix is returned when an area prefix is not up to 12 ASCII
	// digits.
	ErrInvalidPrefix = syncengine.ErrInvalidPrefix

	// ErrInvalidToken is returned by Snapshot when the page token was not
	// made by Snapshot for the same prefix, and by Audit when it was not made
	// by Audit.
	ErrInvalidToken = errors.New("invalid page token")

	// ErrInvalidAudit is returned by AppendAuditTx and PutAudit for an audit
	// entry the store cannot keep: a zero recorder or sequence, a time
	// outside 1970 to 2262, or (PutAudit) one recorded by the store's own
	// replica.
	ErrInvalidAudit = errors.New("invalid audit entry")

	// ErrInvalidReport is returned by PutDeviceReport for a device report
	// the store cannot keep: a part out of order, a device without an id or
	// areas, or one listed twice.
	ErrInvalidReport = errors.New("invalid device report")

	// ErrNoDevice is returned when no device is registered under the id or
	// token hash asked for.
	ErrNoDevice = errors.New("no such device")

	// ErrCannotRebind is returned by RebindOriginTx for a relay that is not
	// an active relaying township, or an origin enrolled with this server.
	ErrCannotRebind = errors.New("cannot rebind")

	// ErrTokenInUse is returned by PutDevice when another device is
	// registered with the same token hash.
	ErrTokenInUse = errors.New("token hash used by another device")

	// ErrInvalidDevice is returned by PutDevice when the device has a zero id
	// or an area that is not a valid area prefix.
	ErrInvalidDevice = errors.New("invalid device")
	// ErrInvalidCode is returned by ClaimEnrolCode for a code that is
	// unknown, expired or bound to another device.
	ErrInvalidCode = errors.New("invalid or expired enrolment code")
	// ErrReplicaEnrolled is returned by EnrolDevice when the replica is
	// enrolled already (active or revoked) and the code does not replace it.
	ErrReplicaEnrolled = errors.New("replica already enrolled")

	// ErrNoStaff is returned when no staff member has the name asked for.
	ErrNoStaff = errors.New("no such staff member")
	// ErrStaffExists is returned by AddStaffTx when a staff member has the
	// name already.
	ErrStaffExists = errors.New("staff member exists")
	// ErrInvalidStaff is returned by AddStaffTx for a staff member without a
	// valid name, area or password hash.
	ErrInvalidStaff = errors.New("invalid staff member")
)

// restoreAdvice ends every message about a damaged or foreign file.
const restoreAdvice = "move the file aside and restore the store from a backup"

// Defaults for Options.
const (
	DefaultTimeout         = time.Second
	DefaultInitialMmapSize = 1 << 30
)

// Options configures Open. The zero value (or nil) gives the defaults.
type Options struct {
	// Replica is the replica id of the store. A new store takes it (a random
	// id if it is zero); an existing store with another id is refused with
	// ErrReplicaMismatch. Zero accepts any existing store.
	Replica syncengine.ReplicaID

	// Timeout is how long Open waits for another process to release the
	// file. Zero means DefaultTimeout.
	Timeout time.Duration

	// InitialMmapSize is the size of the file mapping made at open, in bytes.
	// Read transactions only block a commit when the file outgrows the
	// mapping, so it should exceed the expected file size; the file itself
	// does not grow with it. Zero means DefaultInitialMmapSize.
	InitialMmapSize int

	// AcceptRollback opens a store that may have lost its last commits (see
	// ErrRolledBack) instead of refusing it: for an operator who decided to
	// (fieldsyncd recover). The store then records its current transaction as
	// the last one, and skips 2^20 numbers of its audit sequence, so that the
	// entries it records next never take the number of an entry recorded
	// before the loss (and perhaps relayed to its county already).
	AcceptRollback bool
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Timeout <= 0 {
		out.Timeout = DefaultTimeout
	}
	if out.InitialMmapSize <= 0 {
		out.InitialMmapSize = DefaultInitialMmapSize
	}
	return out
}

// bolt returns the bbolt options: a hashmap freelist that is not written at
// every commit but rebuilt at open (as etcd and containerd run bbolt), and
// fsync on.
func (o *Options) bolt(readOnly bool) *bbolt.Options {
	return &bbolt.Options{
		Timeout:         o.Timeout,
		FreelistType:    bbolt.FreelistMapType,
		NoFreelistSync:  true,
		InitialMmapSize: o.InitialMmapSize,
		ReadOnly:        readOnly,
	}
}

// Store is a syncengine.Store in one bbolt file. It is safe for concurrent
// use: Update transactions run one at a time, View transactions concurrently
// with each other and with Update. Methods that read or write on their own
// (Snapshot, ReadLogArea, Compact, the device registry, ...) each run in their
// own transaction or transactions, as documented on each.
type Store struct {
	db      *bbolt.DB
	path    string
	replica syncengine.ReplicaID
	txids   *txidLog // the record of the last commit (TxidFile)
	dicts   dicts    // the log's dictionaries, once committed
	// txidBase is added to bbolt's transaction ids to count the store's
	// transactions (keyTxidBase).
	txidBase uint64
	// rollback is why the store may have lost commits, when it was opened
	// with Options.AcceptRollback.
	rollback string
}

// AcceptedRollback returns why the store may have lost commits when it was
// opened with Options.AcceptRollback, or "" when it was sound: for the
// caller to log what the operator accepted.
func (s *Store) AcceptedRollback() string { return s.rollback }

// Open opens the store in the file at path, creating it if it is missing or
// empty. Before it opens the file for writing, it reads every page of it, so
// that a damaged file is refused at once rather than found by a later request.
// It returns an error wrapping ErrNotStore, ErrCorrupt, ErrNewerSchema,
// ErrReplicaMismatch or ErrLocked when the file cannot be used as it is; a
// file that exists is never replaced.
func Open(path string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if err := createIfEmpty(path, &o); err != nil {
		return nil, err
	}
	meta, err := precheck(path)
	if err != nil {
		return nil, err
	}
	have, replica, base, err := inspect(path, &o)
	if err != nil {
		return nil, err
	}
	meta.txid += base // counted from the first transaction of the store, not of the file
	var rolled *RollbackError
	recorded, ok, err := readTxid(path)
	switch {
	case errors.As(err, &rolled):
	case err != nil:
		return nil, err
	case ok && recorded > meta.txid && meta.damagedPage >= 0:
		rolled = &RollbackError{Path: path, Reason: fmt.Sprintf("bbolt meta page %d is damaged, so the store would open as of transaction %d, but transaction %d was committed: it would be lost without a word", meta.damagedPage, meta.txid, recorded)}
	case ok && recorded > meta.txid:
		rolled = &RollbackError{Path: path, Reason: fmt.Sprintf("its last transaction is %d, but transaction %d was committed before: the file was rolled back or replaced by an older copy", meta.txid, recorded)}
	case !ok && meta.damagedPage >= 0:
		// No record to tell a torn commit from lost ones: loud.
		rolled = &RollbackError{Path: path, Reason: fmt.Sprintf("bbolt meta page %d is damaged, so the store would open as of transaction %d, and any commit after it would be lost without a word", meta.damagedPage, meta.txid)}
	}
	// A damaged meta page with the recorded commit intact is a commit torn
	// by a crash, never acknowledged: bbolt's fallback is right.
	if rolled != nil && !o.AcceptRollback {
		return nil, rolled
	}
	if !o.Replica.IsZero() && o.Replica != replica {
		return nil, fmt.Errorf("boltstore: open %s: %w: it is %v, want %v", path, ErrReplicaMismatch, replica, o.Replica)
	}
	db, err := openBolt(path, &o, false)
	if err != nil {
		return nil, err
	}
	if have < schemaVersion || rolled != nil {
		err = protect(path, func() error {
			return db.Update(func(btx *bbolt.Tx) error {
				if err := migrate(btx, path); err != nil {
					return err
				}
				if rolled != nil {
					return skipAuditSequence(btx)
				}
				return nil
			})
		})
		if err != nil {
			_ = protect(path, db.Close)
			return nil, err
		}
	}
	var txid uint64
	_ = db.View(func(btx *bbolt.Tx) error { txid = uint64(btx.ID()); return nil })
	txids, err := openTxidLog(path, base+txid)
	if err != nil {
		_ = protect(path, db.Close)
		return nil, err
	}
	st := &Store{db: db, path: path, replica: replica, txids: txids, txidBase: base}
	if rolled != nil {
		st.rollback = rolled.Reason
	}
	return st, nil
}

// Close closes the file after the transactions in progress end. Using the
// store afterwards returns errors.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close %s: %w", s.path, err)
	}
	return s.txids.close()
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Replica returns the store's own replica id, kept in the file.
func (s *Store) Replica() syncengine.ReplicaID { return s.replica }

// Update runs fn in a read-write bbolt transaction and commits it, with an
// fsync, if fn returns nil. It returns fn's error unchanged, a commit error,
// or ctx.Err() without running fn if ctx is already done. The Tx is only valid
// during fn.
func (s *Store) Update(ctx context.Context, fn func(syncengine.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	btx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("boltstore: begin: %w", err)
	}
	defer func() { _ = btx.Rollback() }() // no-op after Commit; also runs on panic
	t, err := begin(btx, &s.dicts)
	if err != nil {
		return err
	}
	err = fn(t)
	t.end()
	if err != nil {
		return err
	}
	txid := s.txidBase + uint64(btx.ID())
	if err := btx.Commit(); err != nil {
		return fmt.Errorf("boltstore: commit: %w", err)
	}
	if t.newDict.d != nil {
		s.dicts.m.Store(t.newDict.id, t.newDict.d)
	}
	// The commit stands even when its record fails (the next commit writes
	// the record again): reporting failure would make the caller believe
	// that nothing was stored.
	_ = s.txids.record(txid)
	return nil
}

// View runs fn in a read-only bbolt transaction and returns its error, or
// ctx.Err() without running fn if ctx is already done. The ReadTx is only
// valid during fn; values it returns are the caller's.
func (s *Store) View(ctx context.Context, fn func(syncengine.ReadTx) error) error {
	return s.view(ctx, func(t *tx) error { return fn(t) })
}

// view runs fn with the store's own tx type in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(*tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	btx, err := s.db.Begin(false)
	if err != nil {
		return fmt.Errorf("boltstore: begin: %w", err)
	}
	defer func() { _ = btx.Rollback() }()
	t, err := begin(btx, &s.dicts)
	if err != nil {
		return err
	}
	defer t.end()
	return fn(t)
}

// update runs fn with the store's own tx type in a read-write transaction.
func (s *Store) update(ctx context.Context, fn func(*tx) error) error {
	return s.Update(ctx, func(t syncengine.Tx) error { return fn(t.(*tx)) })
}
