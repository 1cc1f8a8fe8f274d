// Package servertest starts a real fieldsync server for tests: a bbolt store
// in a temporary directory, served over gRPC on 127.0.0.1.
package servertest

import (
	"net"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/server"
)

// Start runs a server with cfg (DataDir defaults to a new t.TempDir()) on a
// free port of 127.0.0.1 and returns it with its address. The server stops
// gracefully and its store is closed when the test ends.
func Start(t testing.TB, cfg server.Config) (*server.Server, string) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(srv.GRPCOptions()...)
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
// server.ErrorDomain) that the server puts in its status errors, or "" if err
// carries none.
func ReasonOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == server.ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}
