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
	"github.com/fieldsync/fieldsync/syncengine"
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
	if err := s.Registry().PutEnrolCode(ctx, old, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().PutEnrolCode(ctx, code, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().PutEnrolCode(ctx, boltstore.EnrolCode{Hash: [32]byte{9}, Expiry: now}, now); !errors.Is(err, boltstore.ErrInvalidDevice) {
		t.Errorf("code without areas: %v, want ErrInvalidDevice", err)
	}
	if err := s.Registry().PutEnrolCode(ctx, boltstore.EnrolCode{Hash: [32]byte{9}, Areas: []string{"5301x"}, Expiry: now}, now); !errors.Is(err, boltstore.ErrInvalidDevice) {
		t.Errorf("code with a bad prefix: %v, want ErrInvalidDevice", err)
	}

	// Codes survive a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	phone, other := replicaID("phone"), replicaID("other")
	tok := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	d, got, err := s.Registry().EnrolDevice(ctx, code.Hash, phone, tok("t1"), "", now.Add(time.Minute))
	if err != nil || got.Name != "Dr Li" || !slices.Equal(got.Areas, code.Areas) || got.Replica != phone || d.Name != "Dr Li" || d.TokenHash != tok("t1") {
		t.Fatalf("enrol after restart: %+v, %+v, %v", d, got, err)
	}
	// The same device may retry (its answer was lost); no other device may use it.
	if d, _, err := s.Registry().EnrolDevice(ctx, code.Hash, phone, tok("t2"), "", now.Add(2*time.Minute)); err != nil || d.TokenHash != tok("t2") {
		t.Errorf("retry by the same device: %+v, %v", d, err)
	}
	if _, _, err := s.Registry().EnrolDevice(ctx, code.Hash, other, tok("t3"), "", now.Add(2*time.Minute)); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("enrol by another device: %v, want ErrInvalidCode", err)
	}
	if _, _, err := s.Registry().EnrolDevice(ctx, code.Hash, phone, tok("t4"), "", now.Add(2*time.Hour)); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("enrol after expiry: %v, want ErrInvalidCode", err)
	}
	// The code that had expired when the second was issued was dropped then.
	if _, _, err := s.Registry().EnrolDevice(ctx, old.Hash, other, tok("t5"), "", now.Add(-2*time.Minute)); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("enrol with a purged code: %v, want ErrInvalidCode", err)
	}
	if _, _, err := s.Registry().EnrolDevice(ctx, sha256.Sum256([]byte("NEVER")), other, tok("t6"), "", now); !errors.Is(err, boltstore.ErrInvalidCode) {
		t.Errorf("unknown code: %v, want ErrInvalidCode", err)
	}
}

// TestEnrolDeviceBindsIdentities: a fresh code cannot take over an enrolled
// replica, active or revoked; a replace code re-enrols it (history kept, the
// revocation lifted) or puts a new replica in its place (the old one revoked).
func TestEnrolDeviceBindsIdentities(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "server.db"))
	ctx := t.Context()
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	put := func(name string, c boltstore.EnrolCode) [32]byte {
		c.Hash, c.Expiry = sha256.Sum256([]byte(name)), now.Add(time.Hour)
		if len(c.Areas) == 0 {
			c.Areas = []string{villageA}
		}
		if err := s.Registry().PutEnrolCode(ctx, c, now); err != nil {
			t.Fatal(err)
		}
		return c.Hash
	}
	victim, attacker, newPhone := replicaID("victim"), replicaID("attacker"), replicaID("new phone")
	tok := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	if _, _, err := s.Registry().EnrolDevice(ctx, put("A", boltstore.EnrolCode{Name: "Dr Li"}), victim, tok("victim"), "", now); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().UpdateActivity(ctx, victim, func(a *boltstore.Activity) { a.Pending = 3 }); err != nil {
		t.Fatal(err)
	}
	// A fresh code with the victim's id is refused, and the victim keeps its token.
	if _, _, err := s.Registry().EnrolDevice(ctx, put("B", boltstore.EnrolCode{}), victim, tok("attacker"), "", now); !errors.Is(err, boltstore.ErrReplicaEnrolled) {
		t.Fatalf("fresh code for an enrolled replica: %v, want ErrReplicaEnrolled", err)
	}
	if d, err := s.Registry().Device(ctx, victim); err != nil || d.TokenHash != tok("victim") {
		t.Errorf("victim after the attempt: %+v, %v", d, err)
	}
	// Revoked, it cannot be enrolled again by a fresh code either, nor by a
	// retry of the code it enrolled with.
	if err := s.Registry().RevokeDevice(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Registry().EnrolDevice(ctx, sha256.Sum256([]byte("A")), victim, tok("retry"), "", now); !errors.Is(err, boltstore.ErrReplicaEnrolled) {
		t.Errorf("a retry of its own code after a revocation: %v, want ErrReplicaEnrolled", err)
	}
	if d, err := s.Registry().Device(ctx, victim); err != nil || !d.Revoked {
		t.Errorf("after the retry: %+v, %v; want still revoked", d, err)
	}
	if _, _, err := s.Registry().EnrolDevice(ctx, put("C", boltstore.EnrolCode{}), victim, tok("again"), "", now); !errors.Is(err, boltstore.ErrReplicaEnrolled) {
		t.Errorf("fresh code for a revoked replica: %v, want ErrReplicaEnrolled", err)
	}
	// A replace code re-enrols it: new token, not revoked, history kept.
	d, _, err := s.Registry().EnrolDevice(ctx, put("D", boltstore.EnrolCode{Name: "Dr Li", Replaces: victim}), victim, tok("restored"), "", now)
	if err != nil || d.Revoked || d.TokenHash != tok("restored") || d.Activity.Pending != 3 {
		t.Fatalf("replace code for the same replica: %+v, %v", d, err)
	}
	// A replace code used by another replica puts it in the old one's place.
	if _, _, err := s.Registry().EnrolDevice(ctx, put("E", boltstore.EnrolCode{Name: "Dr Li", Replaces: victim}), newPhone, tok("new"), "", now); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Registry().Device(ctx, victim); err != nil || !d.Revoked {
		t.Errorf("the replaced device: %+v, %v; want revoked", d, err)
	}
	if _, _, err := s.Registry().EnrolDevice(ctx, put("F", boltstore.EnrolCode{Replaces: victim}), attacker, tok("x"), "", now); err != nil {
		t.Errorf("a replace code is the operator's decision: %v", err)
	}
}

func TestBindOrigins(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "server.db"))
	ctx := t.Context()
	town1, town2, p1, p2 := replicaID("town1"), replicaID("town2"), replicaID("p1"), replicaID("p2")
	if taken, err := s.Registry().BindOrigins(ctx, town1, []syncengine.ReplicaID{p1, town1}); err != nil || len(taken) != 0 {
		t.Fatalf("first binding: %v, %v", taken, err)
	}
	taken, err := s.Registry().BindOrigins(ctx, town2, []syncengine.ReplicaID{p1, p2, town1})
	if err != nil || len(taken) != 2 || taken[p1] != town1 || taken[town1] != town1 {
		t.Errorf("another relay claiming town1's origins: %v, %v", taken, err)
	}
	if taken, err := s.Registry().BindOrigins(ctx, town2, []syncengine.ReplicaID{p2}); err != nil || len(taken) != 0 {
		t.Errorf("town2's own origin again: %v, %v", taken, err)
	}
	// town1 revoked (its server replaced): its origins go to who pushes them.
	if err := s.Registry().PutDevice(ctx, boltstore.Device{ID: town1, Areas: []string{townA}, Relay: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().RevokeDevice(ctx, town1); err != nil {
		t.Fatal(err)
	}
	if taken, err := s.Registry().BindOrigins(ctx, town2, []syncengine.ReplicaID{p1}); err != nil || len(taken) != 0 {
		t.Errorf("an origin of a revoked relay: %v, %v; want it free", taken, err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
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
	if err := s.Registry().PutEnrolCode(t.Context(), c, now); err != nil {
		t.Fatalf("put code after upgrade: %v", err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
}
