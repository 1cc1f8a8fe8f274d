package fieldsync

import (
	"errors"
	"strings"

	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncclient"
)

var (
	// ErrNotEnrolled is returned by Sync when the replica has not been
	// enrolled with a server.
	ErrNotEnrolled = syncclient.ErrNotEnrolled
	// ErrOutOfScope is returned by Save for a record outside the areas the
	// device was enrolled for.
	ErrOutOfScope = errors.New("fieldsync: record outside the device's areas")
	// ErrNotFound is returned by Get when the replica holds no live record
	// with the id.
	ErrNotFound = errors.New("fieldsync: record not found")
	// ErrServerMismatch is returned by Sync when the server answers with
	// another replica id than the one the device enrolled with.
	ErrServerMismatch = syncclient.ErrServerMismatch
	// ErrTLSRequired is returned by Enroll and Sync when the server's address
	// is not a loopback address and the client has no TLS configuration
	// (WithTLS); nothing is sent.
	ErrTLSRequired = syncclient.ErrTLSRequired
)

// ValidationError is returned by Save for a record that fails
// survey.Validate; nothing is stored.
type ValidationError struct {
	Fields []survey.FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		msgs[i] = f.Error()
	}
	return "fieldsync: invalid record: " + strings.Join(msgs, "; ")
}
