package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fieldsync/fieldsync/server"
)

// idHashKeyFile is the county's ID-hash key in the data directory.
const idHashKeyFile = "id-hash.key"

// enrollUpstream runs 'fieldsyncd enroll-upstream'.
func enrollUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("enroll-upstream", flag.ContinueOnError)
	fl.SetOutput(stderr)
	data := fl.String("data", "data", "data `directory` of this township server (created if missing)")
	area := fl.String("area", "", "this township's 9-digit area `prefix`")
	addr := fl.String("upstream", "", "`address` of the county server")
	code := fl.String("code", "", "enrolment `code` the county's operator issued with 'fieldsync admin device add --relay'")
	tokenFile := fl.String("token-file", "", "`file` to write the township's token at the county to (mode 0600)")
	caFile := fl.String("upstream-ca", "", "PEM `file` of the CA that signed the county's certificate")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *code == "" || *tokenFile == "" {
		return errors.New("enroll-upstream needs --upstream, --code and --token-file")
	}
	tlsCfg, err := upstreamTLS(*caFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return err
	}
	sec, err := secretsFromEnv(slog.New(slog.NewJSONHandler(stderr, nil)))
	if err != nil {
		return err
	}
	keyPath := filepath.Join(*data, idHashKeyFile)
	key, err := sec.read(keyPath, checkIDHashKey(keyPath))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	srv, err := server.New(server.Config{DataDir: *data, Area: *area, IDHashKey: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer srv.Close()
	token, countyKey, err := srv.EnrollUpstream(ctx, *addr, *code, tlsCfg)
	if err != nil {
		return err
	}
	// Devices of every township hash ID numbers with the county's key, so
	// that a person is recognised across townships.
	switch {
	case len(countyKey) == 0:
	case key == nil:
		if err := sec.write(keyPath, countyKey); err != nil {
			return err
		}
	case !bytes.Equal(key, countyKey):
		return fmt.Errorf("%s holds another ID-hash key than the county's: devices enrolled here hashed ID numbers with it; move it aside only if no device was enrolled, then enrol again", keyPath)
	}
	if err := sec.write(*tokenFile, []byte(token+"\n")); err != nil {
		return err
	}
	sec.warnClear()
	fmt.Fprintf(stdout, "fieldsyncd: township replica %v enrolled with %s; token in %s\n", srv.Replica(), *addr, *tokenFile)
	return nil
}

// upstreamConfig reads the relay's token file, with sec, and CA.
func upstreamConfig(sec *secrets, addr, tokenFile, caFile string) (server.Upstream, error) {
	b, err := sec.read(tokenFile, func(b []byte) error {
		if len(bytes.TrimSpace(b)) == 0 {
			return fmt.Errorf("%s is empty: run fieldsyncd enroll-upstream again", tokenFile)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return server.Upstream{}, fmt.Errorf("upstream token: %w (run fieldsyncd enroll-upstream first)", err)
	}
	if err != nil {
		return server.Upstream{}, fmt.Errorf("upstream token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	tlsCfg, err := upstreamTLS(caFile)
	if err != nil {
		return server.Upstream{}, err
	}
	return server.Upstream{Addr: addr, Token: token, TLS: tlsCfg}, nil
}

// upstreamTLS is the TLS configuration trusting the CA in caFile; nil when
// caFile is empty (plaintext, loopback only).
func upstreamTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("upstream CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream CA: %s holds no PEM certificate", caFile)
	}
	// The relay's rounds resume its TLS session with the county (kept in
	// memory: a restart makes one full handshake).
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, ClientSessionCache: tls.NewLRUClientSessionCache(4)}, nil
}
