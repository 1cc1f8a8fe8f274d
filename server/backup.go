package server

import (
	"crypto/sha256"
	"fmt"
	"hash"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// backupChunk is the most bytes of the store's copy one BackupResponse carries.
const backupChunk = 1 << 20

// Backup streams a consistent copy of the store to the operator while the
// server keeps serving, and records it in the audit trail once sent whole.
func (a admin) Backup(_ *fieldsyncv1.BackupRequest, stream fieldsyncv1.AdminService_BackupServer) error {
	ctx := stream.Context()
	w := &backupWriter{stream: stream, sum: sha256.New()}
	n, err := a.s.store.WriteBackup(ctx, w, func(size int64) error {
		w.size = size
		return nil
	})
	if err == nil {
		err = w.flush()
	}
	if err == nil {
		err = stream.Send(&fieldsyncv1.BackupResponse{Sha256: w.sum.Sum(nil)})
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	a.s.log.InfoContext(ctx, "store copy sent to an operator", "bytes", n)
	return a.s.store.Update(ctx, func(tx syncengine.Tx) error {
		return a.s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_BACKUP, "store", fmt.Sprintf("%d bytes", n))
	})
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
