package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/wire"
	grpcpeer "google.golang.org/grpc/peer"
)

// ErrRateLimited is returned when a peer address made too many refused
// attempts (enrolment codes, tokens) in a short time.
var ErrRateLimited = errors.New("too many refused attempts from this address")

// Limits on refused attempts per peer address: someone trying enrolment
// codes or tokens gets a few refusals, then RATE_LIMITED ones, which say how
// long to wait. A phone that is merely revoked retries with backoff and stays
// far below them. Good codes and tokens always pass.
const (
	// MaxEnrolFailures refused enrolments per address in EnrolFailureWindow.
	MaxEnrolFailures   = 10
	EnrolFailureWindow = 10 * time.Minute
	// MaxAuthFailures refused tokens per address in AuthFailureWindow.
	MaxAuthFailures   = 30
	AuthFailureWindow = time.Minute
)

// failures counts refused attempts per key (a peer's host) in fixed windows.
// It is safe for concurrent use.
type failures struct {
	limit  int
	window time.Duration
	mu     sync.Mutex
	seen   map[string]failureWindow
}

type failureWindow struct {
	start time.Time
	n     int
}

func newFailures(limit int, window time.Duration) *failures {
	return &failures{limit: limit, window: window, seen: make(map[string]failureWindow)}
}

// blocked reports whether key went over the limit at now, and for how long
// it stays blocked.
func (f *failures) blocked(key string, now time.Time) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.seen[key]
	if !ok || now.Sub(w.start) >= f.window {
		return false, 0
	}
	return w.n > f.limit, w.start.Add(f.window).Sub(now)
}

// fail counts a refused attempt of key at now.
func (f *failures) fail(key string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) > 10000 { // many addresses: forget the finished windows
		for k, w := range f.seen {
			if now.Sub(w.start) >= f.window {
				delete(f.seen, k)
			}
		}
	}
	w := f.seen[key]
	if now.Sub(w.start) >= f.window {
		w = failureWindow{start: now}
	}
	w.n++
	f.seen[key] = w
}

// peerHost is the host of the call's peer address, or "" if unknown; an
// IPv6 address counts by its /64 network, which one subscriber holds whole.
func peerHost(ctx context.Context) string {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return host
}

// refused counts a refused attempt of the call's peer in f, logs it with the
// peer's address and the reason (never the token or code), and returns err,
// or ErrRateLimited, with how long to wait, once the peer is over the limit.
// Only refused attempts are ever limited: a good token or code passes from
// any address, so phones behind one NAT (a township's Wi-Fi, a carrier) are
// never locked out by one of them guessing.
func (s *Server) refused(ctx context.Context, f *failures, what string, err error) error {
	host, now := peerHost(ctx), s.now()
	f.fail(host, now)
	s.log.WarnContext(ctx, what+" refused", "peer", host, "reason", reasonOf(err))
	if blocked, wait := f.blocked(host, now); blocked {
		return fmt.Errorf("%s: %w: try again in %v", what, ErrRateLimited, wait.Round(time.Second))
	}
	return err
}

// reasonOf is err's stable reason code, as grpcError would send it.
func reasonOf(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return wire.ReasonString(k.reason)
		}
	}
	return wire.ReasonString(ReasonInternal)
}
