package wire

import (
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of fieldsync's reasons.
const ErrorDomain = "fieldsync.v1"

const reasonPrefix = "REASON_"

// ReasonString is r as an ErrorInfo reason: its name without the REASON_
// prefix ("DEVICE_REVOKED"), or "" for REASON_UNSPECIFIED.
func ReasonString(r fieldsyncv1.Reason) string {
	if r == fieldsyncv1.Reason_REASON_UNSPECIFIED {
		return ""
	}
	return strings.TrimPrefix(r.String(), reasonPrefix)
}

// ParseReason is the reason an ErrorInfo reason string names, or
// REASON_UNSPECIFIED for one this build does not know.
func ParseReason(s string) fieldsyncv1.Reason {
	if s == "" {
		return fieldsyncv1.Reason_REASON_UNSPECIFIED
	}
	return fieldsyncv1.Reason(fieldsyncv1.Reason_value[reasonPrefix+s])
}

// StatusError is a gRPC status error with code, message msg and an ErrorInfo
// detail of domain ErrorDomain carrying reason.
func StatusError(code codes.Code, reason fieldsyncv1.Reason, msg string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonString(reason), Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// ReasonOf is the reason in the fieldsync ErrorInfo detail of err, a gRPC
// status error (wrapped or not), or REASON_UNSPECIFIED when it carries none.
func ReasonOf(err error) fieldsyncv1.Reason {
	st, ok := status.FromError(err)
	if !ok {
		return fieldsyncv1.Reason_REASON_UNSPECIFIED
	}
	return StatusReason(st)
}

// StatusReason is ReasonOf for a status.
func StatusReason(st *status.Status) fieldsyncv1.Reason {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return ParseReason(info.GetReason())
		}
	}
	return fieldsyncv1.Reason_REASON_UNSPECIFIED
}

// FieldErrorsToProto is fs as the protocol's field errors.
func FieldErrorsToProto(fs []syncengine.FieldError) []*fieldsyncv1.FieldError {
	var out []*fieldsyncv1.FieldError
	for _, f := range fs {
		out = append(out, &fieldsyncv1.FieldError{Path: f.Path, Reason: fieldsyncv1.FieldErrorReason(f.Reason), Message: f.Message})
	}
	return out
}

// FieldErrorsFromProto is FieldErrorsToProto's reverse.
func FieldErrorsFromProto(fs []*fieldsyncv1.FieldError) []syncengine.FieldError {
	var out []syncengine.FieldError
	for _, f := range fs {
		out = append(out, syncengine.FieldError{Path: f.GetPath(), Reason: int32(f.GetReason()), Message: f.GetMessage()})
	}
	return out
}
