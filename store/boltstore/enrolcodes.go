package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fieldsync/fieldsync/syncengine"
)

// EnrolCode is a one-time enrolment code issued to an operator for a new
// device. The store keeps only the code's hash, never the code.
type EnrolCode struct {
	// Hash is the SHA-256 of the normalised code; it is the key.
	Hash [32]byte
	// Areas are the area-code prefixes the enrolled device may sync.
	Areas []string
	// Name labels the device for people.
	Name string
	// Relay: the code enrols a relaying township server (Device.Relay).
	Relay bool
	// Expiry is when the code stops being accepted.
	Expiry time.Time
	// Replica is the device that used the code, zero until first used. A
	// code stays valid for that device until it expires, so a device whose
	// enrolment answer was lost can retry; no other device can use it.
	Replica syncengine.ReplicaID
	// Replaces, when not zero, is the enrolled device the code replaces
	// (fieldsync admin device replace): the same replica enrolling again, or a
	// new one taking its place.
	Replaces syncengine.ReplicaID
}

type enrolCodeJSON struct {
	Areas    []string  `json:"areas"`
	Name     string    `json:"name,omitempty"`
	Relay    bool      `json:"relay,omitempty"`
	Expiry   time.Time `json:"expiry"`
	Replica  string    `json:"replica,omitempty"`
	Replaces string    `json:"replaces,omitempty"`
}

func encodeEnrolCode(c *EnrolCode) ([]byte, error) {
	j := enrolCodeJSON{Areas: c.Areas, Name: c.Name, Relay: c.Relay, Expiry: c.Expiry.UTC()}
	if !c.Replica.IsZero() {
		j.Replica = c.Replica.String()
	}
	if !c.Replaces.IsZero() {
		j.Replaces = c.Replaces.String()
	}
	return json.Marshal(j)
}

func decodeEnrolCode(k, v []byte) (EnrolCode, error) {
	var c EnrolCode
	if len(k) != len(c.Hash) {
		return c, fmt.Errorf("boltstore: enrolment code key of %d bytes: %w", len(k), ErrCorrupt)
	}
	copy(c.Hash[:], k)
	var j enrolCodeJSON
	if err := json.Unmarshal(v, &j); err != nil {
		return c, fmt.Errorf("boltstore: enrolment code %x: %w: %v", k[:4], ErrCorrupt, err)
	}
	if j.Replica != "" {
		id, err := syncengine.ParseReplicaID(j.Replica)
		if err != nil {
			return c, fmt.Errorf("boltstore: enrolment code %x: %w: %v", k[:4], ErrCorrupt, err)
		}
		c.Replica = id
	}
	if j.Replaces != "" {
		id, err := syncengine.ParseReplicaID(j.Replaces)
		if err != nil {
			return c, fmt.Errorf("boltstore: enrolment code %x: %w: %v", k[:4], ErrCorrupt, err)
		}
		c.Replaces = id
	}
	c.Areas, c.Name, c.Relay, c.Expiry = j.Areas, j.Name, j.Relay, j.Expiry
	return c, nil
}

// PutEnrolCode stores c, and drops the codes that expired before now, in one
// transaction. It returns an error wrapping ErrInvalidDevice for a code
// without areas or with a bad area prefix.
func (r *Registry) PutEnrolCode(ctx context.Context, c EnrolCode, now time.Time) error {
	s := r.s
	return s.Update(ctx, func(t syncengine.Tx) error { return PutEnrolCodeTx(ctx, t, c, now) })
}

// PutEnrolCodeTx is PutEnrolCode in in, a transaction of a Store's Update, so
// that the code commits with the transaction's other writes (the audit entry
// of its issue). On an error the caller rolls the transaction back.
func PutEnrolCodeTx(ctx context.Context, in syncengine.Tx, c EnrolCode, now time.Time) error {
	t, err := asTx(in, "PutEnrolCodeTx")
	if err != nil {
		return err
	}
	if err := t.check(ctx); err != nil {
		return err
	}
	if len(c.Areas) == 0 {
		return fmt.Errorf("boltstore: put enrolment code: %w: no areas", ErrInvalidDevice)
	}
	for _, a := range c.Areas {
		if !syncengine.ValidPrefix(a) || a == "" {
			return fmt.Errorf("boltstore: put enrolment code: %w: area %q", ErrInvalidDevice, a)
		}
	}
	c.Areas = slices.Clone(c.Areas)
	v, err := encodeEnrolCode(&c)
	if err != nil {
		return err
	}
	var expired [][]byte
	err = t.enrolCodes.ForEach(func(k, v []byte) error {
		old, err := decodeEnrolCode(k, v)
		if err != nil || now.After(old.Expiry) {
			expired = append(expired, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := t.enrolCodes.Delete(k); err != nil {
			return err
		}
	}
	return t.enrolCodes.Put(c.Hash[:], v)
}

// EnrolDevice claims the enrolment code with hash for replica and registers
// replica under it with tokenHash, in one transaction, and returns the device
// and the code. Identities are bound, never claimed:
//
//   - a replica that is not enrolled is registered with the code's areas,
//     name and relay flag (name, when the code has none);
//   - the same code and replica again (a device whose answer was lost) only
//     replace the token, unless the device was revoked since;
//   - a replica enrolled already, active or revoked, is refused with
//     ErrReplicaEnrolled, unless the code replaces it: then its token is
//     replaced and a revocation lifted, and its history (cursors, activity,
//     its changes in the log) is kept;
//   - a code that replaces another device registers replica in its place and
//     revokes that device at now.
//
// It returns an error wrapping ErrInvalidCode for an unknown or expired code
// or one another replica used.
func (r *Registry) EnrolDevice(ctx context.Context, hash [32]byte, replica syncengine.ReplicaID, tokenHash [32]byte, name string, now time.Time) (Device, EnrolCode, error) {
	s := r.s
	var d Device
	var c EnrolCode
	err := s.update(ctx, func(t *tx) error {
		if err := t.check(ctx); err != nil {
			return err
		}
		v := t.enrolCodes.Get(hash[:])
		if v == nil {
			return ErrInvalidCode
		}
		var err error
		if c, err = decodeEnrolCode(hash[:], v); err != nil {
			return err
		}
		retry := c.Replica == replica
		switch {
		case now.After(c.Expiry):
			return fmt.Errorf("%w: expired at %s", ErrInvalidCode, c.Expiry.UTC().Format(time.RFC3339))
		case !c.Replica.IsZero() && !retry:
			return fmt.Errorf("%w: used by another device", ErrInvalidCode)
		}
		old, err := t.device(replica)
		enrolled := err == nil
		if err != nil && !errors.Is(err, ErrNoDevice) {
			return err
		}
		// Only a replace code lifts a revocation: a retry of the code a
		// revoked device enrolled with must not undo it.
		if enrolled && (!retry || old.Revoked) && c.Replaces != replica {
			return fmt.Errorf("%w: %v (%q)", ErrReplicaEnrolled, replica, old.Name)
		}
		if !c.Replaces.IsZero() && c.Replaces != replica {
			gone, err := t.device(c.Replaces)
			if err != nil {
				return err
			}
			if !gone.Revoked {
				gone.Revoked, gone.RevokedAt = true, now.UTC()
				if err := t.putDevice(gone); err != nil {
					return err
				}
			}
		}
		if !retry {
			c.Replica = replica
			b, err := encodeEnrolCode(&c)
			if err != nil {
				return err
			}
			if err := t.enrolCodes.Put(hash[:], b); err != nil {
				return err
			}
		}
		d = old
		d.ID, d.Areas, d.Relay, d.TokenHash, d.Revoked, d.RevokedAt = replica, slices.Clone(c.Areas), c.Relay, tokenHash, false, time.Time{}
		if d.Name = c.Name; d.Name == "" {
			d.Name = name
		}
		return t.putDevice(d)
	})
	return d, c, err
}

// OriginsTaken returns, of origins, those another relay speaks for: bound to
// it by BindOrigins, and it not revoked. It binds nothing.
func (r *Registry) OriginsTaken(ctx context.Context, relay syncengine.ReplicaID, origins []syncengine.ReplicaID) (map[syncengine.ReplicaID]syncengine.ReplicaID, error) {
	s := r.s
	taken := make(map[syncengine.ReplicaID]syncengine.ReplicaID)
	err := s.view(ctx, func(t *tx) error {
		for _, o := range origins {
			other, ok, err := t.originTaken(o, relay)
			if err != nil {
				return err
			}
			if ok {
				taken[o] = other
			}
		}
		return nil
	})
	return taken, err
}

// BindOrigins binds each of origins to relay, unless another relay speaks for
// it (OriginsTaken), in one transaction: a relaying township may push only the
// changes of the replicas below it, and a township server replaced (admin
// device replace, which revokes it) hands its origins on to the relay that
// pushes them next. The server binds the origins of the changes it applied.
// It returns the origins another relay speaks for, with that relay.
func (r *Registry) BindOrigins(ctx context.Context, relay syncengine.ReplicaID, origins []syncengine.ReplicaID) (map[syncengine.ReplicaID]syncengine.ReplicaID, error) {
	s := r.s
	taken := make(map[syncengine.ReplicaID]syncengine.ReplicaID)
	err := s.update(ctx, func(t *tx) error {
		clear(taken)
		for _, o := range origins {
			other, ok, err := t.originTaken(o, relay)
			switch {
			case err != nil:
				return err
			case ok:
				taken[o] = other
			default:
				if err := t.origins.Put(bytes.Clone(o[:]), bytes.Clone(relay[:])); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return taken, err
}

// originTaken returns the relay other than relay that origin is bound to,
// and true, unless that relay was revoked (it speaks for no one).
func (t *tx) originTaken(origin, relay syncengine.ReplicaID) (syncengine.ReplicaID, bool, error) {
	v := t.origins.Get(origin[:])
	switch {
	case v == nil:
		return syncengine.ReplicaID{}, false, nil
	case len(v) != idLen:
		return syncengine.ReplicaID{}, false, fmt.Errorf("boltstore: origin %v: %w: relay of %d bytes", origin, ErrCorrupt, len(v))
	case syncengine.ReplicaID(v) == relay:
		return syncengine.ReplicaID{}, false, nil
	}
	other := syncengine.ReplicaID(v)
	if d, err := t.device(other); err == nil && d.Revoked {
		return syncengine.ReplicaID{}, false, nil
	}
	return other, true, nil
}

// RebindOriginTx makes relay, an active relaying township, the one that
// speaks for origin, in tx (the operator's fix for a phone re-enrolled under
// another township: its relayed changes are refused until then). It returns
// the relay origin was bound to before, if any. An origin enrolled with this
// server itself is refused: no relay speaks for it.
func RebindOriginTx(ctx context.Context, in syncengine.Tx, origin, relay syncengine.ReplicaID) (syncengine.ReplicaID, bool, error) {
	t, err := asTx(in, "RebindOriginTx")
	if err != nil {
		return syncengine.ReplicaID{}, false, err
	}
	if err := t.check(ctx); err != nil {
		return syncengine.ReplicaID{}, false, err
	}
	if origin == relay || origin == syncengine.ReplicaID(t.meta.Get(keyReplica)) {
		return syncengine.ReplicaID{}, false, fmt.Errorf("boltstore: rebind %v: %w: a township speaks neither for itself nor for this server", origin, ErrCannotRebind)
	}
	r, err := t.device(relay)
	switch {
	case errors.Is(err, ErrNoDevice):
		return syncengine.ReplicaID{}, false, fmt.Errorf("boltstore: rebind %v: %w: %v is not enrolled here", origin, ErrNoDevice, relay)
	case err != nil:
		return syncengine.ReplicaID{}, false, err
	case !r.Relay || r.Revoked:
		return syncengine.ReplicaID{}, false, fmt.Errorf("boltstore: rebind %v: %w: %v is not an active relaying township", origin, ErrCannotRebind, relay)
	}
	if _, err := t.device(origin); err == nil {
		return syncengine.ReplicaID{}, false, fmt.Errorf("boltstore: rebind %v: %w: it is enrolled here, so no township speaks for it", origin, ErrCannotRebind)
	} else if !errors.Is(err, ErrNoDevice) {
		return syncengine.ReplicaID{}, false, err
	}
	var prev syncengine.ReplicaID
	v := t.origins.Get(origin[:])
	had := len(v) == idLen
	if had {
		prev = syncengine.ReplicaID(v)
	}
	return prev, had, t.origins.Put(bytes.Clone(origin[:]), bytes.Clone(relay[:]))
}
