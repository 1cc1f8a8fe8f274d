// Command fieldsyncd is the fieldsync server, run by a township health centre
// or a county health bureau.
//
//	fieldsyncd serve --data DIR [--listen ADDR] [--area PREFIX] [--tls-cert FILE --tls-key FILE]
//	                 [--upstream ADDR --upstream-token-file FILE [--upstream-ca FILE] [--upstream-every DUR]]
//	                 [--log-retention DUR] [--compact-every DUR] [--http ADDR]
//	fieldsyncd enroll-upstream --data DIR --area PREFIX --upstream ADDR --code CODE --token-file FILE [--upstream-ca FILE]
//
// --area is the area the server serves: a township's 9-digit prefix or a
// county's 6; devices are enrolled only within it. On first start it creates its replica identity and store in DIR, an admin
// token (DIR/admin.token, mode 0600) for the operator's fieldsync CLI, and the
// county's ID-hash key (DIR/id-hash.key) handed to devices at enrolment. It
// refuses to listen without TLS on anything but a loopback address.
//
// A township server relays to its county: enroll-upstream exchanges a code
// the county's operator issued (fieldsync admin device add --relay) for the
// township's token, written to --token-file (mode 0600), and takes the
// county's ID-hash key; serve --upstream then syncs with the county at once,
// every --upstream-every, soon after devices push, and with backoff while the
// uplink is down. Each sync also sends the county the township's audit trail
// of admin actions (fieldsync admin audit) that it does not hold yet.
//
// The ID-hash key and the township's token are sealed (AES-256-GCM, the key
// derived from a passphrase; secrets.go) when the environment gives a
// passphrase: FIELDSYNCD_PASSPHRASE_FILE names a file holding it (a systemd
// credential outside DIR, say), or FIELDSYNCD_PASSPHRASE holds it. Files
// found in clear are then sealed in place; sealed ones refuse to open without
// it. Without a passphrase they stay in clear (mode 0600), with a warning at
// start. The admin token stays in clear: it is the operator CLI's own.
//
// --rules FILE sets a county's survey rules. A start with other rules than
// the last start (the first start with a rules file, a changed file, a start
// back on the defaults) is recorded in the audit trail as a rules_change by
// the OS user running serve, from "local".
//
// --http ADDR also serves the read-only web page for county and township
// staff (package web) on ADDR, over TLS with the same certificate when
// --tls-cert is given; without it only on loopback. Staff sign in with a
// credential made by fieldsync admin user add.
//
// Every --compact-every (an hour) the server compacts its log: it drops the changes every
// device has pulled, and those that arrived more than --log-retention (30
// days) ago, but never what its county has not acknowledged. A device away
// longer pushes its work, then starts again from a snapshot.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fieldsyncd:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage:
  fieldsyncd serve --data DIR [--listen ADDR] [--area PREFIX] [--tls-cert FILE --tls-key FILE]
                   [--upstream ADDR --upstream-token-file FILE [--upstream-ca FILE]] [--rules FILE]
                   [--backup-dir DIR [--backup-every 24h]] [--http ADDR]
  fieldsyncd enroll-upstream --data DIR --area PREFIX --upstream ADDR --code CODE --token-file FILE [--upstream-ca FILE]
  fieldsyncd recover --data DIR
  fieldsyncd rewrite --data DIR

Run 'fieldsyncd serve --help' or 'fieldsyncd enroll-upstream --help' for the flags.
Set FIELDSYNCD_PASSPHRASE_FILE to a file holding a passphrase (or
FIELDSYNCD_PASSPHRASE to one) to keep the ID-hash key and upstream token sealed.
`

// run runs the command in args. ready, if not nil, receives the address the
// server listens on once it serves.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- net.Addr) error {
	if len(args) == 0 || (args[0] != "serve" && args[0] != "enroll-upstream" && args[0] != "recover" && args[0] != "rewrite") {
		fmt.Fprint(stderr, usage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errors.New("the commands are serve, enroll-upstream, recover and rewrite")
	}
	if args[0] == "rewrite" {
		return rewriteStore(ctx, args[1:], stdout, stderr)
	}
	if args[0] == "enroll-upstream" {
		return enrollUpstream(ctx, args[1:], stdout, stderr)
	}
	if args[0] == "recover" {
		return recoverStore(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o serveOptions
	fs.StringVar(&o.data, "data", "data", "data `directory` (created if missing)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:7443", "`address` to listen on")
	fs.StringVar(&o.area, "area", "", "area-code `prefix` served: a township's 9 digits or a county's 6 (recorded in DIR on first start)")
	fs.StringVar(&o.certFile, "tls-cert", "", "TLS certificate `file` (required to listen beyond loopback)")
	fs.StringVar(&o.keyFile, "tls-key", "", "TLS private key `file`")
	fs.StringVar(&o.upstream, "upstream", "", "`address` of the county server to relay to (a township; see enroll-upstream)")
	fs.StringVar(&o.upstreamToken, "upstream-token-file", "", "`file` holding the township's token at the county (written by enroll-upstream)")
	fs.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM `file` of the CA that signed the county's certificate (required for a county beyond loopback)")
	fs.DurationVar(&o.upstreamEvery, "upstream-every", server.DefaultUpstreamEvery, "time between syncs with the county while the uplink is up")
	fs.DurationVar(&o.compactEvery, "compact-every", server.DefaultCompactionInterval, "time between log compactions (0: never compact)")
	fs.DurationVar(&o.logRetention, "log-retention", server.DefaultLogRetention, "how long the log keeps changes some device has not pulled (0: never dropped by age); a device away longer pushes its work, then starts again from a snapshot")
	fs.StringVar(&o.backupDir, "backup-dir", "", "`directory` for an online backup of the store ("+server.BackupFile+"), written at start and every --backup-every; empty: none")
	fs.DurationVar(&o.backupEvery, "backup-every", 24*time.Hour, "time between backups")
	fs.StringVar(&o.rulesFile, "rules", "", "JSON `file` of the survey rules this county sets (self_pay_threshold_bp, min_essential_drug_kinds, min_floor_area_m2, rectify_days); townships and phones receive them when they sync (default: the national defaults)")
	fs.StringVar(&o.httpAddr, "http", "", "`address` to serve the read-only web page for county and township staff on (TLS with --tls-cert; empty: none)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	return serve(ctx, o, stdout, stderr, ready)
}

type serveOptions struct {
	data, listen, area, certFile, keyFile string
	upstream, upstreamToken, upstreamCA   string
	rulesFile, backupDir, httpAddr        string
	backupEvery                           time.Duration
	upstreamEvery                         time.Duration
	logRetention, compactEvery            time.Duration
}

func serve(ctx context.Context, o serveOptions, stdout, stderr io.Writer, ready chan<- net.Addr) error {
	data, listen := o.data, o.listen
	if o.logRetention < 0 {
		return errors.New("--log-retention must be 0 (never by age) or positive")
	}
	if (o.upstream == "") != (o.upstreamToken == "") {
		return errors.New("--upstream and --upstream-token-file go together: give both to relay to a county, or neither")
	}
	rules, err := loadRules(o.rulesFile, o.upstream != "", o.area)
	if err != nil {
		return err
	}
	creds, cert, err := serveTLS(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	key, up, err := serveSecrets(o, log)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{DataDir: data, Area: o.area, IDHashKey: key, Logger: log, Rules: rules, Operator: osUser()})
	if err != nil {
		return err
	}
	defer srv.Close()
	if o.upstream != "" {
		if err := srv.SetUpstream(ctx, up); err != nil {
			return err
		}
	}
	if err := prepareBackups(o); err != nil {
		return err
	}
	// The server's loops run until serve returns; deferred calls run last
	// first, so they stop before the store closes.
	bg := startBackground(ctx, log)
	defer bg.stop()
	bg.serverLoops(srv, o)
	opts := srv.GRPCOptions()
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fieldsyncd: replica %v serving on %s; admin token in %s\n",
		srv.Replica(), lis.Addr(), filepath.Join(data, server.AdminTokenFile))
	log.Info("serving", "addr", lis.Addr().String(), "area", srv.Area(), "tls", creds != nil, "upstream", o.upstream != "")
	if o.httpAddr != "" {
		stopWeb, err := serveWeb(o.httpAddr, srv, cert, log, stdout)
		if err != nil {
			lis.Close()
			return err
		}
		defer stopWeb()
	}
	if ready != nil {
		ready <- lis.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		gs.GracefulStop()
		<-errc
		return nil
	}
}

// serveSecrets reads the county's ID-hash key (made on first start) and,
// for a township relaying to its county, its upstream's settings, with the
// passphrase of FIELDSYNCD_PASSPHRASE_FILE when given.
func serveSecrets(o serveOptions, log *slog.Logger) ([]byte, server.Upstream, error) {
	sec, err := secretsFromEnv(log)
	if err != nil {
		return nil, server.Upstream{}, err
	}
	sec.warnInside(o.data)
	key, err := idHashKey(sec, filepath.Join(o.data, idHashKeyFile))
	if err != nil {
		return nil, server.Upstream{}, err
	}
	var up server.Upstream
	if o.upstream != "" {
		if up, err = upstreamConfig(sec, o.upstream, o.upstreamToken, o.upstreamCA); err != nil {
			return nil, server.Upstream{}, err
		}
		up.Every = o.upstreamEvery
	}
	sec.warnClear()
	return key, up, nil
}

// prepareBackups checks --backup-every and makes --backup-dir, when given.
func prepareBackups(o serveOptions) error {
	if o.backupDir == "" {
		return nil
	}
	if o.backupEvery <= 0 {
		return errors.New("--backup-every must be positive")
	}
	return os.MkdirAll(o.backupDir, 0o700)
}

// serveTLS loads the server's TLS key pair, or without one checks that
// both listen addresses are loopback.
func serveTLS(o serveOptions) (credentials.TransportCredentials, *tls.Certificate, error) {
	if o.certFile != "" || o.keyFile != "" {
		c, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("load TLS key pair: %w", err)
		}
		return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS13}), &c, nil
	}
	if err := requireLoopback(o.listen); err != nil {
		return nil, nil, err
	}
	if o.httpAddr != "" {
		if err := requireLoopback(o.httpAddr); err != nil {
			return nil, nil, fmt.Errorf("--http: %w", err)
		}
	}
	return nil, nil, nil
}

// requireLoopback refuses a plaintext listen address that is not loopback.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to serve without TLS on %s: health data may only travel in the clear on loopback; give --tls-cert and --tls-key", addr)
}

// idHashKey reads the county's ID-hash key with sec, creating a random one
// (mode 0600, sealed with a passphrase) on first start.
func idHashKey(sec *secrets, path string) ([]byte, error) {
	key, err := sec.read(path, checkIDHashKey(path))
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		return key, sec.write(path, key)
	}
	return key, err
}

// checkIDHashKey returns the check of secrets.read for the ID-hash key at
// path.
func checkIDHashKey(path string) func([]byte) error {
	return func(key []byte) error {
		if len(key) != 32 {
			return fmt.Errorf("%s holds %d bytes, want a 32-byte key: restore it from backup (devices hash ID numbers with it)", path, len(key))
		}
		return nil
	}
}

// osUser is the name of the OS user running the command, "" if unknown: who
// the audit trail records for a change of the rules at start.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// loadRules reads the survey rules file of --rules. A township relaying to a
// county applies the county's rules, so it may not set its own.
func loadRules(file string, relaying bool, area string) (*fieldsyncv1.Rules, error) {
	if file == "" {
		return nil, nil
	}
	if relaying {
		return nil, errors.New("--rules is set at the county: a township with --upstream applies the rules its county sends")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	r, err := survey.ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("--rules %s: %w", file, err)
	}
	source := filepath.Base(file)
	if area != "" {
		source = area + " " + source
	}
	return r.Proto(source), nil
}

// recoverStore is 'fieldsyncd recover': with the server stopped, it accepts a
// store that may have lost its last commits (a damaged meta page, or a data
// directory restored from an older backup), which serve refuses, and logs
// what was accepted.
func recoverStore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data `directory` of the stopped server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	accepted, err := server.Recover(*data)
	if err != nil {
		return err
	}
	if accepted == "" {
		fmt.Fprintf(stdout, "%s: the store is sound; nothing to accept\n", *data)
		return nil
	}
	slog.New(slog.NewJSONHandler(stderr, nil)).Warn("store rollback accepted by the operator", "data", *data, "what", accepted)
	fmt.Fprintf(stdout, "%s: accepted: %s\nthe server may start; phones push again at their next sync what the store lost\n", *data, accepted)
	return nil
}

// rewriteStore runs 'fieldsyncd rewrite': the stopped server's store
// rewritten into this build's layout, every page filled (boltstore.Rewrite).
func rewriteStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rewrite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data `directory` of the stopped server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep, err := boltstore.Rewrite(ctx, filepath.Join(*data, server.StoreFile), nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: rewritten, %s → %s\nthe file it replaced (upgraded to this build's schema) is kept at %s: remove it once the server runs on the new one\n",
		*data, size(rep.Before), size(rep.After), rep.Kept)
	for _, b := range rep.Buckets {
		if b.Keys > 0 {
			fmt.Fprintf(stdout, "  %-13s %9d keys  %s\n", b.Name, b.Keys, size(b.Alloc))
		}
	}
	return nil
}

// size says n bytes in MB, or in kB below 10 MB.
func size(n int64) string {
	if n < 10<<20 {
		return fmt.Sprintf("%d kB", (n+1<<9)>>10)
	}
	return fmt.Sprintf("%d MB", (n+1<<19)>>20)
}

// background runs the server's loops (server.Server's Run… methods), each
// on a goroutine, until stop cancels them all and waits for them to return.
type background struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *slog.Logger
}

func startBackground(ctx context.Context, log *slog.Logger) *background {
	ctx, cancel := context.WithCancel(ctx)
	return &background{ctx: ctx, cancel: cancel, log: log}
}

// run runs loop until stop; a loop that ends with an error is logged.
func (b *background) run(name string, loop func(context.Context) error) {
	b.wg.Go(func() {
		if err := loop(b.ctx); err != nil {
			b.log.Error("background work stopped", "work", name, "err", err)
		}
	})
}

// serverLoops runs the server's background work that o asks for.
func (b *background) serverLoops(srv *server.Server, o serveOptions) {
	if o.compactEvery > 0 {
		b.run("log compaction", func(ctx context.Context) error { return srv.RunCompaction(ctx, o.logRetention, o.compactEvery) })
	}
	b.run("indicators", func(ctx context.Context) error { return srv.RunIndicators(ctx, time.Second) })
	if o.backupDir != "" {
		b.run("backups", func(ctx context.Context) error { return srv.RunBackups(ctx, o.backupDir, o.backupEvery) })
	}
	if o.upstream != "" {
		b.run("upstream relay", srv.RunUpstream)
	}
}

// stop cancels the loops and waits for them to return.
func (b *background) stop() {
	b.cancel()
	b.wg.Wait()
}
