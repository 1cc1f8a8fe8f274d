package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Save stores rec as a change made by this server (a county's or township's
// correction): the fields that differ from the server's current state of the
// record, based on its whole current version, so that it supersedes every
// value the server holds and stays concurrent with what it has not seen. The
// change syncs like a device's: down to the devices in scope and, from a
// township, up to its county. It returns the change id, or a zero id when rec
// equals the stored record. A record outside the server's area is refused
// with ErrBadRequest; one that fails survey validation with an
// *InvalidRecordError.
func (s *Server) Save(ctx context.Context, rec *fieldsyncv1.Record) (syncengine.ChangeID, error) {
	id, area, err := wire.Identity(rec)
	if err != nil {
		return syncengine.ChangeID{}, fmt.Errorf("save: %w: %v", ErrBadRequest, err)
	}
	if !strings.HasPrefix(area, s.cfg.Area) {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w: area %s is outside this server's area %s", id, ErrBadRequest, area, s.cfg.Area)
	}
	if errs := survey.Validate(rec, s.now()); len(errs) > 0 {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w", id, &InvalidRecordError{FieldErrors: errs})
	}
	var cur syncengine.Record
	err = s.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		cur, err = tx.Record(ctx, id)
		return err
	})
	if err != nil {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w", id, err)
	}
	e, ok, err := wire.EditOf(cur, rec)
	if err != nil {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w: %v", id, ErrBadRequest, err)
	}
	if !ok {
		return syncengine.ChangeID{}, nil
	}
	rand.Read(e.ID[:])
	if _, err := syncengine.WriteLocal(ctx, s.store, s.clock, s.now().UnixMilli(), e); err != nil {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w", id, err)
	}
	s.log.InfoContext(ctx, "record saved by the server", "record", id.String())
	s.nudgeUpstream()
	return e.ID, nil
}
