package server_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRefusedAttemptsAreRateLimited: an address guessing enrolment codes gets
// MaxEnrolFailures refusals, then RATE_LIMITED ones until the window passes;
// one guessing tokens gets MaxAuthFailures. A good code or token still passes
// from that address (a township's phones share its NAT). The refusals are
// logged with the address and reason, never the code or token.
func TestRefusedAttemptsAreRateLimited(t *testing.T) {
	var logs lockedBuffer
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv, addr := servertest.Start(t, server.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: clock})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	enrol := fieldsyncv1.NewEnrolmentServiceClient(conn)
	replica := func(b byte) []byte { r := make([]byte, 16); r[0], r[15] = 1, b; return r }
	const guess = "AAAAAAAAAAAAAAAA"
	for i := range server.MaxEnrolFailures {
		if _, err := enrol.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: guess, ReplicaId: replica(byte(i + 1))}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("guess %d: %v, want PermissionDenied", i, err)
		}
	}
	_, err = enrol.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: guess, ReplicaId: replica(98)})
	if status.Code(err) != codes.ResourceExhausted || servertest.ReasonOf(err) != server.ReasonRateLimited {
		t.Fatalf("guess %d: %v, want ResourceExhausted %s", server.MaxEnrolFailures+1, err, server.ReasonRateLimited)
	}
	good, _, err := srv.IssueEnrolmentCode([]string{villageA}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := enrol.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: good, ReplicaId: replica(99)})
	if err != nil {
		t.Fatalf("a good code from the same address: %v", err)
	}
	mu.Lock()
	now = now.Add(server.EnrolFailureWindow)
	mu.Unlock()
	if _, err := enrol.Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: guess, ReplicaId: replica(97)}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a guess once the window passed: %v, want PermissionDenied", err)
	}

	sync := fieldsyncv1.NewSyncServiceClient(conn)
	for i := range server.MaxAuthFailures {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer guessed-token-"+string(rune('a'+i%26)))
		if _, err := sync.Hello(ctx, &fieldsyncv1.HelloRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("token guess %d: %v, want Unauthenticated", i, err)
		}
	}
	bad := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer one-more-guess")
	if _, err := sync.Hello(bad, &fieldsyncv1.HelloRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("token guess %d: %v, want ResourceExhausted", server.MaxAuthFailures+1, err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+resp.GetDeviceToken())
	if _, err := sync.Hello(ctx, &fieldsyncv1.HelloRequest{ReplicaId: replica(99)}); err != nil {
		t.Errorf("a good token from the same address: %v", err)
	}
	out := logs.String()
	for _, secret := range []string{guess, good, resp.GetDeviceToken(), "guessed-token"} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs hold %q", secret)
		}
	}
	if !strings.Contains(out, "enrolment refused") || !strings.Contains(out, "peer=127.0.0.1") || !strings.Contains(out, "INVALID_ENROLMENT_CODE") {
		t.Errorf("the refusals are not logged with address and reason:\n%s", out)
	}
}
