package boltstore_test

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

func addStaff(t *testing.T, s *boltstore.Store, m boltstore.Staff) error {
	t.Helper()
	return s.Update(t.Context(), func(tx syncengine.Tx) error { return boltstore.AddStaffTx(t.Context(), tx, m) })
}

// Staff members are added once per name, listed by name, read back whole and
// removed; bad ones are refused.
func TestStaff(t *testing.T) {
	s := openStore(t)
	at := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	li := boltstore.Staff{Name: "李春兰", Area: townA, Role: "township", PasswordHash: "$argon2id$x", Created: at}
	if err := addStaff(t, s, li); err != nil {
		t.Fatal(err)
	}
	if err := addStaff(t, s, boltstore.Staff{Name: "county", Area: townA[:6], Role: "county", PasswordHash: "h", Created: at}); err != nil {
		t.Fatal(err)
	}
	if err := addStaff(t, s, li); !errors.Is(err, boltstore.ErrStaffExists) {
		t.Errorf("adding %s twice: %v, want ErrStaffExists", li.Name, err)
	}
	for _, bad := range []boltstore.Staff{
		{Name: "", Area: townA, PasswordHash: "h"},
		{Name: "x", Area: "53a", PasswordHash: "h"},
		{Name: "x", Area: townA},
		{Name: "\xff", Area: townA, PasswordHash: "h"},
	} {
		if err := addStaff(t, s, bad); !errors.Is(err, boltstore.ErrInvalidStaff) {
			t.Errorf("adding %+v: %v, want ErrInvalidStaff", bad, err)
		}
	}
	got, err := s.StaffMember(t.Context(), li.Name)
	if err != nil || got != li {
		t.Errorf("StaffMember = %+v, %v; want %+v", got, err, li)
	}
	list, err := s.StaffList(t.Context())
	if err != nil || len(list) != 2 || list[0].Name != "county" || list[1].Name != li.Name {
		t.Errorf("StaffList = %+v, %v", list, err)
	}
	err = s.Update(t.Context(), func(tx syncengine.Tx) error {
		m, err := boltstore.RemoveStaffTx(t.Context(), tx, li.Name)
		if m.Area != townA {
			t.Errorf("removed %+v", m)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StaffMember(t.Context(), li.Name); !errors.Is(err, boltstore.ErrNoStaff) {
		t.Errorf("StaffMember after removal: %v, want ErrNoStaff", err)
	}
	err = s.Update(t.Context(), func(tx syncengine.Tx) error {
		_, err := boltstore.RemoveStaffTx(t.Context(), tx, li.Name)
		return err
	})
	if !errors.Is(err, boltstore.ErrNoStaff) {
		t.Errorf("removing twice: %v, want ErrNoStaff", err)
	}
}

// A store of schema 4 or 5 (before staff) opens with an empty staff bucket,
// and so does one of schema 6 without it (as a build that bumped the schema
// for another bucket first would have left it): the upgrades create what is
// missing, whatever order the bumps came in.
func TestOpenUpgradesSchema5(t *testing.T) {
	for _, from := range []uint64{4, 5, 6} {
		path := realStore(t, t.TempDir())
		rawUpdate(t, path, func(tx *bbolt.Tx) error {
			if err := tx.DeleteBucket([]byte("staff")); err != nil {
				return err
			}
			return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, from))
		})
		s := openAt(t, path)
		if err := addStaff(t, s, boltstore.Staff{Name: "a", Area: townA, Role: "township", PasswordHash: "h"}); err != nil {
			t.Fatalf("from schema %d: add staff after the upgrade: %v", from, err)
		}
	}
}
