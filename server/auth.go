package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Peer is the authenticated device of a call.
type Peer struct {
	// ID is the device's replica id.
	ID syncengine.ReplicaID
	// Areas are the area-code prefixes the device may read and write.
	Areas []string
	// Relay marks a township server relaying its devices' changes: it may
	// push changes made by other replicas.
	Relay bool
}

type peerKey struct{}

// PeerFromContext returns the device the auth interceptors put in ctx.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// open reports whether method needs no token: enrolment (the caller has no
// token yet) and the standard health service (probes; it reveals nothing).
func open(method string) bool {
	return method == fieldsyncv1.EnrolmentService_Enroll_FullMethodName ||
		strings.HasPrefix(method, "/"+grpc_health_v1.Health_ServiceDesc.ServiceName+"/")
}

// authenticate returns ctx with the calling device, or an error wrapping
// ErrMissingToken, ErrUnknownToken or ErrRevoked, or a storage error.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	token, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	d, err := s.registry.DeviceByTokenHash(ctx, sha256.Sum256([]byte(token)))
	switch {
	case errors.Is(err, boltstore.ErrNoDevice):
		return nil, fmt.Errorf("authenticate: %w", ErrUnknownToken)
	case err != nil:
		return nil, fmt.Errorf("authenticate: %w", err)
	case d.Revoked:
		return nil, fmt.Errorf("authenticate device %v: %w", d.ID, ErrRevoked)
	}
	return context.WithValue(ctx, peerKey{}, Peer{ID: d.ID, Areas: slices.Clone(d.Areas), Relay: d.Relay}), nil
}

// bearer returns the token of the call's "authorization: Bearer <token>"
// metadata.
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", ErrMissingToken
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", ErrMissingToken
	}
	return token, nil
}

// unaryAuth authenticates every unary call but the open ones and maps the
// handler's error to a status.
func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.closed.Load() {
		return nil, grpcError(ctx, s.log, ErrClosed)
	}
	switch {
	case strings.HasPrefix(info.FullMethod, adminPrefix):
		if err := s.authenticateAdmin(ctx); err != nil {
			return nil, grpcError(ctx, s.log, s.refused(ctx, s.authFailures, "admin authentication", err))
		}
		ctx = withAdminActor(ctx)
	case !open(info.FullMethod):
		actx, err := s.authenticate(ctx)
		if err != nil {
			return nil, grpcError(ctx, s.log, s.refused(ctx, s.authFailures, "authentication", err))
		}
		ctx = actx
	}
	resp, err := h(ctx, req)
	if info.FullMethod == fieldsyncv1.EnrolmentService_Enroll_FullMethodName && (errors.Is(err, ErrInvalidCode) || errors.Is(err, ErrReplicaEnrolled)) {
		err = s.refused(ctx, s.enrolFailures, "enrolment", err)
	}
	return resp, grpcError(ctx, s.log, err)
}

// streamAuth is unaryAuth for streaming calls.
func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := ss.Context()
	if s.closed.Load() {
		return grpcError(ctx, s.log, ErrClosed)
	}
	switch {
	case strings.HasPrefix(info.FullMethod, adminPrefix):
		if err := s.authenticateAdmin(ctx); err != nil {
			return grpcError(ctx, s.log, s.refused(ctx, s.authFailures, "admin authentication", err))
		}
		ctx = withAdminActor(ctx)
	case !open(info.FullMethod):
		var err error
		if ctx, err = s.authenticate(ctx); err != nil {
			return grpcError(ss.Context(), s.log, s.refused(ss.Context(), s.authFailures, "authentication", err))
		}
	}
	return grpcError(ctx, s.log, h(srv, &authedStream{ServerStream: ss, ctx: ctx}))
}

// authedStream carries the authenticated context into a stream handler.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// codeHash normalises a code as people type it (case, spaces, dashes) and
// hashes it; the store never keeps a code itself.
func codeHash(code string) [32]byte {
	code = strings.ToUpper(strings.NewReplacer(" ", "", "-", "").Replace(code))
	return sha256.Sum256([]byte(code))
}

// IssueEnrolmentCode makes a one-time enrolment code for a device that may
// sync areas (area-code prefixes of a county, township or village, within the
// server's Config.Area), labelled name, valid for ttl. The code is 16
// characters of base32, shown to the operator once; only its hash is kept, in
// the store, so codes survive a restart. A code stays valid until it
// expires, bound to the first device that uses it, so a device whose Enroll
// answer was lost can retry. It returns an error wrapping ErrBadRequest for
// no areas, a bad prefix, a prefix outside the server's area or ttl <= 0.
func (s *Server) IssueEnrolmentCode(areas []string, name string, ttl time.Duration) (code string, expiry time.Time, err error) {
	return s.issueCode(context.Background(), areas, name, ttl, false, nil)
}

// IssueRelayCode is IssueEnrolmentCode for a township server that will relay
// its devices' changes to this one (fieldsyncd serve --upstream): its areas
// must be townships (9 digits) within this server's area.
func (s *Server) IssueRelayCode(areas []string, name string, ttl time.Duration) (code string, expiry time.Time, err error) {
	return s.issueCode(context.Background(), areas, name, ttl, true, nil)
}

// issued, when not nil, records the admin action that issues code c (its
// audit entry) in the transaction that stores it.
type issued func(ctx context.Context, tx syncengine.Tx, c boltstore.EnrolCode) error

func (s *Server) issueCode(ctx context.Context, areas []string, name string, ttl time.Duration, relay bool, note issued) (code string, expiry time.Time, err error) {
	for _, a := range areas {
		if relay && len(a) != 9 {
			return "", time.Time{}, fmt.Errorf("issue relay enrolment code: %w: area %q is not a township (9 digits): a relaying server serves whole townships", ErrBadRequest, a)
		}
	}
	return s.issue(ctx, boltstore.EnrolCode{Areas: slices.Clone(areas), Name: name, Relay: relay}, ttl, note)
}

// issue stores c (its areas, name, relay flag and the device it replaces)
// under a new code valid for ttl, with note's audit entry, and returns the
// code.
func (s *Server) issue(ctx context.Context, c boltstore.EnrolCode, ttl time.Duration, note issued) (code string, expiry time.Time, err error) {
	areas := c.Areas
	if len(areas) == 0 || ttl <= 0 {
		return "", time.Time{}, fmt.Errorf("issue enrolment code: %w: need areas and a positive ttl", ErrBadRequest)
	}
	for _, a := range areas {
		if !survey.DivisionPrefix(a) {
			return "", time.Time{}, fmt.Errorf("issue enrolment code: %w: area prefix %q is not a county (6 digits), township (9) or village (12) code", ErrBadRequest, a)
		}
		if !s.serves(a) {
			return "", time.Time{}, fmt.Errorf("issue enrolment code: %w: area %s is outside this server's area %s", ErrBadRequest, a, s.cfg.Area)
		}
	}
	var raw [10]byte
	rand.Read(raw[:])
	code = base32.StdEncoding.EncodeToString(raw[:])
	now := s.now()
	expiry = now.Add(ttl)
	c.Hash, c.Expiry = codeHash(code), expiry
	err = s.store.Update(ctx, func(tx syncengine.Tx) error {
		if err := boltstore.PutEnrolCodeTx(ctx, tx, c, now); err != nil || note == nil {
			return err
		}
		return note(ctx, tx, c)
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue enrolment code: %w", err)
	}
	return code, expiry, nil
}

// enrolment implements EnrolmentService.
type enrolment struct {
	fieldsyncv1.UnimplementedEnrolmentServiceServer
	s *Server
}

// Enroll exchanges a code for a device token: it registers the device under
// the request's replica id with the code's areas and the hash of a new random
// token, which it returns once. A retry with the same code and replica
// replaces the token. A replica id that is enrolled already, active or
// revoked, is refused (ErrReplicaEnrolled) unless the code replaces it
// (IssueReplaceCode): replica ids are not secret, and taking over one would
// let a stranger sync as that device.
func (e enrolment) Enroll(ctx context.Context, req *fieldsyncv1.EnrollRequest) (*fieldsyncv1.EnrollResponse, error) {
	s := e.s
	if len(req.GetReplicaId()) != len(syncengine.ReplicaID{}) || syncengine.ReplicaID(req.GetReplicaId()).IsZero() {
		return nil, fmt.Errorf("enroll: %w: replica_id must be 16 non-zero bytes", ErrBadRequest)
	}
	id := syncengine.ReplicaID(req.GetReplicaId())
	if id == s.store.Replica() {
		return nil, fmt.Errorf("enroll: %w: replica_id is the server's", ErrBadRequest)
	}
	var raw [32]byte
	rand.Read(raw[:])
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	d, grant, err := s.registry.EnrolDevice(ctx, codeHash(req.GetCode()), id, sha256.Sum256([]byte(token)), req.GetDeviceName(), s.now())
	if errors.Is(err, ErrReplicaEnrolled) {
		s.log.WarnContext(ctx, "enrolment refused: replica enrolled already", "device", id.String())
		return nil, fmt.Errorf("enroll device %v: %w: this replica is enrolled here already; to enrol it again, or to put a new phone in its place, the operator issues a replace code with 'fieldsync admin device replace %v'", id, ErrReplicaEnrolled, id)
	}
	if err != nil {
		return nil, fmt.Errorf("enroll device %v: %w", id, err)
	}
	if !grant.Replaces.IsZero() {
		s.log.InfoContext(ctx, "device enrolled in place of another", "device", id.String(), "replaces", grant.Replaces.String())
	}
	s.log.InfoContext(ctx, "device enrolled", "device", id.String(), "areas", len(d.Areas), "relay", d.Relay)
	srv := s.store.Replica()
	return &fieldsyncv1.EnrollResponse{
		DeviceToken:     token,
		AreaPrefixes:    slices.Clone(d.Areas),
		IdHashKey:       slices.Clone(s.cfg.IDHashKey),
		ServerReplicaId: srv[:],
	}, nil
}

// IssueReplaceCode issues a one-time code that enrols a phone in the place of
// the enrolled device old, with its name and areas: the same replica again (a
// phone restored from a backup, or re-enrolled after a revocation, keeps its
// history and pushes its unsent work), or a new replica, which revokes old.
// areas, when not empty, replace the device's (the phone moves to other
// villages). It returns an error wrapping boltstore.ErrNoDevice for an
// unknown old.
func (s *Server) IssueReplaceCode(ctx context.Context, old syncengine.ReplicaID, areas []string, ttl time.Duration) (code string, expiry time.Time, err error) {
	return s.issueReplace(ctx, old, areas, ttl, nil)
}

func (s *Server) issueReplace(ctx context.Context, old syncengine.ReplicaID, areas []string, ttl time.Duration, note issued) (code string, expiry time.Time, err error) {
	d, err := s.registry.Device(ctx, old)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue replace code: %w", err)
	}
	if len(areas) == 0 {
		areas = d.Areas
	}
	for _, a := range areas {
		if d.Relay && len(a) != 9 {
			return "", time.Time{}, fmt.Errorf("issue replace code: %w: area %q is not a township (9 digits): device %v relays a township", ErrBadRequest, a, old)
		}
	}
	return s.issue(ctx, boltstore.EnrolCode{Areas: slices.Clone(areas), Name: d.Name, Relay: d.Relay, Replaces: old}, ttl, note)
}
