package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	// PBKDF2 at 600,000 iterations costs about 0.5 s a derivation, several
	// seconds under the race detector; the sealing is the same with fewer.
	kdfIterations = 1_000
	os.Exit(m.Run())
}

// usePassphrase gives the fieldsyncd runs of the test passphrase, in a file
// outside their data directories named by FIELDSYNCD_PASSPHRASE_FILE; ""
// gives none.
func usePassphrase(t *testing.T, passphrase string) {
	t.Helper()
	t.Setenv(envPassphrase, "")
	if passphrase == "" {
		t.Setenv(envPassphraseFile, "")
		return
	}
	f := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(f, []byte(passphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envPassphraseFile, f)
}

// openSealed returns the content of the sealed secret file at path, opened
// with the passphrase the environment gives.
func openSealed(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, sealedPrefix) {
		t.Fatalf("%s is not sealed: it starts %q", filepath.Base(path), b[:min(len(b), len(sealedPrefix))])
	}
	sec, err := secretsFromEnv(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	b, err = sec.read(path, func([]byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forms are the ways a secret could be written out: as is, in hex, in
// base64.
func forms(secret []byte) [][]byte {
	return [][]byte{
		secret,
		[]byte(hex.EncodeToString(secret)),
		[]byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawURLEncoding.EncodeToString(secret)),
	}
}

// requireNowhere fails the test if any file under dirs, or logs, holds a
// form of a secret (named in failures by what).
func requireNowhere(t *testing.T, what string, secret []byte, logs string, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if strings.Contains(d.Name(), ".new-") {
				t.Errorf("%s: a temporary file left behind", path)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, f := range forms(secret) {
				if bytes.Contains(b, f) {
					t.Errorf("%s holds the %s in clear (%d bytes of it)", path, what, len(f))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range forms(secret) {
		if strings.Contains(logs, string(f)) {
			t.Errorf("the logs show the %s", what)
		}
	}
}

// requireSealed fails the test unless the files at paths are sealed, mode
// 0600, and share one salt (their key was derived once).
func requireSealed(t *testing.T, paths ...string) {
	t.Helper()
	var salt []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", p, err)
		}
		if !bytes.HasPrefix(b, sealedPrefix) || len(b) < len(sealedPrefix)+saltSize {
			t.Errorf("%s is not sealed", p)
			continue
		}
		s := b[len(sealedPrefix) : len(sealedPrefix)+saltSize]
		if salt == nil {
			salt = s
		} else if !bytes.Equal(s, salt) {
			t.Errorf("%s is sealed with another salt than %s: its key was derived again", p, paths[0])
		}
	}
}

// TestNewServersSealTheirSecrets: a county and a township started with a
// passphrase never write the ID-hash key or the township's token in clear,
// in any file of their data directories (the token file is in the
// township's) or in their logs; the phone gets the county's key, and the
// township relays to the county with the sealed token.
func TestNewServersSealTheirSecrets(t *testing.T) {
	usePassphrase(t, "县卫生局 2024 的口令")
	root := t.TempDir()
	countyDir, townDir := filepath.Join(root, "county"), filepath.Join(root, "township")
	tokenFile := filepath.Join(townDir, "upstream.token")
	countyAddr, stopCounty := serveIn(t, countyDir, "--area", "532523")
	logs := enrolTownship(t, countyAddr.String(), countyDir, townDir, tokenFile)
	townAddr, stopTown := serveIn(t, townDir, "--upstream", countyAddr.String(), "--upstream-token-file", tokenFile, "--upstream-every", "1h")
	phone := enrolPhone(t, townAddr.String(), townDir, filepath.Join(root, "phone.db"))
	key, err := phone.IDHashKey(t.Context())
	if err != nil || len(key) != 32 {
		t.Fatalf("the phone's ID-hash key: %x, %v", key, err)
	}
	pushHousehold(t, phone)
	waitCountyLog(t, countyAddr.String(), countyDir, 1)
	logs += stopTown() + stopCounty()

	if got := openSealed(t, filepath.Join(countyDir, idHashKeyFile)); !bytes.Equal(got, key) {
		t.Errorf("the county's id-hash.key opens to another key than the phone's")
	}
	token := bytes.TrimSpace(openSealed(t, tokenFile))
	if len(token) < 32 {
		t.Fatalf("the token file opens to %d bytes, want a token", len(token))
	}
	requireSealed(t, filepath.Join(countyDir, idHashKeyFile))
	requireSealed(t, filepath.Join(townDir, idHashKeyFile), tokenFile)
	// The phone, opened without a key, keeps its ID-hash key in clear.
	requireNowhere(t, "ID-hash key", key, logs, countyDir, townDir)
	requireNowhere(t, "upstream token", token, logs, countyDir, townDir)
	if strings.Contains(logs, "kept in clear") {
		t.Errorf("with a passphrase, a warning of secrets kept in clear:\n%s", logs)
	}
}

// TestClearSecretsSealedAtFirstStart: servers started without a passphrase
// keep their secrets in clear and warn once a start; their first start with a
// passphrase seals them in place, logging the files' names, and they serve on:
// a phone enrolling gets the same ID-hash key, and the township relays with
// its token.
func TestClearSecretsSealedAtFirstStart(t *testing.T) {
	usePassphrase(t, "")
	root := t.TempDir()
	countyDir, townDir := filepath.Join(root, "county"), filepath.Join(root, "township")
	tokenFile := filepath.Join(townDir, "upstream.token")
	countyAddr, stopCounty := serveIn(t, countyDir, "--area", "532523")
	enrolLogs := enrolTownship(t, countyAddr.String(), countyDir, townDir, tokenFile)
	countyLogs := stopCounty()
	for name, logs := range map[string]string{"serve": countyLogs, "enroll-upstream": enrolLogs} {
		if n := strings.Count(logs, "kept in clear"); n != 1 || !strings.Contains(logs, envPassphraseFile) {
			t.Errorf("%s without a passphrase warned %d times of secrets kept in clear, want once naming %s:\n%s", name, n, envPassphraseFile, logs)
		}
	}
	key, err := os.ReadFile(filepath.Join(countyDir, idHashKeyFile))
	if err != nil || len(key) != 32 {
		t.Fatalf("clear id-hash.key: %d bytes, %v", len(key), err)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token = bytes.TrimSpace(token)

	usePassphrase(t, "县卫生局 2024 的口令")
	countyAddr, stopCounty = serveIn(t, countyDir)
	townAddr, stopTown := serveIn(t, townDir, "--upstream", countyAddr.String(), "--upstream-token-file", tokenFile, "--upstream-every", "1h")
	phone := enrolPhone(t, townAddr.String(), townDir, filepath.Join(root, "phone.db"))
	if got, err := phone.IDHashKey(t.Context()); err != nil || !bytes.Equal(got, key) {
		t.Errorf("after sealing, a phone got the ID-hash key %x (%v), want the county's %x", got, err, key)
	}
	pushHousehold(t, phone)
	waitCountyLog(t, countyAddr.String(), countyDir, 1)
	townLogs := stopTown()
	countyLogs = stopCounty()

	for _, c := range []struct {
		logs  string
		files []string
	}{
		{countyLogs, []string{filepath.Join(countyDir, idHashKeyFile)}},
		{townLogs, []string{filepath.Join(townDir, idHashKeyFile), tokenFile}},
	} {
		for _, f := range c.files {
			if !strings.Contains(c.logs, `"secret file sealed with the passphrase","file":"`+f+`"`) {
				t.Errorf("the first start with a passphrase did not log the sealing of %s:\n%s", f, c.logs)
			}
		}
		if strings.Contains(c.logs, "kept in clear") {
			t.Errorf("with a passphrase, a warning of secrets kept in clear:\n%s", c.logs)
		}
		requireSealed(t, c.files...)
	}
	requireNowhere(t, "ID-hash key", key, countyLogs+townLogs, countyDir, townDir)
	requireNowhere(t, "upstream token", token, countyLogs+townLogs, countyDir, townDir)
}

// TestSealedSecretsRefused: a server whose secret files are sealed does not
// start without their passphrase, with another, or when a file is damaged,
// truncated or swapped for another sealed file; the error names the file and
// what to do. enroll-upstream refuses the same way, before it spends the code.
func TestSealedSecretsRefused(t *testing.T) {
	const pass = "乡卫生院的口令"
	usePassphrase(t, pass)
	dir := filepath.Join(t.TempDir(), "data")
	_, stop := serveIn(t, dir, "--area", "532523101")
	stop()
	keyPath := filepath.Join(dir, idHashKeyFile)
	sealed, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	tokenPath := filepath.Join(t.TempDir(), "upstream.token")
	sec, err := secretsFromEnv(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sec.write(tokenPath, bytes.Repeat([]byte("t"), 32)); err != nil {
		t.Fatal(err)
	}
	sealedToken, err := os.ReadFile(tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	otherFile := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(otherFile, []byte("另一个口令\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		file, pass    string // FIELDSYNCD_PASSPHRASE_FILE, FIELDSYNCD_PASSPHRASE
		key, token    []byte // id-hash.key; the token file, nil for no --upstream
		wantErr       error  // nil: any
		wantFile      string
		wantSaying    []string
		enrollRefuses bool
	}{
		{"no passphrase", "", "", sealed, nil, errSecretLocked, keyPath, []string{envPassphraseFile, envPassphrase}, true},
		{"another passphrase", "", "another", sealed, nil, errSecretWrongKey, keyPath, []string{envPassphrase}, true},
		{"another passphrase file", otherFile, "", sealed, nil, errSecretWrongKey, keyPath, []string{envPassphraseFile}, false},
		{"a missing passphrase file", filepath.Join(dir, "nothing"), "", sealed, nil, fs.ErrNotExist, envPassphraseFile, nil, false},
		{"truncated", "", pass, sealed[:len(sealedPrefix)+20], nil, errSecretDamaged, keyPath, []string{"too short"}, false},
		{"short of a byte", "", pass, sealed[:len(sealed)-1], nil, errSecretWrongKey, keyPath, []string{"damaged"}, false},
		{"garbled", "", pass, flip(sealed, len(sealed)-20), nil, errSecretWrongKey, keyPath, []string{"damaged"}, false},
		{"another salt", "", pass, flip(sealed, len(sealedPrefix)), nil, errSecretWrongKey, keyPath, nil, false},
		{"too large", "", pass, append(bytes.Clone(sealed), make([]byte, 5000)...), nil, errSecretDamaged, keyPath, []string{"too large"}, false},
		{"swapped for the token", "", pass, sealedToken, nil, errSecretWrongKey, keyPath, []string{"renamed"}, false},
		{"a garbled token", "", pass, sealed, flip(sealedToken, len(sealedToken)-1), errSecretWrongKey, tokenPath, nil, false},
		{"a sealed token without a passphrase", "", "", make([]byte, 32), sealedToken, errSecretLocked, tokenPath, []string{envPassphraseFile}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envPassphraseFile, tt.file)
			t.Setenv(envPassphrase, tt.pass)
			if err := os.WriteFile(keyPath, tt.key, 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}
			if tt.token != nil {
				if err := os.WriteFile(tokenPath, tt.token, 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--upstream", "127.0.0.1:1", "--upstream-token-file", tokenPath)
			}
			var out, logs bytes.Buffer
			err := run(t.Context(), args, &out, &logs, nil)
			if err == nil {
				t.Fatal("serve started")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("serve: %v, want %v", err, tt.wantErr)
			}
			for _, want := range append([]string{tt.wantFile}, tt.wantSaying...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("serve: %v\nwant it to say %q", err, want)
				}
			}
			if tt.enrollRefuses {
				// The address is not a county's: enroll-upstream fails there
				// if it gets that far.
				err := run(t.Context(), []string{"enroll-upstream", "--data", dir, "--upstream", "127.0.0.1:1", "--code", "AAAA-BBBB", "--token-file", filepath.Join(t.TempDir(), "token")}, &out, &logs, nil)
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), keyPath) {
					t.Errorf("enroll-upstream: %v, want the refusal of %s", err, keyPath)
				}
			}
			if b, _ := os.ReadFile(keyPath); !bytes.Equal(b, tt.key) {
				t.Errorf("the refused start changed %s", keyPath)
			}
		})
	}
	// Whole again, the file opens.
	if err := os.WriteFile(keyPath, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	usePassphrase(t, pass)
	_, stop = serveIn(t, dir)
	stop()
}

// TestPassphraseFileInsideDataWarned: a passphrase file kept in the data
// directory (which a copy of the directory would carry along) is warned
// about; one kept elsewhere is not.
func TestPassphraseFileInsideDataWarned(t *testing.T) {
	data, other := t.TempDir(), t.TempDir()
	for _, c := range []struct {
		file string
		warn bool
	}{
		{filepath.Join(data, "passphrase"), true},
		{filepath.Join(data, "sub", "passphrase"), true},
		{filepath.Join(other, "passphrase"), false},
		{filepath.Join(data+"-elsewhere", "passphrase"), false},
	} {
		var logs bytes.Buffer
		s := &secrets{log: slog.New(slog.NewTextHandler(&logs, nil)), file: c.file}
		s.warnInside(data)
		if got := strings.Contains(logs.String(), "inside the data directory"); got != c.warn {
			t.Errorf("passphrase file %s: warned %v, want %v (%s)", c.file, got, c.warn, logs.String())
		}
	}
}
