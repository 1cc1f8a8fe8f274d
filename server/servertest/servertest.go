// Package servertest starts a real fieldsync server for tests: a bbolt store
// in a temporary directory, served over gRPC on 127.0.0.1.
package servertest

import (
	"net"
	"testing"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"

	"google.golang.org/grpc"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/wire"
)

// Start runs a server with cfg (DataDir defaults to a new t.TempDir()) on a
// free port of 127.0.0.1, with opts after the server's own gRPC options,
// and returns it with its address. The server stops gracefully and its
// store is closed when the test ends.
func Start(t testing.TB, cfg server.Config, opts ...grpc.ServerOption) (*server.Server, string) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(srv.GRPCOptions(), opts...)...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.GracefulStop()
		<-done
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv, lis.Addr().String()
}

// ReasonOf returns the reason of the ErrorInfo detail (domain
// server.ErrorDomain) that the server puts in its status errors, or
// REASON_UNSPECIFIED if err carries none (wire.ReasonOf).
func ReasonOf(err error) fieldsyncv1.Reason { return wire.ReasonOf(err) }
