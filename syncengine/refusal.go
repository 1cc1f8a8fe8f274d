package syncengine

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Reasons of the refusals the engine makes, and the defaults of its outcomes:
// the names of the protocol's Reason values without their REASON_ prefix
// (wire.ParseReason reads them; a test there keeps the two in step).
const (
	ReasonMalformed     = "MALFORMED_CHANGE"
	ReasonClockSkew     = "CLOCK_SKEW"
	ReasonOutsideAreas  = "OUTSIDE_AREAS"
	ReasonInvalidRecord = "INVALID_RECORD"
)

// FieldError is one wrong field of the record a refused change would leave,
// as the receiver's validator says: where it is, the protocol's
// FieldErrorReason number, and a message naming what to do.
type FieldError struct {
	Path    string
	Reason  int32
	Message string
}

// RefusalError is a validator's refusal that says more than its message: a
// reason (the protocol's Reason name; "" leaves the outcome's default) and
// the record's field errors. ReceiveBatch copies both into the change's
// ChangeResult, and Acknowledge into the sender's Rejection. Wrap
// ErrOutOfScope in Err for OutcomeOutOfScope.
type RefusalError struct {
	Reason string
	Fields []FieldError
	Err    error
}

func (e *RefusalError) Error() string { return e.Err.Error() }
func (e *RefusalError) Unwrap() error { return e.Err }

// refusalOf returns the outcome, reason and field errors of a validator's
// error.
func refusalOf(err error) (Outcome, string, []FieldError) {
	o, reason := OutcomeInvalid, ReasonInvalidRecord
	if errors.Is(err, ErrOutOfScope) {
		o, reason = OutcomeOutOfScope, ReasonOutsideAreas
	}
	var r *RefusalError
	if errors.As(err, &r) {
		if r.Reason != "" {
			reason = r.Reason
		}
		return o, reason, r.Fields
	}
	return o, reason, nil
}

// AppendFieldErrors appends fs to b in the engine's binary form, which
// ParseFieldErrors reads: a count, then each error's path, reason and
// message.
func AppendFieldErrors(b []byte, fs []FieldError) []byte {
	b = binary.AppendUvarint(b, uint64(len(fs)))
	for _, f := range fs {
		b = binary.AppendUvarint(b, uint64(len(f.Path)))
		b = append(b, f.Path...)
		b = binary.AppendVarint(b, int64(f.Reason))
		b = binary.AppendUvarint(b, uint64(len(f.Message)))
		b = append(b, f.Message...)
	}
	return b
}

// ParseFieldErrors reads field errors AppendFieldErrors wrote at the start
// of b, and returns them and the bytes after them. Empty b is no errors.
func ParseFieldErrors(b []byte) ([]FieldError, []byte, error) {
	if len(b) == 0 {
		return nil, nil, nil
	}
	bad := fmt.Errorf("%w: truncated field errors", ErrMalformed)
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, nil, bad
	}
	b = b[k:]
	if n == 0 {
		return nil, b, nil
	}
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, true
	}
	out := make([]FieldError, 0, n)
	for range n {
		var f FieldError
		var ok bool
		if f.Path, ok = str(); !ok {
			return nil, nil, bad
		}
		r, k := binary.Varint(b)
		if k <= 0 || r != int64(int32(r)) {
			return nil, nil, bad
		}
		f.Reason, b = int32(r), b[k:]
		if f.Message, ok = str(); !ok {
			return nil, nil, bad
		}
		out = append(out, f)
	}
	return out, b, nil
}
