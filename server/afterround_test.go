package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAfterRoundRefusalsDoNotFailTheRound: a county refusing what a township
// sends after a round (audit entries, its device report) as invalid is
// logged, and the round, whose changes went through, does not fail and get
// retried for ever; a transport error still fails it.
func TestAfterRoundRefusalsDoNotFailTheRound(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	refused := fmt.Errorf("report devices: %w", status.Error(codes.InvalidArgument, "device 3: 65 areas"))
	if err := s.afterRound(t.Context(), "device report", refused); err != nil {
		t.Errorf("an invalid-argument refusal failed the round: %v", err)
	}
	if !strings.Contains(logs.String(), "refused the device report") {
		t.Errorf("the refusal was not logged: %s", logs.String())
	}
	down := fmt.Errorf("push audit: %w", status.Error(codes.Unavailable, "connection reset"))
	if err := s.afterRound(t.Context(), "audit entries", down); !errors.Is(err, down) {
		t.Errorf("a transport error: %v, want it returned", err)
	}
	if err := s.afterRound(t.Context(), "audit entries", nil); err != nil {
		t.Errorf("no error: %v", err)
	}
}
