package boltstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Registry is the server's register of its peers, kept in the store's bbolt
// file beside the log but apart from it: devices and relaying townships with
// their tokens and activity (Device), the enrolment codes that admit them
// (EnrolCode), which relay speaks for which replica (BindOrigins), and the
// registries townships report (DeviceReport). Store.Registry returns it.
type Registry struct{ s *Store }

// Registry returns the store's register of peers.
func (s *Store) Registry() *Registry { return &Registry{s: s} }

// Device is a peer registered with this server: normally a phone, but every
// replica that pulls from this store (an upstream server too) should be
// registered, because CompactAcknowledged only waits for registered peers.
type Device struct {
	// ID is the device's replica id, which is also its key in the cursors.
	ID syncengine.ReplicaID
	// Name is a label for people ("Dr Li's phone, Xiaozhai").
	Name string
	// Areas are the area-code prefixes the device may sync.
	Areas []string
	// TokenHash is the SHA-256 of the device's bearer token; the token itself
	// is never stored. Zero means the device has no token.
	TokenHash [32]byte
	// Created is when the device was registered; PutDevice sets it to the
	// current time if it is zero and the device is new.
	Created time.Time
	// Revoked is set by RevokeDevice, at RevokedAt. A revoked device stays
	// registered, so that its token is recognised and refused as revoked.
	Revoked   bool
	RevokedAt time.Time
	// Relay marks a township server relaying its devices' changes (it may
	// push changes made by other replicas, within its areas), not a device.
	Relay bool
	// Activity is what the server saw of the device's syncs.
	Activity Activity
}

// Activity is what a server records of a device's syncs, for its operator.
type Activity struct {
	// LastSeen is when the device last opened a sync (Hello).
	LastSeen time.Time
	// LastSync is when a pull of the device last caught up: the end of its
	// last successful sync.
	LastSync time.Time
	// PulledThrough is the log position that pull delivered through.
	PulledThrough syncengine.Position
	// Pending is how many changes the device had not yet had acknowledged,
	// as it said at its last Hello, less those acknowledged since.
	Pending int
	// LastError is the device's last sync error as it reported it ("" after
	// a success).
	LastError string
}

// deviceJSON is how a Device is stored (the id is the key). JSON keeps the
// registry readable with bbolt's tools and lets fields be added.
type deviceJSON struct {
	Name      string        `json:"name"`
	Areas     []string      `json:"areas,omitempty"`
	TokenHash string        `json:"token_hash,omitempty"`
	Created   time.Time     `json:"created"`
	Revoked   bool          `json:"revoked,omitempty"`
	RevokedAt time.Time     `json:"revoked_at,omitzero"`
	Relay     bool          `json:"relay,omitempty"`
	Activity  *activityJSON `json:"activity,omitempty"`
}

type activityJSON struct {
	LastSeen      time.Time `json:"last_seen,omitzero"`
	LastSync      time.Time `json:"last_sync,omitzero"`
	PulledThrough uint64    `json:"pulled_through,omitempty"`
	Pending       int       `json:"pending,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
}

func encodeDevice(d *Device) ([]byte, error) {
	j := deviceJSON{Name: d.Name, Areas: d.Areas, Created: d.Created, Revoked: d.Revoked, RevokedAt: d.RevokedAt, Relay: d.Relay}
	if a := d.Activity; a != (Activity{}) {
		j.Activity = &activityJSON{LastSeen: a.LastSeen, LastSync: a.LastSync, PulledThrough: uint64(a.PulledThrough), Pending: a.Pending, LastError: a.LastError}
	}
	if d.TokenHash != ([32]byte{}) {
		j.TokenHash = hex.EncodeToString(d.TokenHash[:])
	}
	return json.Marshal(j)
}

func decodeDevice(k, v []byte) (Device, error) {
	var j deviceJSON
	var d Device
	if len(k) != idLen {
		return d, fmt.Errorf("boltstore: device key of %d bytes: %w", len(k), ErrCorrupt)
	}
	copy(d.ID[:], k)
	if err := json.Unmarshal(v, &j); err != nil {
		return d, fmt.Errorf("boltstore: device %v: %w: %v", d.ID, ErrCorrupt, err)
	}
	if j.TokenHash != "" {
		if n, err := hex.Decode(d.TokenHash[:], []byte(j.TokenHash)); err != nil || n != len(d.TokenHash) {
			return d, fmt.Errorf("boltstore: device %v: %w: token hash %q", d.ID, ErrCorrupt, j.TokenHash)
		}
	}
	d.Name, d.Areas, d.Created, d.Revoked, d.RevokedAt, d.Relay = j.Name, j.Areas, j.Created, j.Revoked, j.RevokedAt, j.Relay
	if a := j.Activity; a != nil {
		d.Activity = Activity{LastSeen: a.LastSeen, LastSync: a.LastSync, PulledThrough: syncengine.Position(a.PulledThrough), Pending: a.Pending, LastError: a.LastError}
	}
	return d, nil
}

// PutDevice registers d, or replaces the device registered under d.ID, and
// indexes its token hash, in one transaction. It returns an error wrapping
// ErrInvalidDevice for a zero id or a bad area prefix, and ErrTokenInUse if
// another device has the same token hash.
func (r *Registry) PutDevice(ctx context.Context, d Device) error {
	s := r.s
	if d.ID.IsZero() {
		return fmt.Errorf("boltstore: put device: %w: zero id", ErrInvalidDevice)
	}
	for _, a := range d.Areas {
		if !syncengine.ValidPrefix(a) || a == "" {
			return fmt.Errorf("boltstore: put device %v: %w: area %q", d.ID, ErrInvalidDevice, a)
		}
	}
	d.Areas = slices.Clone(d.Areas)
	return s.update(ctx, func(t *tx) error {
		if err := t.check(ctx); err != nil {
			return err
		}
		return t.putDevice(d)
	})
}

func (t *tx) putDevice(d Device) error {
	if old := t.devices.Get(d.ID[:]); old != nil {
		prev, err := decodeDevice(d.ID[:], old)
		if err != nil {
			return err
		}
		if d.Created.IsZero() {
			d.Created = prev.Created
		}
		if prev.TokenHash != d.TokenHash && prev.TokenHash != ([32]byte{}) {
			if err := t.devTokens.Delete(prev.TokenHash[:]); err != nil {
				return err
			}
		}
	}
	if d.Created.IsZero() {
		d.Created = time.Now().UTC()
	}
	if d.TokenHash != ([32]byte{}) {
		if other := t.devTokens.Get(d.TokenHash[:]); other != nil && !bytes.Equal(other, d.ID[:]) {
			return fmt.Errorf("boltstore: put device %v: %w", d.ID, ErrTokenInUse)
		}
		if err := t.devTokens.Put(d.TokenHash[:], bytes.Clone(d.ID[:])); err != nil {
			return err
		}
	}
	v, err := encodeDevice(&d)
	if err != nil {
		return err
	}
	return t.devices.Put(d.ID[:], v)
}

// Device returns the device registered under id, or an error wrapping
// ErrNoDevice.
func (r *Registry) Device(ctx context.Context, id syncengine.ReplicaID) (Device, error) {
	s := r.s
	var d Device
	err := s.view(ctx, func(t *tx) error {
		var err error
		d, err = t.device(id)
		return err
	})
	return d, err
}

func (t *tx) device(id syncengine.ReplicaID) (Device, error) {
	v := t.devices.Get(id[:])
	if v == nil {
		return Device{}, fmt.Errorf("boltstore: device %v: %w", id, ErrNoDevice)
	}
	return decodeDevice(id[:], v)
}

// DeviceByTokenHash returns the device whose token has SHA-256 hash, revoked
// or not, or an error wrapping ErrNoDevice.
func (r *Registry) DeviceByTokenHash(ctx context.Context, hash [32]byte) (Device, error) {
	s := r.s
	var d Device
	err := s.view(ctx, func(t *tx) error {
		v := t.devTokens.Get(hash[:])
		if len(v) != idLen || hash == ([32]byte{}) {
			return fmt.Errorf("boltstore: device with token hash %x: %w", hash[:4], ErrNoDevice)
		}
		var err error
		d, err = t.device(syncengine.ReplicaID(v))
		return err
	})
	return d, err
}

// Devices returns every registered device, revoked ones included, ordered by
// id.
func (r *Registry) Devices(ctx context.Context) ([]Device, error) {
	s := r.s
	var out []Device
	err := s.view(ctx, func(t *tx) error {
		out = nil
		return t.forEachDevice(func(d Device) error {
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

func (t *tx) forEachDevice(fn func(Device) error) error {
	return t.devices.ForEach(func(k, v []byte) error {
		d, err := decodeDevice(k, v)
		if err != nil {
			return err
		}
		return fn(d)
	})
}

// RevokeDevice marks the device registered under id as revoked, now (a
// device already revoked keeps its first RevokedAt), or returns an error
// wrapping ErrNoDevice. A revoked device no longer holds back
// CompactAcknowledged.
func (r *Registry) RevokeDevice(ctx context.Context, id syncengine.ReplicaID) error {
	s := r.s
	return s.Update(ctx, func(t syncengine.Tx) error {
		_, _, err := RevokeDeviceTx(ctx, t, id)
		return err
	})
}

// RevokeDeviceTx is RevokeDevice in in, a transaction of a Store's Update, so
// that the revocation commits with the transaction's other writes (its audit
// entry). It returns the device as revoked, and whether this call revoked it
// (false for a device revoked already). On an error the caller rolls the
// transaction back.
func RevokeDeviceTx(ctx context.Context, in syncengine.Tx, id syncengine.ReplicaID) (Device, bool, error) {
	t, err := asTx(in, "RevokeDeviceTx")
	if err != nil {
		return Device{}, false, err
	}
	if err := t.check(ctx); err != nil {
		return Device{}, false, err
	}
	d, err := t.device(id)
	if err != nil || d.Revoked {
		return d, false, err
	}
	d.Revoked, d.RevokedAt = true, time.Now().UTC()
	return d, true, t.putDevice(d)
}

// UpdateActivity applies fn to the activity of the device registered under
// id and stores it, in one transaction, or returns an error wrapping
// ErrNoDevice.
func (r *Registry) UpdateActivity(ctx context.Context, id syncengine.ReplicaID, fn func(*Activity)) error {
	s := r.s
	return s.update(ctx, func(t *tx) error {
		d, err := t.device(id)
		if err != nil {
			return err
		}
		fn(&d.Activity)
		v, err := encodeDevice(&d)
		if err != nil {
			return err
		}
		return t.devices.Put(id[:], v)
	})
}
