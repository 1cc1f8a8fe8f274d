package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	grpcpeer "google.golang.org/grpc/peer"
)

// ErrRateLimited is returned when a peer address made too many refused
// attempts (enrolment codes, tokens) in a short time.
var ErrRateLimited = errors.New("too many refused attempts from this address")

// Limits on refused attempts per peer address: someone guessing enrolment
// codes or tokens gets a few tries, then waits. A phone that is merely
// revoked retries with backoff and stays far below them.
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

// blocked reports whether key has reached the limit at now, and for how long
// it stays blocked.
func (f *failures) blocked(key string, now time.Time) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.seen[key]
	if !ok || now.Sub(w.start) >= f.window {
		return false, 0
	}
	return w.n >= f.limit, w.start.Add(f.window).Sub(now)
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

// peerHost is the host of the call's peer address, or "" if unknown.
func peerHost(ctx context.Context) string {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}

// checkLimit returns ErrRateLimited, with how long to wait, when the call's
// peer is blocked by f.
func (s *Server) checkLimit(ctx context.Context, f *failures, what string) error {
	if blocked, wait := f.blocked(peerHost(ctx), s.now()); blocked {
		return fmt.Errorf("%s: %w: try again in %v", what, ErrRateLimited, wait.Round(time.Second))
	}
	return nil
}

// noteRefused counts a refused attempt of the call's peer in f and logs it,
// with the peer's address and the reason, never the token or code.
func (s *Server) noteRefused(ctx context.Context, f *failures, what string, err error) {
	host := peerHost(ctx)
	f.fail(host, s.now())
	s.log.WarnContext(ctx, what+" refused", "peer", host, "reason", reasonOf(err))
}

// reasonOf is err's stable reason code, as grpcError would send it.
func reasonOf(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.reason
		}
	}
	return ReasonInternal
}
