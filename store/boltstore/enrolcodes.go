package boltstore

import (
	"context"
	"encoding/json"
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
}

type enrolCodeJSON struct {
	Areas   []string  `json:"areas"`
	Name    string    `json:"name,omitempty"`
	Relay   bool      `json:"relay,omitempty"`
	Expiry  time.Time `json:"expiry"`
	Replica string    `json:"replica,omitempty"`
}

func encodeEnrolCode(c *EnrolCode) ([]byte, error) {
	j := enrolCodeJSON{Areas: c.Areas, Name: c.Name, Relay: c.Relay, Expiry: c.Expiry.UTC()}
	if !c.Replica.IsZero() {
		j.Replica = c.Replica.String()
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
	c.Areas, c.Name, c.Relay, c.Expiry = j.Areas, j.Name, j.Relay, j.Expiry
	return c, nil
}

// PutEnrolCode stores c, and drops the codes that expired before now, in one
// transaction. It returns an error wrapping ErrInvalidDevice for a code
// without areas or with a bad area prefix.
func (s *Store) PutEnrolCode(ctx context.Context, c EnrolCode, now time.Time) error {
	if len(c.Areas) == 0 {
		return fmt.Errorf("boltstore: put enrolment code: %w: no areas", ErrInvalidDevice)
	}
	for _, a := range c.Areas {
		if !validPrefix(a) || a == "" {
			return fmt.Errorf("boltstore: put enrolment code: %w: area %q", ErrInvalidDevice, a)
		}
	}
	c.Areas = slices.Clone(c.Areas)
	v, err := encodeEnrolCode(&c)
	if err != nil {
		return err
	}
	return s.update(ctx, func(t *tx) error {
		var expired [][]byte
		err := t.enrolCodes.ForEach(func(k, v []byte) error {
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
	})
}

// ClaimEnrolCode returns the code with hash for replica, binding it to
// replica on first use. It returns an error wrapping ErrInvalidCode for an
// unknown or expired code or one bound to another replica.
func (s *Store) ClaimEnrolCode(ctx context.Context, hash [32]byte, replica syncengine.ReplicaID, now time.Time) (EnrolCode, error) {
	var c EnrolCode
	err := s.update(ctx, func(t *tx) error {
		v := t.enrolCodes.Get(hash[:])
		if v == nil {
			return ErrInvalidCode
		}
		var err error
		if c, err = decodeEnrolCode(hash[:], v); err != nil {
			return err
		}
		switch {
		case now.After(c.Expiry):
			return fmt.Errorf("%w: expired at %s", ErrInvalidCode, c.Expiry.UTC().Format(time.RFC3339))
		case !c.Replica.IsZero() && c.Replica != replica:
			return fmt.Errorf("%w: used by another device", ErrInvalidCode)
		case c.Replica == replica:
			return nil
		}
		c.Replica = replica
		b, err := encodeEnrolCode(&c)
		if err != nil {
			return err
		}
		return t.enrolCodes.Put(hash[:], b)
	})
	return c, err
}
