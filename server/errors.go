package server

import (
	"context"
	"errors"
	"log/slog"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Sentinel errors of the server. RPC handlers return them wrapped with %w and
// a detail; grpcError turns them into gRPC statuses.
var (
	// ErrMissingToken is returned when a call carries no "authorization:
	// Bearer <token>" metadata.
	ErrMissingToken = errors.New("missing bearer token")

	// ErrUnknownToken is returned when a bearer token belongs to no device.
	ErrUnknownToken = errors.New("unknown token")

	// ErrRevoked is returned when a bearer token or a replica id belongs to a
	// revoked device.
	ErrRevoked = errors.New("device revoked")

	// ErrReplicaMismatch is returned when a request names another replica
	// than the authenticated device.
	ErrReplicaMismatch = errors.New("replica id is not the authenticated device's")

	// ErrReplicaEnrolled is returned by Enroll when the replica id is
	// enrolled already (active or revoked) and the code does not replace it.
	ErrReplicaEnrolled = boltstore.ErrReplicaEnrolled
	// ErrInvalidCode is returned by Enroll when the enrolment code is
	// unknown, expired, or already used by another replica.
	ErrInvalidCode = boltstore.ErrInvalidCode

	// ErrNotRelay is returned by PushAudit and ReportDevices when the caller
	// is a device, not a relaying township server.
	ErrNotRelay = errors.New("only a relaying township server may relay audit entries or device reports")

	// ErrNoConflict is returned by ResolveConflict when the record has no
	// open conflict on the field (resolved meanwhile, or never one).
	ErrNoConflict = errors.New("no open conflict")

	// ErrBadRequest is returned when a request is malformed as a whole
	// (missing or wrong-length ids, too many changes).
	ErrBadRequest = errors.New("bad request")

	// ErrPositionMismatch is returned by Push when first_position and
	// last_position do not span exactly the changes sent.
	ErrPositionMismatch = errors.New("positions do not match the changes sent")

	// ErrBadCursor is returned by Pull when the cursor token was not made by
	// this server.
	ErrBadCursor = errors.New("invalid cursor")

	// ErrBadCredentials is returned by SignIn when no staff member has the
	// name, or the password is not theirs (the two are not told apart).
	ErrBadCredentials = errors.New("wrong name or password")

	// ErrClosed is returned when the server is shutting down.
	ErrClosed = errors.New("server closed")

	// ErrSchemaMismatch is returned by Exchange for packed records packed
	// with another record schema than the server's.
	ErrSchemaMismatch = errors.New("records packed with another record schema than this server's (a different build): send them unpacked")
)

// Reasons are the stable machine-readable codes sent in the ErrorInfo detail
// of every error status (the protocol's Reason enum, wire.ReasonString).
// Clients switch on them; they never change meaning.
const (
	ReasonMissingToken     = fieldsyncv1.Reason_REASON_MISSING_TOKEN
	ReasonUnknownToken     = fieldsyncv1.Reason_REASON_UNKNOWN_TOKEN
	ReasonDeviceRevoked    = fieldsyncv1.Reason_REASON_DEVICE_REVOKED
	ReasonReplicaMismatch  = fieldsyncv1.Reason_REASON_REPLICA_MISMATCH
	ReasonInvalidCode      = fieldsyncv1.Reason_REASON_INVALID_ENROLMENT_CODE
	ReasonBadRequest       = fieldsyncv1.Reason_REASON_BAD_REQUEST
	ReasonPositionMismatch = fieldsyncv1.Reason_REASON_POSITION_MISMATCH
	ReasonBadCursor        = fieldsyncv1.Reason_REASON_INVALID_CURSOR
	ReasonCursorGap        = fieldsyncv1.Reason_REASON_CURSOR_GAP
	ReasonUnavailable      = fieldsyncv1.Reason_REASON_UNAVAILABLE
	ReasonCanceled         = fieldsyncv1.Reason_REASON_CANCELED
	ReasonInternal         = fieldsyncv1.Reason_REASON_INTERNAL
	ReasonNoConflict       = fieldsyncv1.Reason_REASON_NO_OPEN_CONFLICT
	ReasonReplicaEnrolled  = fieldsyncv1.Reason_REASON_REPLICA_ALREADY_ENROLLED
	ReasonRateLimited      = fieldsyncv1.Reason_REASON_RATE_LIMITED
	ReasonNotRelay         = fieldsyncv1.Reason_REASON_NOT_A_RELAY
	ReasonBadCredentials   = fieldsyncv1.Reason_REASON_BAD_CREDENTIALS
	ReasonSchemaMismatch   = fieldsyncv1.Reason_REASON_SCHEMA_MISMATCH
)

// ErrorDomain is the ErrorInfo domain of fieldsync's reasons.
const ErrorDomain = wire.ErrorDomain

// errorKinds maps sentinels to their code and reason, first match wins.
var errorKinds = []struct {
	err    error
	code   codes.Code
	reason fieldsyncv1.Reason
}{
	{ErrMissingToken, codes.Unauthenticated, ReasonMissingToken},
	{ErrUnknownToken, codes.Unauthenticated, ReasonUnknownToken},
	{ErrRevoked, codes.Unauthenticated, ReasonDeviceRevoked},
	{ErrReplicaMismatch, codes.PermissionDenied, ReasonReplicaMismatch},
	{ErrInvalidCode, codes.PermissionDenied, ReasonInvalidCode},
	{ErrNotRelay, codes.PermissionDenied, ReasonNotRelay},
	{ErrBadCredentials, codes.Unauthenticated, ReasonBadCredentials},
	{ErrReplicaEnrolled, codes.AlreadyExists, ReasonReplicaEnrolled},
	{ErrRateLimited, codes.ResourceExhausted, ReasonRateLimited},
	{ErrBadRequest, codes.InvalidArgument, ReasonBadRequest},
	{ErrNoConflict, codes.FailedPrecondition, ReasonNoConflict},
	{ErrPositionMismatch, codes.InvalidArgument, ReasonPositionMismatch},
	{ErrBadCursor, codes.InvalidArgument, ReasonBadCursor},
	{syncengine.ErrBadPullCursor, codes.InvalidArgument, ReasonBadCursor},
	{syncengine.ErrInvalidBatch, codes.InvalidArgument, ReasonPositionMismatch},
	{syncengine.ErrCursorGap, codes.FailedPrecondition, ReasonCursorGap},
	{ErrSchemaMismatch, codes.FailedPrecondition, ReasonSchemaMismatch},
	{ErrClosed, codes.Unavailable, ReasonUnavailable},
	{context.Canceled, codes.Canceled, ReasonCanceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded, ReasonCanceled},
}

// grpcError is the one function that maps errors to gRPC statuses. A nil
// error gives nil; an error that already is a status passes through. Known
// sentinels get their code, their message and an ErrorInfo with a stable
// reason. Anything else is a server fault: it is logged (the error text of
// this package and its stores names ids and positions, never personal data)
// and answered as Internal without detail.
func grpcError(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return withReason(k.code, k.reason, err.Error())
		}
	}
	log.ErrorContext(ctx, "internal error", "err", err)
	return withReason(codes.Internal, ReasonInternal, "internal server error")
}

// withReason builds a status with an ErrorInfo detail.
func withReason(code codes.Code, reason fieldsyncv1.Reason, msg string) error {
	return wire.StatusError(code, reason, msg)
}
