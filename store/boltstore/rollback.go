package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"go.etcd.io/bbolt"
)

// A store is refused at open when it may have lost commits without a word:
// when its last transaction is older than the one the store recorded durably
// beside it, in TxidFile, after its last commit (a meta page damaged over a
// commit, bbolt then opening the file at the page before; a file rolled back,
// or replaced by an older copy), or when a meta page is damaged and there is
// no record to tell a commit torn by a crash (never acknowledged, so nothing
// is lost) from lost ones. Options.AcceptRollback opens it anyway, for an
// operator who decided so (fieldsyncd recover). The record is only as safe as
// the directory: restoring the whole data directory, record included, from
// an older copy is not detected.

// ErrRolledBack is wrapped by the *RollbackError Open returns for a store that
// may have lost commits.
var ErrRolledBack = errors.New("store may have lost its last commits")

// RollbackError says why a store may have lost commits.
type RollbackError struct {
	Path   string
	Reason string
}

func (e *RollbackError) Error() string {
	return fmt.Sprintf("boltstore: %s: %s: %s; restore the data directory from a backup (then run 'fieldsyncd recover' to accept the backup's point in time), or run 'fieldsyncd recover' to accept this state and log it: phones then push again what the store lost",
		e.Path, ErrRolledBack, e.Reason)
}

func (e *RollbackError) Unwrap() error { return ErrRolledBack }

// TxidFile is the file beside the store, at its path plus this suffix, where
// the store records the id of its last committed transaction.
const TxidFile = ".txid"

// txidMagic starts the txid file.
var txidMagic = []byte("fstxid01")

// txidLog is the store's record of its last commit (TxidFile). It is safe
// for concurrent use.
type txidLog struct {
	mu   sync.Mutex
	f    *os.File
	last uint64
}

// readTxid returns the transaction id recorded beside the store at path, and
// false when there is no record (a new store, or one from before the record
// was kept).
func readTxid(path string) (uint64, bool, error) {
	b, err := os.ReadFile(path + TxidFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("boltstore: read %s%s: %w", path, TxidFile, err)
	case len(b) != len(txidMagic)+8 || !bytes.Equal(b[:len(txidMagic)], txidMagic):
		return 0, false, &RollbackError{Path: path, Reason: fmt.Sprintf("its record of the last commit, %s%s, is damaged", path, TxidFile)}
	}
	return binary.BigEndian.Uint64(b[len(txidMagic):]), true, nil
}

// openTxidLog opens (creating, mode 0600) the txid file of the store at path
// and records txid in it.
func openTxidLog(path string, txid uint64) (*txidLog, error) {
	f, err := os.OpenFile(path+TxidFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s%s: %w", path, TxidFile, err)
	}
	l := &txidLog{f: f}
	if err := l.record(txid); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("boltstore: open %s%s: %w", path, TxidFile, err)
	}
	return l, nil
}

// record writes txid, durably, as the last committed transaction, unless a
// later one is recorded already (commits end in order, but their records may
// not).
func (l *txidLog) record(txid uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if txid <= l.last {
		return nil
	}
	b := binary.BigEndian.AppendUint64(bytes.Clone(txidMagic), txid)
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("boltstore: record transaction %d: %w", txid, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("boltstore: record transaction %d: %w", txid, err)
	}
	l.last = txid
	return nil
}

func (l *txidLog) close() error { return l.f.Close() }

// writeBackup writes a consistent copy of the store, as of one read
// transaction, to w while the store stays in use, and returns its size. The
// read transaction lasts as long as w takes: give it a local file.
func (s *Store) writeBackup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(btx *bbolt.Tx) error {
		var err error
		n, err = btx.WriteTo(w)
		return err
	})
	return n, err
}

// BackupTo writes a consistent copy of the store, as of one read transaction,
// into a new file at path (mode 0600) while the store stays in use: written
// to a temporary file beside path, synced, then renamed over it, so path is
// always a whole copy. It records nothing beside the copy: restoring it is
// accepting its point in time (Options.AcceptRollback, fieldsyncd recover).
// It returns the copy's size.
func (s *Store) BackupTo(ctx context.Context, path string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return 0, fmt.Errorf("boltstore: backup to %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	n, err := s.writeBackup(ctx, f)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return 0, fmt.Errorf("boltstore: backup to %s: %w", path, err)
	}
	return n, nil
}
