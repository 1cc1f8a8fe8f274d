package boltstore_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
)

func TestEnrolCodes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	o := testOptions
	s, err := boltstore.Open(path, &o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	code := boltstore.EnrolCode{Hash: sha256.Sum256([]byte("CODE1")), Areas: []string{villageA}, Name: "Dr Li", Expiry: now.Add(time.Hour)}
	old := boltstore.EnrolCode{Hash: sha256.Sum256([]byte("CODE0")), Areas: []string{villageB}, Expiry: now.Add(-time.Minute)}
	if err := s.PutEnrolCode(ctx, old, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEnrolCode(ctx, code, now); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEnrolCode(ctx, boltstore.EnrolCode{Hash: [32]byte{9}, Expiry: now}, now); !errors.Is(err, boltstore.ErrInvalidDevice) {
		t.Errorf("code without areas: %v, want ErrInvalidDevice", err)
	}
	if err := s.PutEnrolCode(ctx, boltstore.EnrolCode{Hash: [32]byte{9}, Areas: []string{"5301x"}, Expiry: now}, now); !errors.Is(err, boltstore.ErrInvalidDevice) {
		t.Errorf("code with a bad prefix: %v, want ErrInvalidDevice", err)
	}

	// Codes survive a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	phone, other := replicaID("phone"), replicaID("other")
	got, err := s.ClaimEnrolCode(ctx, code.Hash, phone, now.Add(time.Minute))
	if err != nil || got.Name != "Dr Li" || !slices.Equal(got.Areas, code.Areas) || got.Replica != phone {
		t.Fatalf("claim after restart: %+v, %v", got, err)
	}
	// The same device may retry (its answer was lost); no other device may use it.
	if _, err := s.ClaimEnrolCode(ctx, code.Hash, phone, now.Add(2*time.Minute)); err != nil {
		t.Errorf("retry by the same device: %v", err)
	}
	if _, err := s.ClaimEnrolCode(ctx, code.Hash, other, now.Add(2*time.Minute)); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("claim by another device: %v, want ErrInvalidCode", err)
	}
	if _, err := s.ClaimEnrolCode(ctx, code.Hash, phone, now.Add(2*time.Hour)); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("claim after expiry: %v, want ErrInvalidCode", err)
	}
	// The code that had expired when the second was issued was dropped then.
	if _, err := s.ClaimEnrolCode(ctx, old.Hash, phone, now.Add(-2*time.Minute)); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("claim of a purged code: %v, want ErrInvalidCode", err)
	}
	if _, err := s.ClaimEnrolCode(ctx, sha256.Sum256([]byte("NEVER")), phone, now); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("unknown code: %v, want ErrInvalidCode", err)
	}
}

// A store written before enrolment codes were kept (schema 1) is upgraded
// at open.
func TestOpenUpgradesSchema1(t *testing.T) {
	path := realStore(t, t.TempDir())
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket([]byte("enrolcodes")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 1))
	})
	s := openAt(t, path)
	now := time.Now()
	c := boltstore.EnrolCode{Hash: [32]byte{1}, Areas: []string{villageA}, Expiry: now.Add(time.Hour)}
	if err := s.PutEnrolCode(t.Context(), c, now); err != nil {
		t.Fatalf("put code after upgrade: %v", err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
}
