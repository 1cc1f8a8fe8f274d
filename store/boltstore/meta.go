package boltstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Keys of the meta bucket that Meta and SetMeta may use start with
// userMetaPrefix, so that they never touch the store's own (schema, replica).
const userMetaPrefix = "x/"

func metaKey(key string) ([]byte, error) {
	if key == "" || strings.ContainsRune(key, 0) {
		return nil, fmt.Errorf("boltstore: meta key %q", key)
	}
	return []byte(userMetaPrefix + key), nil
}

// Meta returns the value stored under key by SetMeta, nil if
// none. Callers (the upstream relay) keep small state there: the pull cursor
// of their upstream, its address and replica id.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	k, err := metaKey(key)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = s.view(ctx, func(t *tx) error {
		if v := t.btx.Bucket(bucketMeta).Get(k); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	})
	return out, err
}

// SetMeta stores value under key in its own transaction.
func (s *Store) SetMeta(ctx context.Context, key string, value []byte) error {
	return s.Update(ctx, func(t syncengine.Tx) error { return t.SetMeta(ctx, key, value) })
}

// Meta returns the value stored under key, in the transaction.
func (t *tx) Meta(ctx context.Context, key string) ([]byte, error) {
	k, err := metaKey(key)
	if err != nil {
		return nil, err
	}
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	if v := t.btx.Bucket(bucketMeta).Get(k); v != nil {
		return append([]byte{}, v...), nil
	}
	return nil, nil
}

// SetMeta stores value under key in the transaction, so that it commits with
// the transaction's other writes (a pull cursor with the batch it follows).
func (t *tx) SetMeta(ctx context.Context, key string, value []byte) error {
	k, err := metaKey(key)
	if err != nil {
		return err
	}
	if err := t.check(ctx); err != nil {
		return err
	}
	return t.btx.Bucket(bucketMeta).Put(k, append([]byte{}, value...))
}
