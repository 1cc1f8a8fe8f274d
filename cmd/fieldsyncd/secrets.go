package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// The server's secret files are the county's ID-hash key (DATA/id-hash.key),
// which devices hash ID numbers with, and a township's token at its county
// (the --token-file of enroll-upstream, the --upstream-token-file of serve).
// When the operator gives a passphrase, in the file named by
// FIELDSYNCD_PASSPHRASE_FILE (preferred: a systemd credential, say, outside
// the data directory) or in FIELDSYNCD_PASSPHRASE, fieldsyncd writes them
// sealed, and seals in place those it finds in clear. A sealed file is
//
//	"fsenc1:" | salt (16 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext and tag
//
// with the key PBKDF2-HMAC-SHA256(passphrase, salt, 600,000 iterations) and
// the file's base name as additional data, so that sealed files swapped or
// renamed do not open. Without a passphrase they are kept in clear (mode
// 0600), as before, with a warning at start. The admin token
// (DATA/admin.token) stays in clear: it is the operator CLI's credential.

// Environment variables that give the passphrase of the server's secret
// files: the file holding it (preferred), or the passphrase itself.
const (
	envPassphraseFile = "FIELDSYNCD_PASSPHRASE_FILE"
	envPassphrase     = "FIELDSYNCD_PASSPHRASE"
)

// sealedPrefix starts a sealed secret file: then the salt, the GCM nonce and
// the ciphertext.
var sealedPrefix = []byte("fsenc1:")

const (
	saltSize  = 16
	nonceSize = 12 // cipher.NewGCM's
	tagSize   = 16
	// maxSecretFile bounds what is read of a secret file or a passphrase
	// file: a key or token sealed takes under a hundred bytes.
	maxSecretFile = 4 << 10
)

// kdfIterations of PBKDF2-HMAC-SHA256, as OWASP recommends (about 0.5 s a
// derivation); a variable so that tests may lower it.
var kdfIterations = 600_000

// Errors of the secret files, wrapped with the file's path and what to do.
var (
	// errSecretLocked is returned when a secret file is sealed and no
	// passphrase was given.
	errSecretLocked = errors.New("sealed with a passphrase")
	// errSecretWrongKey is returned when a sealed secret file does not open
	// with the passphrase given: another passphrase, another file name, or
	// damaged ciphertext (AES-GCM cannot tell them apart).
	errSecretWrongKey = errors.New("does not open with the passphrase")
	// errSecretDamaged is returned when a secret file is too large for a key
	// or token, or too short for a sealed one.
	errSecretDamaged = errors.New("damaged")
)

// secrets reads and writes the server's secret files: sealed with the
// passphrase the environment gave, or in clear without one. It derives a key
// once per salt it meets and seals what it writes with the first salt it
// used, so the files one command writes share a salt and a start pays for
// one derivation. A secrets is used by one goroutine, while a command
// starts; it is not safe for concurrent use.
type secrets struct {
	log        *slog.Logger
	passphrase string // "" keeps the files in clear
	from       string // the variable that gave passphrase, for messages
	file       string // the passphrase file, if one gave it
	salt       []byte // of new seals; nil until a key is derived
	aeads      map[string]cipher.AEAD
	clear      []string // files kept in clear, for warnClear
}

// secretsFromEnv returns the secret files' handler with the passphrase the
// environment gives, or none; it returns an error if FIELDSYNCD_PASSPHRASE_FILE
// names a file that cannot be read or is empty. log receives the sealing of
// clear files and the warning of warnClear, never a secret.
func secretsFromEnv(log *slog.Logger) (*secrets, error) {
	s := &secrets{log: log, aeads: map[string]cipher.AEAD{}}
	if f := os.Getenv(envPassphraseFile); f != "" {
		b, err := readBounded(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envPassphraseFile, err)
		}
		s.passphrase, s.from, s.file = strings.TrimRight(string(b), "\r\n"), envPassphraseFile, f
		if s.passphrase == "" {
			return nil, fmt.Errorf("%s: %s holds no passphrase", envPassphraseFile, f)
		}
	} else if p := os.Getenv(envPassphrase); p != "" {
		s.passphrase, s.from = p, envPassphrase
	}
	return s, nil
}

// read returns the content of the secret file at path, opened if sealed,
// once check (what the content must be) accepts it. A file in clear is sealed
// in place when a passphrase was given. The error wraps fs.ErrNotExist when
// there is no file, errSecretLocked when it is sealed and no passphrase was
// given, errSecretWrongKey when it does not open with the one given,
// errSecretDamaged when it cannot be a key or token, or is check's; the
// messages name the file and, when it helps, the variable to set.
func (s *secrets) read(path string, check func([]byte) error) ([]byte, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(b, sealedPrefix) {
		if err := check(b); err != nil {
			return nil, err
		}
		if s.passphrase == "" {
			s.clear = append(s.clear, path)
			return b, nil
		}
		if err := s.write(path, b); err != nil {
			return nil, fmt.Errorf("seal %s in place: %w", path, err)
		}
		s.log.Info("secret file sealed with the passphrase", "file", path, "passphrase_from", s.from)
		return b, nil
	}
	if s.passphrase == "" {
		return nil, fmt.Errorf("%s is %w: set %s to the file holding the passphrase (or %s to the passphrase)",
			path, errSecretLocked, envPassphraseFile, envPassphrase)
	}
	sealed := b[len(sealedPrefix):]
	if len(sealed) < saltSize+nonceSize+tagSize {
		return nil, fmt.Errorf("%s is %w: %d bytes, too short for a sealed secret: restore it from backup", path, errSecretDamaged, len(b))
	}
	aead, err := s.aead(sealed[:saltSize])
	if err != nil {
		return nil, err
	}
	nonce, ciphertext := sealed[saltSize:saltSize+nonceSize], sealed[saltSize+nonceSize:]
	out, err := aead.Open(nil, nonce, ciphertext, []byte(filepath.Base(path)))
	if err != nil {
		want := "the file holding the passphrase it was sealed with"
		if s.from == envPassphrase {
			want = "the passphrase it was sealed with"
		}
		return nil, fmt.Errorf("%s %w of %s: set %s to %s; if it is that one, the file was renamed or is damaged: restore it from backup",
			path, errSecretWrongKey, s.from, s.from, want)
	}
	if err := check(out); err != nil {
		return nil, err
	}
	return out, nil
}

// write replaces the secret file at path with content, sealed when a
// passphrase was given, mode 0600; the file is whole or untouched after a
// crash.
func (s *secrets) write(path string, content []byte) error {
	if s.passphrase == "" {
		s.clear = append(s.clear, path)
		return writeFileAtomic(path, content)
	}
	if s.salt == nil {
		salt := make([]byte, saltSize)
		rand.Read(salt)
		if _, err := s.aead(salt); err != nil {
			return err
		}
	}
	aead := s.aeads[string(s.salt)]
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	sealed := append(append(bytes.Clone(sealedPrefix), s.salt...), nonce...)
	sealed = aead.Seal(sealed, nonce, content, []byte(filepath.Base(path)))
	return writeFileAtomic(path, sealed)
}

// warnInside logs a warning when the passphrase file lies inside dir, the
// data directory: a copy of the directory would then open its sealed secrets.
func (s *secrets) warnInside(dir string) {
	if s.file == "" {
		return
	}
	f, errF := filepath.Abs(s.file)
	d, errD := filepath.Abs(dir)
	if errF != nil || errD != nil {
		return
	}
	if rel, err := filepath.Rel(d, f); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		s.log.Warn("the passphrase file lies inside the data directory: a copy of the directory opens its sealed secrets; keep it elsewhere (a systemd credential, another volume)",
			"file", s.file, "variable", envPassphraseFile)
	}
}

// warnClear logs, once, that the secret files read or written so far are
// kept in clear and which variable seals them; nothing with a passphrase.
func (s *secrets) warnClear() {
	if s.passphrase != "" || len(s.clear) == 0 {
		return
	}
	s.log.Warn("secret files kept in clear: set "+envPassphraseFile+" to a file holding a passphrase (or "+envPassphrase+") to seal them",
		"files", s.clear)
	s.clear = nil
}

// aead returns the cipher of the key derived from the passphrase and salt,
// deriving it on first use.
func (s *secrets) aead(salt []byte) (cipher.AEAD, error) {
	if a, ok := s.aeads[string(salt)]; ok {
		return a, nil
	}
	key, err := pbkdf2.Key(sha256.New, s.passphrase, salt, kdfIterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s.aeads[string(salt)] = a
	if s.salt == nil {
		s.salt = bytes.Clone(salt)
	}
	return a, nil
}

// readBounded reads the file at path, refusing one over maxSecretFile bytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s is %w: larger than %d bytes, too large for a key, token or passphrase: restore it from backup", path, errSecretDamaged, maxSecretFile)
	}
	return b, nil
}

// writeFileAtomic replaces the file at path with b, mode 0600: a temporary
// file beside it, synced, renamed over it, and the directory synced.
func writeFileAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
