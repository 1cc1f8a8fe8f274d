package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Staff is a member of the county's or a township's staff who may sign in to
// the server's web page (fieldsyncd serve --http). The store keeps what it is
// given: the server decides the roles and makes the password hash; the store
// never sees a password.
type Staff struct {
	// Name is how the member signs in; it is the key, unique per store.
	Name string
	// ID is a random id the server gives the credential: what the audit
	// trail names (a name may be a person's), and what tells a credential
	// from a later one of the same name.
	ID string
	// Area is the area-code prefix the member may read: a county's 6 digits
	// or a township's 9.
	Area string
	// Role is "county" or "township".
	Role string
	// PasswordHash is the password's slow hash, in the form the server
	// writes (a PHC string such as "$argon2id$v=19$...").
	PasswordHash string
	// Created is when the credential was made.
	Created time.Time
}

// staffJSON is how a Staff is stored (its key holds the name).
type staffJSON struct {
	ID           string    `json:"id"`
	Area         string    `json:"area"`
	Role         string    `json:"role"`
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created"`
}

// maxStaffName bounds a staff member's name, in bytes (bbolt keys may be far
// longer; a name is for people).
const maxStaffName = 256

func checkStaffName(name string) error {
	if name == "" || len(name) > maxStaffName || !utf8.ValidString(name) {
		return fmt.Errorf("boltstore: staff name of %d bytes: %w", len(name), ErrInvalidStaff)
	}
	return nil
}

func decodeStaff(k, v []byte) (Staff, error) {
	var j staffJSON
	if err := json.Unmarshal(v, &j); err != nil {
		return Staff{}, fmt.Errorf("boltstore: staff %q: %w: %v", k, ErrCorrupt, err)
	}
	return Staff{Name: string(k), ID: j.ID, Area: j.Area, Role: j.Role, PasswordHash: j.PasswordHash, Created: j.Created}, nil
}

// AddStaffTx stores a new staff member in in, a transaction of a Store's
// Update, so that it commits with the action's audit entry. It returns an
// error wrapping ErrStaffExists when the name is taken, and ErrInvalidStaff
// for an empty or invalid name, an area that is not an area prefix, or no
// password hash.
func AddStaffTx(ctx context.Context, in syncengine.Tx, s Staff) error {
	t, err := asTx(in, "AddStaffTx")
	if err != nil {
		return err
	}
	if err := t.check(ctx); err != nil {
		return err
	}
	if err := checkStaffName(s.Name); err != nil {
		return err
	}
	if s.Area == "" || !syncengine.ValidPrefix(s.Area) || s.PasswordHash == "" {
		return fmt.Errorf("boltstore: staff %q: %w: area %q, hash of %d bytes", s.Name, ErrInvalidStaff, s.Area, len(s.PasswordHash))
	}
	b := t.btx.Bucket(bucketStaff)
	if b.Get([]byte(s.Name)) != nil {
		return fmt.Errorf("boltstore: staff %q: %w", s.Name, ErrStaffExists)
	}
	v, err := json.Marshal(staffJSON{ID: s.ID, Area: s.Area, Role: s.Role, PasswordHash: s.PasswordHash, Created: s.Created.UTC()})
	if err != nil {
		return err
	}
	return b.Put([]byte(s.Name), v)
}

// RemoveStaffTx deletes the staff member name in in, a transaction of a
// Store's Update. It returns the member removed, or an error wrapping
// ErrNoStaff.
func RemoveStaffTx(ctx context.Context, in syncengine.Tx, name string) (Staff, error) {
	t, err := asTx(in, "RemoveStaffTx")
	if err != nil {
		return Staff{}, err
	}
	if err := t.check(ctx); err != nil {
		return Staff{}, err
	}
	b := t.btx.Bucket(bucketStaff)
	v := b.Get([]byte(name))
	if v == nil {
		return Staff{}, fmt.Errorf("boltstore: staff %q: %w", name, ErrNoStaff)
	}
	s, err := decodeStaff([]byte(name), v)
	if err != nil {
		return Staff{}, err
	}
	return s, b.Delete([]byte(name))
}

// StaffMember returns the staff member name, or an error wrapping ErrNoStaff.
func (s *Store) StaffMember(ctx context.Context, name string) (Staff, error) {
	var out Staff
	err := s.view(ctx, func(t *tx) error {
		v := t.btx.Bucket(bucketStaff).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("boltstore: staff %q: %w", name, ErrNoStaff)
		}
		var err error
		out, err = decodeStaff([]byte(name), v)
		return err
	})
	return out, err
}

// StaffList returns every staff member, by name.
func (s *Store) StaffList(ctx context.Context) ([]Staff, error) {
	var out []Staff
	err := s.view(ctx, func(t *tx) error {
		out = nil
		return t.btx.Bucket(bucketStaff).ForEach(func(k, v []byte) error {
			m, err := decodeStaff(k, v)
			out = append(out, m)
			return err
		})
	})
	return out, err
}

// staff verifies that every staff member decodes and has a name, an area and
// a password hash.
func (ck *checker) staff() error {
	return ck.t.btx.Bucket(bucketStaff).ForEach(func(k, v []byte) error {
		m, err := decodeStaff(k, v)
		switch {
		case err != nil:
			ck.fail("%v", err)
		case checkStaffName(m.Name) != nil || !syncengine.ValidPrefix(m.Area) || m.Area == "" || m.PasswordHash == "":
			ck.fail("staff %q: no valid name, area or password hash", k)
		}
		return nil
	})
}
