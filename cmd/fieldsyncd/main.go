// Command fieldsyncd is the fieldsync server, run by a township health centre
// or a county health bureau.
//
//	fieldsyncd serve --data DIR [--listen ADDR] [--area PREFIX] [--tls-cert FILE --tls-key FILE]
//
// --area is the area the server serves: a township's 9-digit prefix or a
// county's 6; devices are enrolled only within it. On first start it creates its replica identity and store in DIR, an admin
// token (DIR/admin.token, mode 0600) for the operator's fieldsync CLI, and the
// county's ID-hash key (DIR/id-hash.key) handed to devices at enrolment. It
// refuses to listen without TLS on anything but a loopback address.
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
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fieldsync/fieldsync/server"
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

const usage = `usage: fieldsyncd serve --data DIR [--listen ADDR] [--area PREFIX] [--tls-cert FILE --tls-key FILE]

Run 'fieldsyncd serve --help' for the flags.
`

// run runs the command in args. ready, if not nil, receives the address the
// server listens on once it serves.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- net.Addr) error {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprint(stderr, usage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errors.New("the only command is serve")
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data `directory` (created if missing)")
	listen := fs.String("listen", "127.0.0.1:7443", "`address` to listen on")
	area := fs.String("area", "", "area-code `prefix` served: a township's 9 digits or a county's 6 (recorded in DIR on first start)")
	certFile := fs.String("tls-cert", "", "TLS certificate `file` (required to listen beyond loopback)")
	keyFile := fs.String("tls-key", "", "TLS private key `file`")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	return serve(ctx, *data, *listen, *area, *certFile, *keyFile, stdout, stderr, ready)
}

func serve(ctx context.Context, data, listen, area, certFile, keyFile string, stdout, stderr io.Writer, ready chan<- net.Addr) error {
	var creds credentials.TransportCredentials
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("load TLS key pair: %w", err)
		}
		creds = credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	} else if err := requireLoopback(listen); err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	key, err := idHashKey(filepath.Join(data, "id-hash.key"))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := server.New(server.Config{DataDir: data, Area: area, IDHashKey: key, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
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
	log.Info("serving", "addr", lis.Addr().String(), "area", srv.Area(), "tls", creds != nil)
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

// idHashKey reads the county's ID-hash key, creating a random one (mode 0600)
// on first start.
func idHashKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		return key, os.WriteFile(path, key, 0o600)
	}
	if err == nil && len(key) != 32 {
		return nil, fmt.Errorf("%s holds %d bytes, want a 32-byte key: restore it from backup (devices hash ID numbers with it)", path, len(key))
	}
	return key, err
}
