package syncclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"

	"github.com/fieldsync/fieldsync/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Transport settings for 2G links (20 kbit/s, 1.3 s round trips, lossy):
// see the research notes on gRPC over 2G/EDGE.
const (
	// assumedRTT is the round trip of a rural 2G link.
	assumedRTT = 1300 * time.Millisecond
	// floorBitsPerSec is the slowest link the deadlines allow for.
	floorBitsPerSec = 20_000
	// ConnectTimeout is the least time one connection attempt is given: cold
	// TCP plus TLS takes about 5 s on 2G.
	ConnectTimeout = 20 * time.Second
	// minPullIdle is the least idle time of a pull stream: one 16 KiB
	// response at the floor rate.
	minPullIdle = 16 << 10
)

var (
	clientKeepalive = keepalive.ClientParameters{
		// Ping only while a stream is open, and give the answer time over a
		// link with seconds of buffering. The server permits pings 30 s apart.
		Time: 60 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: false,
	}
	connectParams = grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 120 * time.Second},
		MinConnectTimeout: ConnectTimeout,
	}
)

// RPCDeadline is the time allowed for an RPC carrying about bytes: five round
// trips plus the bytes at the floor rate (a 16 KiB batch gets 13 s).
func RPCDeadline(bytes int) time.Duration {
	bytes = min(max(bytes, 0), 1<<30)
	return 5*assumedRTT + time.Duration(int64(bytes)*8*int64(time.Second)/floorBitsPerSec)
}

// PullIdle is the longest a pull stream may stay without a message: the time
// of one response of maxBytes (the server's limit from the handshake), or
// override when set.
func PullIdle(maxBytes int, override time.Duration) time.Duration {
	if override > 0 {
		return override
	}
	return RPCDeadline(max(maxBytes, minPullIdle))
}

// DialOptions returns the options of a connection to the server at addr:
// TLS configured by tlsCfg (nil: plaintext, to loopback addresses only), the
// 2G keepalive and backoff, gzip, and the token as per-RPC credentials when
// token is set, followed by extra. It returns an error wrapping
// ErrTLSRequired for plaintext to a non-loopback address.
func DialOptions(addr, token string, tlsCfg *tls.Config, extra ...grpc.DialOption) ([]grpc.DialOption, error) {
	var creds credentials.TransportCredentials
	switch {
	case tlsCfg != nil:
		creds = credentials.NewTLS(tlsCfg)
	case isLoopback(addr):
		creds = insecure.NewCredentials()
	default:
		return nil, fmt.Errorf("%w: %s is not a loopback address; give the server's CA (WithTLS in the SDK, --upstream-ca for fieldsyncd)", ErrTLSRequired, addr)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(eagerCredentials{creds}),
		grpc.WithDefaultCallOptions(grpc.UseCompressor("gzip")),
		grpc.WithKeepaliveParams(clientKeepalive),
		grpc.WithConnectParams(connectParams),
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: token, secure: tlsCfg != nil}))
	}
	return append(opts, extra...), nil
}

// eagerCredentials are transport credentials whose connections do not wait
// for the server's HTTP/2 SETTINGS before the first request goes out: the
// connection reads an empty SETTINGS frame first (the protocol's defaults,
// which a client may assume until the server's arrive, RFC 9113 §3.4), so
// that grpc, which waits for the server's preface before it sends anything,
// sends the first request at once. The server's own SETTINGS arrive after it
// and are applied then. On 2G that saves a round trip of 1.3 s per cold
// connection.
type eagerCredentials struct {
	credentials.TransportCredentials
}

func (c eagerCredentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return conn, info, err
	}
	return &eagerConn{Conn: conn, pending: emptySettings[:]}, info, nil
}

func (c eagerCredentials) Clone() credentials.TransportCredentials {
	return eagerCredentials{c.TransportCredentials.Clone()}
}

// emptySettings is an HTTP/2 SETTINGS frame without settings: a 9-byte
// header of length 0, type 4, no flags, stream 0.
var emptySettings = [9]byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}

// eagerConn reads pending before what the server sends, and checks that
// the server's first frame is its SETTINGS, as grpc would have: anything
// else (a TLS server's alert to a plaintext client) is an error naming the
// missing preface. grpc acknowledges the empty SETTINGS it read first; the
// server never sent it, and some servers (Go's x/net/http2, behind which a
// proxy may serve gRPC) close a connection that acknowledges SETTINGS they
// did not send, so that first SETTINGS ACK is left out of what grpc writes.
type eagerConn struct {
	net.Conn
	// Read by grpc's reader goroutine only.
	pending []byte
	checked bool

	// Written by grpc's writer goroutines, one at a time.
	wmu  sync.Mutex
	out  frameScanner
	sent []byte
}

func (c *eagerConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 && !c.checked {
		c.checked = true
		var head [9]byte
		if _, err := io.ReadFull(c.Conn, head[:]); err != nil {
			return 0, fmt.Errorf("no HTTP/2 server preface: %w", err)
		}
		if head[3] != 0x4 || head[4]&0x1 != 0 || head[5]&0x7f|head[6]|head[7]|head[8] != 0 {
			return 0, errors.New("no HTTP/2 server preface: the server's first bytes are not a SETTINGS frame (does it expect TLS?)")
		}
		c.pending = head[:]
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *eagerConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.out.done {
		return c.Conn.Write(p)
	}
	c.sent = c.out.filter(c.sent[:0], p)
	if _, err := c.Conn.Write(c.sent); err != nil {
		return 0, err
	}
	return len(p), nil
}

// frameScanner follows the frames a client writes, from the connection
// preface on, and leaves out the first SETTINGS frame with the ACK flag.
type frameScanner struct {
	preface int     // bytes of the 24-byte connection preface seen
	head    [9]byte // the frame header being read
	inHead  int     // bytes of it seen
	body    int     // bytes of the current frame's payload still to pass
	done    bool    // the ACK was left out: pass everything
}

const clientPrefaceLen = 24 // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// filter appends to out what of p is to be written.
func (f *frameScanner) filter(out, p []byte) []byte {
	for len(p) > 0 && !f.done {
		switch {
		case f.preface < clientPrefaceLen:
			n := min(len(p), clientPrefaceLen-f.preface)
			out, p, f.preface = append(out, p[:n]...), p[n:], f.preface+n
		case f.body > 0:
			n := min(len(p), f.body)
			out, p, f.body = append(out, p[:n]...), p[n:], f.body-n
		default:
			n := copy(f.head[f.inHead:], p)
			p, f.inHead = p[n:], f.inHead+n
			if f.inHead < len(f.head) {
				continue
			}
			f.inHead = 0
			length := int(f.head[0])<<16 | int(f.head[1])<<8 | int(f.head[2])
			if f.head[3] == 0x4 && f.head[4]&0x1 != 0 && length == 0 {
				f.done = true // the acknowledgement of the SETTINGS no server sent
				continue
			}
			out, f.body = append(out, f.head[:]...), length
		}
	}
	return append(out, p...)
}

// isLoopback reports whether the gRPC target addr names this machine:
// localhost, 127.0.0.0/8 or ::1, with or without a port and a dns or
// passthrough scheme.
func isLoopback(addr string) bool {
	host := addr
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		host = strings.TrimPrefix(host, scheme)
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearerToken is the device token as per-RPC credentials.
type bearerToken struct {
	token  string
	secure bool // the connection uses TLS
}

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

// RequireTransportSecurity is true on TLS connections, so that the token is
// never sent in the clear to another machine; plaintext is used on loopback
// only (dialOptions).
func (t bearerToken) RequireTransportSecurity() bool { return t.secure }

// stalledError is returned when a pull stream received nothing for idle.
type stalledError struct{ idle time.Duration }

func (e *stalledError) Error() string {
	return fmt.Sprintf("no data from the server for %s; the connection stalled", e.idle)
}

// retryError marks an error of the protocol that a new attempt can cure.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Retryable reports whether err, the failure of a sync attempt, is transient:
// a new attempt may succeed. It is false once ctx is done.
func Retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var stalled *stalledError
	var again *retryError
	switch {
	case errors.As(err, &stalled), errors.As(err, &again):
		return true
	case errors.Is(err, ErrNotEnrolled), errors.Is(err, ErrServerMismatch), errors.Is(err, ErrTLSRequired):
		return false
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			return !certificateProblem(st)
		case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled:
			// ctx is not done, so the deadline or cancellation was one RPC's.
			return true
		case codes.Internal:
			// The server's own faults carry its ErrorInfo; an Internal
			// without one comes from the transport (a cut HTTP/2 stream).
			return !fromServer(st)
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// certificateProblem reports whether an Unavailable status is a failed TLS
// verification, which no retry cures.
func certificateProblem(st *status.Status) bool {
	m := st.Message()
	return strings.Contains(m, "authentication handshake failed") &&
		(strings.Contains(m, "x509:") || strings.Contains(m, "certificate"))
}

// fromServer reports whether st carries the fieldsync server's ErrorInfo.
func fromServer(st *status.Status) bool {
	return wire.StatusReason(st) != fieldsyncv1.Reason_REASON_UNSPECIFIED
}
