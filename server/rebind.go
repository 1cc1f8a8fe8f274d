package server

import (
	"context"
	"errors"
	"fmt"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// RebindDevice makes a relaying township the one that speaks for a replica,
// with its audit entry in the same transaction.
func (a admin) RebindDevice(ctx context.Context, req *fieldsyncv1.RebindDeviceRequest) (*fieldsyncv1.RebindDeviceResponse, error) {
	if len(req.GetReplicaId()) != len(syncengine.ReplicaID{}) || len(req.GetRelayReplicaId()) != len(syncengine.ReplicaID{}) {
		return nil, fmt.Errorf("rebind: %w: replica_id and relay_replica_id must have 16 bytes (%d and %d)",
			ErrBadRequest, len(req.GetReplicaId()), len(req.GetRelayReplicaId()))
	}
	id, relay := syncengine.ReplicaID(req.GetReplicaId()), syncengine.ReplicaID(req.GetRelayReplicaId())
	var prev syncengine.ReplicaID
	var had bool
	err := a.s.store.Update(ctx, func(tx syncengine.Tx) error {
		var err error
		if prev, had, err = boltstore.RebindOriginTx(ctx, tx, id, relay); err != nil {
			return err
		}
		detail := "spoken for by township " + relay.String()
		if had {
			detail += ", before by " + prev.String()
		}
		return a.s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_REBIND, id.String(), detail)
	})
	switch {
	case errors.Is(err, boltstore.ErrNoDevice), errors.Is(err, boltstore.ErrCannotRebind):
		return nil, fmt.Errorf("rebind %v: %w: %v", id, ErrBadRequest, err)
	case err != nil:
		return nil, err
	}
	a.s.log.InfoContext(ctx, "replica rebound to a township", "replica", id.String(), "relay", relay.String())
	resp := &fieldsyncv1.RebindDeviceResponse{}
	if had {
		resp.PreviousRelayReplicaId = prev[:]
	}
	return resp, nil
}
