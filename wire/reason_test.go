package wire_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Every reason goes out and comes back by its name; names this build does
// not know read as unspecified; the engine's reasons are the protocol's.
func TestReasons(t *testing.T) {
	for n := range fieldsyncv1.Reason_name {
		r := fieldsyncv1.Reason(n)
		s := wire.ReasonString(r)
		if got := wire.ParseReason(s); got != r {
			t.Errorf("ParseReason(%q) = %v, want %v", s, got, r)
		}
		if r != fieldsyncv1.Reason_REASON_UNSPECIFIED {
			if got := wire.ReasonOf(wire.StatusError(codes.Unauthenticated, r, "no")); got != r {
				t.Errorf("ReasonOf(StatusError(%v)) = %v", r, got)
			}
		}
	}
	if got := wire.ReasonString(fieldsyncv1.Reason_REASON_DEVICE_REVOKED); got != "DEVICE_REVOKED" {
		t.Errorf("ReasonString(DEVICE_REVOKED) = %q: deployed clients read this string", got)
	}
	for _, s := range []string{"", "NO_SUCH_REASON", "REASON_DEVICE_REVOKED", "device_revoked"} {
		if got := wire.ParseReason(s); got != fieldsyncv1.Reason_REASON_UNSPECIFIED {
			t.Errorf("ParseReason(%q) = %v, want unspecified", s, got)
		}
	}
	for _, s := range []string{syncengine.ReasonMalformed, syncengine.ReasonClockSkew, syncengine.ReasonOutsideAreas, syncengine.ReasonInvalidRecord} {
		if wire.ParseReason(s) == fieldsyncv1.Reason_REASON_UNSPECIFIED {
			t.Errorf("the engine's reason %q is not the protocol's", s)
		}
	}
	if got := wire.ReasonOf(nil); got != fieldsyncv1.Reason_REASON_UNSPECIFIED {
		t.Errorf("ReasonOf(nil) = %v", got)
	}
}
