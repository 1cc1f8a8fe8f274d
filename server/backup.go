package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// backupChunk is the most bytes of the store's copy one BackupResponse carries.
const backupChunk = 1 << 20

// Backup streams a consistent copy of the store to the operator while the
// server keeps serving. The copy is first written to a temporary file beside
// the store (bbolt's online copy holds a read transaction, which must not wait
// on a slow link: a commit that grows the file would wait for it), then sent
// from that file. It is recorded in the audit trail before the checksum that
// completes it is sent, so no copy leaves without its entry.
func (a admin) Backup(_ *fieldsyncv1.BackupRequest, stream fieldsyncv1.AdminService_BackupServer) error {
	ctx := stream.Context()
	tmp, err := os.MkdirTemp(a.s.cfg.DataDir, "backup-send-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, BackupFile)
	n, err := a.s.store.BackupTo(ctx, path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	w := &backupWriter{stream: stream, sum: sha256.New(), size: n}
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// The copy is sent: remove it before the checksum that completes the
	// backup, so none is left behind once the operator has it.
	f.Close()
	if err := os.RemoveAll(tmp); err != nil {
		// The copy is the store's own data, in the store's directory; the
		// operator still gets the backup.
		a.s.log.WarnContext(ctx, "backup: the temporary copy could not be removed", "err", err)
	}
	actx := context.WithoutCancel(ctx)
	if err := a.s.store.Update(actx, func(tx syncengine.Tx) error {
		return a.s.audit(actx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_BACKUP, "store", fmt.Sprintf("%d bytes", n))
	}); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	a.s.log.InfoContext(ctx, "store copy sent to an operator", "bytes", n)
	return stream.Send(&fieldsyncv1.BackupResponse{Sha256: w.sum.Sum(nil)})
}

// backupWriter cuts the copy into chunks of backupChunk bytes.
type backupWriter struct {
	stream fieldsyncv1.AdminService_BackupServer
	sum    hash.Hash
	buf    []byte
	size   int64 // sent with the first chunk, then 0
}

func (w *backupWriter) Write(p []byte) (int, error) {
	w.sum.Write(p)
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), backupChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == backupChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush sends what is buffered, if anything.
func (w *backupWriter) flush() error {
	if len(w.buf) == 0 && w.size == 0 {
		return nil
	}
	err := w.stream.Send(&fieldsyncv1.BackupResponse{Data: w.buf, Size: w.size})
	w.buf, w.size = nil, 0 // a sent message is not ours to change
	return err
}
