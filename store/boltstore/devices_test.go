package boltstore_test

import (
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/store/boltstore"
)

func TestDeviceRegistry(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	a, b := replicaID("phone-a"), replicaID("phone-b")
	tokA, tokB := sha256.Sum256([]byte("token a")), sha256.Sum256([]byte("token b"))
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

	devA := boltstore.Device{ID: a, Name: "Dr Li, Xiaozhai", Areas: []string{villageA, villageB}, TokenHash: tokA, Created: created}
	if err := s.Registry().PutDevice(ctx, devA); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().PutDevice(ctx, boltstore.Device{ID: b, Name: "Dr Wang", Areas: []string{townB}, TokenHash: tokB}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Registry().Device(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != devA.Name || !slices.Equal(got.Areas, devA.Areas) || got.TokenHash != tokA || !got.Created.Equal(created) || got.Revoked {
		t.Errorf("Device(a) = %+v, want %+v", got, devA)
	}
	if got, err := s.Registry().DeviceByTokenHash(ctx, tokB); err != nil || got.ID != b || got.Created.IsZero() {
		t.Errorf("DeviceByTokenHash(b) = %+v, %v; want b with a creation time", got, err)
	}

	// A new token replaces the old one in the index.
	tokA2 := sha256.Sum256([]byte("token a, renewed"))
	devA.TokenHash, devA.Created = tokA2, time.Time{}
	if err := s.Registry().PutDevice(ctx, devA); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry().DeviceByTokenHash(ctx, tokA); !errors.Is(err, boltstore.ErrNoDevice) {
		t.Errorf("old token: %v, want ErrNoDevice", err)
	}
	if got, err := s.Registry().DeviceByTokenHash(ctx, tokA2); err != nil || got.ID != a || !got.Created.Equal(created) {
		t.Errorf("new token: %+v, %v; want a, keeping its creation time", got, err)
	}
	if err := s.Registry().PutDevice(ctx, boltstore.Device{ID: replicaID("thief"), TokenHash: tokB}); !errors.Is(err, boltstore.ErrTokenInUse) {
		t.Errorf("second device with b's token: %v, want ErrTokenInUse", err)
	}

	// Revoking keeps the device, and its token, known.
	if err := s.Registry().RevokeDevice(ctx, b); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Registry().DeviceByTokenHash(ctx, tokB)
	if err != nil || !rev.Revoked || rev.RevokedAt.IsZero() {
		t.Fatalf("revoked device by token: %+v, %v; want revoked with a time", rev, err)
	}
	if err := s.Registry().RevokeDevice(ctx, b); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Registry().Device(ctx, b); !again.RevokedAt.Equal(rev.RevokedAt) {
		t.Errorf("second revoke moved RevokedAt from %v to %v", rev.RevokedAt, again.RevokedAt)
	}

	all, err := s.Registry().Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != a || all[1].ID != b {
		t.Errorf("Devices = %+v, want a and b in id order", all)
	}

	unknown := replicaID("nobody")
	if _, err := s.Registry().Device(ctx, unknown); !errors.Is(err, boltstore.ErrNoDevice) {
		t.Errorf("Device(unknown): %v, want ErrNoDevice", err)
	}
	if err := s.Registry().RevokeDevice(ctx, unknown); !errors.Is(err, boltstore.ErrNoDevice) {
		t.Errorf("RevokeDevice(unknown): %v, want ErrNoDevice", err)
	}
	if _, err := s.Registry().DeviceByTokenHash(ctx, [32]byte{}); !errors.Is(err, boltstore.ErrNoDevice) {
		t.Errorf("DeviceByTokenHash(zero): %v, want ErrNoDevice", err)
	}
}

func TestPutDeviceRejectsInvalid(t *testing.T) {
	s := openStore(t)
	for _, d := range []boltstore.Device{
		{Name: "no id"},
		{ID: replicaID("x"), Areas: []string{"5301x"}},
		{ID: replicaID("x"), Areas: []string{""}},
		{ID: replicaID("x"), Areas: []string{"5301020010011"}},
	} {
		if err := s.Registry().PutDevice(t.Context(), d); !errors.Is(err, boltstore.ErrInvalidDevice) {
			t.Errorf("PutDevice(%+v) = %v, want ErrInvalidDevice", d, err)
		}
	}
}

func TestDevicesSurviveReopen(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	id := replicaID("phone")
	tok := sha256.Sum256([]byte("t"))
	if err := s.Registry().PutDevice(ctx, boltstore.Device{ID: id, Name: "p", TokenHash: tok}); err != nil {
		t.Fatal(err)
	}
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if got, err := s.Registry().DeviceByTokenHash(ctx, tok); err != nil || got.ID != id || got.Name != "p" {
		t.Errorf("after reopen: %+v, %v", got, err)
	}
}
