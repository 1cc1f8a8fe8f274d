package fieldsync

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/fieldsync/fieldsync/store/sqlitestore"
)

// The replica's secrets (the device token, which syncs as the device, the
// county's ID-hash key, and the TLS session it resumes, tlssession.go) and its people (every record state, log entry and
// read-model record, with the read model's names, addresses, masked ID numbers
// and birth dates left empty: sqlitestore.Store.Unlock) are kept encrypted
// with AES-256-GCM when the app gives a key: WithSecretKey (on Android, a key
// kept in the Keystore) or WithPassphrase (the CLI, from a file or an
// environment variable). The records' key is derived from it (HKDF-SHA256).
// Without either they are kept in clear, in a file readable by its owner only.

// ErrSecretsLocked is returned when the replica's secrets are encrypted and
// the client was opened without their key, or with another key.
var ErrSecretsLocked = errors.New("fieldsync: the replica's token and keys are encrypted: open it with its key (WithSecretKey or WithPassphrase)")

const (
	metaKDFSalt = "sdk_kdf_salt" // the salt of WithPassphrase's key derivation
	// kdfIterations of PBKDF2-HMAC-SHA256 for a passphrase, as OWASP
	// recommends.
	kdfIterations = 600_000
)

// secretPrefix starts an encrypted meta value: then the GCM nonce and the
// sealed value.
var secretPrefix = []byte("fsenc1:")

// secretMetas are the meta keys kept encrypted.
var secretMetas = []string{metaToken, metaIDHashKey, metaTLSSession}

// WithSecretKey encrypts the replica's secrets (device token, ID-hash key)
// and records with key, 32 bytes the app keeps outside the replica (on
// Android, in the Keystore). Secrets and records kept in clear by an earlier
// open are encrypted at Open. A replica encrypted so opens only with its key.
func WithSecretKey(key []byte) Option {
	return func(c *Client) { c.secretKey = bytes.Clone(key) }
}

// WithPassphrase is WithSecretKey with a key derived from passphrase
// (PBKDF2-HMAC-SHA256, 600,000 iterations, a random salt kept in the
// replica): for a person typing it, or a file only they can read.
func WithPassphrase(passphrase string) Option {
	return func(c *Client) { c.passphrase = passphrase }
}

// unlock sets up the secrets' key at Open and encrypts secrets kept in clear.
func (c *Client) unlock(ctx context.Context) error {
	if c.passphrase != "" {
		salt, err := c.store.Meta(ctx, metaKDFSalt)
		if err != nil {
			return err
		}
		if len(salt) == 0 {
			salt = make([]byte, 16)
			rand.Read(salt)
			if err := c.store.SetMeta(ctx, metaKDFSalt, salt); err != nil {
				return err
			}
		}
		if c.secretKey, err = pbkdf2.Key(sha256.New, c.passphrase, salt, kdfIterations, 32); err != nil {
			return err
		}
	}
	if c.secretKey == nil {
		if c.store.Sealed() {
			return ErrSecretsLocked
		}
		return nil
	}
	if len(c.secretKey) != 32 {
		return fmt.Errorf("fieldsync: secret key of %d bytes, want 32", len(c.secretKey))
	}
	block, err := aes.NewCipher(c.secretKey)
	if err != nil {
		return err
	}
	if c.aead, err = cipher.NewGCM(block); err != nil {
		return err
	}
	for _, k := range secretMetas {
		v, err := c.store.Meta(ctx, k)
		if err != nil {
			return err
		}
		if len(v) == 0 || bytes.HasPrefix(v, secretPrefix) {
			if _, err := c.secret(ctx, k); err != nil { // the right key?
				return err
			}
			continue
		}
		if err := c.setSecret(ctx, k, v); err != nil {
			return err
		}
	}
	// The records' key is derived from the secrets' key, for its own use.
	recordsKey, err := hkdf.Key(sha256.New, c.secretKey, nil, "fieldsync replica records v1", 32)
	if err != nil {
		return err
	}
	switch err := c.store.Unlock(ctx, recordsKey); {
	case errors.Is(err, sqlitestore.ErrWrongKey):
		return ErrSecretsLocked
	case errors.Is(err, sqlitestore.ErrScrubPending):
		// Sealed and usable; the file is rid of its old clear pages at a
		// later open.
		return nil
	default:
		return err
	}
}

// secret returns the meta value k, decrypted.
func (c *Client) secret(ctx context.Context, k string) ([]byte, error) {
	v, err := c.store.Meta(ctx, k)
	if err != nil || !bytes.HasPrefix(v, secretPrefix) {
		return v, err
	}
	if c.aead == nil {
		return nil, ErrSecretsLocked
	}
	sealed := v[len(secretPrefix):]
	n := c.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrSecretsLocked
	}
	out, err := c.aead.Open(nil, sealed[:n], sealed[n:], []byte(k))
	if err != nil {
		return nil, ErrSecretsLocked
	}
	return out, nil
}

// setSecret stores v as meta value k, encrypted when the client has a key.
func (c *Client) setSecret(ctx context.Context, k string, v []byte) error {
	if c.aead == nil {
		return c.store.SetMeta(ctx, k, append([]byte{}, v...))
	}
	nonce := make([]byte, c.aead.NonceSize())
	rand.Read(nonce)
	sealed := append(bytes.Clone(secretPrefix), nonce...)
	sealed = c.aead.Seal(sealed, nonce, v, []byte(k))
	return c.store.SetMeta(ctx, k, sealed)
}
