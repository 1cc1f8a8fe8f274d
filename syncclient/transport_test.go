package syncclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestRPCDeadline(t *testing.T) {
	for _, tc := range []struct {
		bytes int
		want  time.Duration
	}{
		{-1, 6500 * time.Millisecond},
		{0, 6500 * time.Millisecond},
		{2500, 7500 * time.Millisecond}, // 20 kbit = 1 s
		{16 << 10, 6500*time.Millisecond + 6553600*time.Microsecond},
		{512 << 10, 6500*time.Millisecond + 209715200*time.Microsecond},
	} {
		if got := RPCDeadline(tc.bytes); got != tc.want {
			t.Errorf("RPCDeadline(%d) = %v, want %v", tc.bytes, got, tc.want)
		}
	}
	if got := RPCDeadline(1 << 40); got <= 0 {
		t.Errorf("RPCDeadline(1 TiB) = %v, want positive", got)
	}
}

func TestRetryDelay(t *testing.T) {
	p := RetryPolicy{}.WithDefaults()
	if p != defaultRetry {
		t.Fatalf("zero policy = %+v, want %+v", p, defaultRetry)
	}
	want := float64(time.Second)
	for n := 1; n <= 20; n++ {
		base := min(want, float64(2*time.Minute))
		for range 50 {
			d := float64(p.Delay(n))
			if d < 0.8*base-1 || d > 1.2*base+1 {
				t.Fatalf("delay(%d) = %v, want %v ±20%%", n, time.Duration(d), time.Duration(base))
			}
		}
		want *= 1.6
	}
}

func TestRetryable(t *testing.T) {
	info := func(code codes.Code, domain string) error {
		st, err := status.New(code, "boom").WithDetails(&errdetails.ErrorInfo{Reason: "INTERNAL", Domain: domain})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	wrap := func(err error) error { return fmt.Errorf("fieldsync: push: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"unavailable", wrap(status.Error(codes.Unavailable, "connection refused")), true},
		{"rpc deadline", wrap(status.Error(codes.DeadlineExceeded, "deadline")), true},
		{"exhausted", status.Error(codes.ResourceExhausted, "busy"), true},
		{"aborted", status.Error(codes.Aborted, "aborted"), true},
		{"cut stream", wrap(status.Error(codes.Internal, "stream terminated by RST_STREAM")), true},
		{"server fault", wrap(info(codes.Internal, "fieldsync.v1")), false},
		{"other domain internal", info(codes.Internal, "example.org"), true},
		{"unauthenticated", wrap(status.Error(codes.Unauthenticated, "revoked")), false},
		{"permission", status.Error(codes.PermissionDenied, "scope"), false},
		{"invalid", status.Error(codes.InvalidArgument, "bad"), false},
		{"precondition", status.Error(codes.FailedPrecondition, "gap"), false},
		{"unimplemented", status.Error(codes.Unimplemented, "old server"), false},
		{"bad certificate", status.Error(codes.Unavailable, "connection error: desc = \"transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority\""), false},
		{"handshake cut", status.Error(codes.Unavailable, "connection error: desc = \"transport: authentication handshake failed: EOF\""), true},
		{"not enrolled", ErrNotEnrolled, false},
		{"mismatch", fmt.Errorf("x: %w", ErrServerMismatch), false},
		{"tls required", fmt.Errorf("x: %w", ErrTLSRequired), false},
		{"stalled", wrap(&stalledError{idle: time.Second}), true},
		{"clock skew stop", wrap(&retryError{errors.New("server stopped")}), true},
		{"net error", wrap(&net.OpError{Op: "dial", Err: errors.New("refused")}), true},
		{"storage", wrap(errors.New("disk I/O error")), false},
	} {
		if got := Retryable(t.Context(), tc.err); got != tc.want {
			t.Errorf("%s: Retryable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Retryable(ctx, status.Error(codes.Unavailable, "x")) {
		t.Error("retryable after ctx is done")
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:7443", true},
		{"127.9.9.9:1", true},
		{"localhost:7443", true},
		{"LOCALHOST", true},
		{"[::1]:7443", true},
		{"::1", true},
		{"dns:///localhost:7443", true},
		{"passthrough:///127.0.0.1:80", true},
		{"10.0.0.1:7443", false},
		{"192.168.1.5:443", false},
		{"fieldsync.example.org:443", false},
		{"localhost.example.org:443", false},
		{"[2001:db8::1]:443", false},
		{"0.0.0.0:7443", false},
		{"", false},
	} {
		if got := isLoopback(tc.addr); got != tc.want {
			t.Errorf("isLoopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// An eager connection reads an empty SETTINGS frame first, then the
// server's bytes as they come when they begin with its SETTINGS, and an
// error naming the missing preface when they do not (a TLS server's alert
// to a plaintext client, an HTTP/1 server).
func TestEagerConn(t *testing.T) {
	serverSettings := []byte{0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3, 0, 0, 0, 100, 'x'}
	for _, tc := range []struct {
		name    string
		server  []byte
		wantErr bool
	}{
		{"settings", serverSettings, false},
		{"tls alert", []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46, 0, 0}, true},
		{"http/1", []byte("HTTP/1.1 400 Bad Request\r\n"), true},
		{"settings ack first", []byte{0, 0, 0, 0x4, 0x1, 0, 0, 0, 0}, true},
		{"closed early", []byte{0, 0, 0}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, srv := net.Pipe()
			go func() {
				srv.Write(tc.server)
				srv.Close()
			}()
			c := &eagerConn{Conn: client, pending: emptySettings[:]}
			defer c.Close()
			var got []byte
			buf := make([]byte, 4)
			var err error
			for {
				var n int
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			want := append(emptySettings[:], tc.server...)
			if tc.wantErr {
				if errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "server preface") {
					t.Errorf("read %x then %v, want an error naming the server preface", got, err)
				}
				return
			}
			if !errors.Is(err, io.EOF) || !bytes.Equal(got, want) {
				t.Errorf("read %x then %v, want %x then EOF", got, err, want)
			}
		})
	}
}

// What grpc writes through an eager connection reaches the server but for
// the first SETTINGS acknowledgement (of the SETTINGS the connection made
// up), however the writes split the frames.
func TestEagerConnLeavesOutTheFirstSettingsAck(t *testing.T) {
	frame := func(typ, flags byte, payload ...byte) []byte {
		n := len(payload)
		return append([]byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, 0, 0, 0, 0}, payload...)
	}
	preface := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	settings := frame(0x4, 0, 0, 0x4, 0, 0x1, 0, 0)
	window := frame(0x8, 0, 0, 0x1, 0, 0)
	ack := frame(0x4, 0x1)
	headers := frame(0x1, 0x4, bytes.Repeat([]byte{0x88}, 40)...)
	var in, want []byte
	for _, part := range [][]byte{preface, settings, window, ack, headers, ack, headers} {
		in = append(in, part...)
	}
	for _, part := range [][]byte{preface, settings, window, headers, ack, headers} {
		want = append(want, part...)
	}
	for _, chunk := range []int{1, 3, 9, 24, 50, len(in)} {
		client, srv := net.Pipe()
		got := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(srv)
			got <- b
		}()
		c := &eagerConn{Conn: client}
		for p := in; len(p) > 0; {
			n := min(chunk, len(p))
			if w, err := c.Write(p[:n]); err != nil || w != n {
				t.Fatalf("chunks of %d: Write = %d, %v", chunk, w, err)
			}
			p = p[n:]
		}
		client.Close()
		if b := <-got; !bytes.Equal(b, want) {
			t.Errorf("chunks of %d: the server got\n%x\nwant\n%x", chunk, b, want)
		}
	}
}

// A gRPC server behind Go's own HTTP/2 server (as behind a proxy written in
// Go), which closes a connection that acknowledges SETTINGS it never sent,
// answers a client that did not wait for its SETTINGS.
func TestEagerConnWithGoHTTP2Server(t *testing.T) {
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	h2 := &http2.Server{}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go h2.ServeConn(c, &http2.ServeConnOpts{Handler: gs})
		}
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(eagerCredentials{insecure.NewCredentials()}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			t.Fatalf("call %d through Go's HTTP/2 server: %v", i, err)
		}
	}
}
