package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Staff credentials: county and township staff sign in to the read-only web
// page (package web) with a name and a password the operator made with
// AddStaff (fieldsync admin user add), never with the admin token. The server
// keeps each password's Argon2id hash only.
//
// Argon2id rather than bcrypt: it is the password hash RFC 9106 and OWASP
// recommend, memory-hard (a guessing rig pays for memory as well as cycles),
// has no 72-byte input limit, and golang.org/x/crypto, already a dependency,
// has it. The parameters are OWASP's minimum (19 MiB, 2 passes, 1 lane): some
// 30-60 ms per sign-in on a township's small server; they are written into
// each hash, so raising them later keeps old hashes valid. At most
// maxHashing hashes run at once, and an address with too many refused
// sign-ins is turned away before any hashing, so sign-in attempts cannot take
// the server's memory or CPU.

// Argon2id parameters of new hashes.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// maxHashing bounds the password hashes computed at once.
const maxHashing = 2

// Limits on refused sign-ins per address: 10 in 10 minutes, then the
// address waits for the window to pass, good password or not (a password is
// 80 random bits, so the limit guards the server's CPU, not the password).
const (
	MaxSignInFailures   = 10
	SignInFailureWindow = 10 * time.Minute
)

// passwordAlphabet has 32 letters and digits that cannot be mistaken for one
// another (no 0/o, 1/l/i), so a password reads out over the phone.
const passwordAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// passwordLen is the length of a new password: 16 characters of 5 bits.
const passwordLen = 16

// maxStaffName bounds a staff member's name, in characters.
const maxStaffName = 64

// Staff roles, as the store and the web page name them.
const (
	RoleCounty   = "county"
	RoleTownship = "township"
)

// Staff is a staff member who may sign in to the web page.
type Staff struct {
	// Name is what they sign in with; ID is their credential's random id.
	Name, ID string
	// Area is the area-code prefix they read (a county's 6 digits or a
	// township's 9).
	Area string
	// Role is RoleCounty or RoleTownship.
	Role string
}

// hashing bounds the concurrent password hashes (maxHashing).
var hashing = make(chan struct{}, maxHashing)

// hashPassword returns password's Argon2id hash as a PHC string.
func hashPassword(password string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	hashing <- struct{}{}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	<-hashing
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// checkPassword reports whether password is the one hash was made from. A
// hash it cannot read matches nothing.
func checkPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var (
		mem, iter uint32
		threads   uint8
	)
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iter, &threads); err != nil || mem > 1<<20 || iter > 10 || threads == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 64 {
		return false
	}
	hashing <- struct{}{}
	got := argon2.IDKey([]byte(password), salt, iter, mem, threads, uint32(len(want)))
	<-hashing
	return subtle.ConstantTimeCompare(got, want) == 1
}

// newPassword returns a random password of passwordLen characters.
func newPassword() string {
	raw := make([]byte, passwordLen)
	rand.Read(raw)
	for i, b := range raw {
		raw[i] = passwordAlphabet[int(b)%len(passwordAlphabet)]
	}
	return string(raw)
}

// decoy is a hash SignIn checks an unknown name's password against, so that
// a wrong name takes as long as a wrong password.
var decoy = sync.OnceValue(func() string { return hashPassword(newPassword()) })

// checkStaffName refuses a name people could not type or tell apart.
func checkStaffName(name string) error {
	switch n := utf8.RuneCountInString(name); {
	case !utf8.ValidString(name) || n == 0 || n > maxStaffName:
		return fmt.Errorf("%w: a staff name has 1 to %d characters", ErrBadRequest, maxStaffName)
	case strings.ContainsFunc(name, unicode.IsControl) || strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: a staff name has no control characters and no spaces at its ends", ErrBadRequest)
	}
	return nil
}

// staffRole checks role against area (a county's 6 digits or a township's
// 9, within the server's area) and returns it, taken from the area's length
// when unspecified.
func (s *Server) staffRole(area string, role fieldsyncv1.StaffRole) (string, error) {
	if !survey.DivisionPrefix(area) || len(area) == 12 {
		return "", fmt.Errorf("%w: area %q is not a county (6 digits) or township (9 digits) code", ErrBadRequest, area)
	}
	if !s.serves(area) {
		return "", fmt.Errorf("%w: area %s is outside this server's area %s", ErrBadRequest, area, s.cfg.Area)
	}
	byLen := map[int]fieldsyncv1.StaffRole{6: fieldsyncv1.StaffRole_STAFF_ROLE_COUNTY, 9: fieldsyncv1.StaffRole_STAFF_ROLE_TOWNSHIP}[len(area)]
	if role != fieldsyncv1.StaffRole_STAFF_ROLE_UNSPECIFIED && role != byLen {
		return "", fmt.Errorf("%w: role %v does not fit area %s: county staff read a county (6 digits), township staff a township (9)", ErrBadRequest, role, area)
	}
	if byLen == fieldsyncv1.StaffRole_STAFF_ROLE_COUNTY {
		return RoleCounty, nil
	}
	return RoleTownship, nil
}

func roleProto(role string) fieldsyncv1.StaffRole {
	switch role {
	case RoleCounty:
		return fieldsyncv1.StaffRole_STAFF_ROLE_COUNTY
	case RoleTownship:
		return fieldsyncv1.StaffRole_STAFF_ROLE_TOWNSHIP
	}
	return fieldsyncv1.StaffRole_STAFF_ROLE_UNSPECIFIED
}

// AddStaff makes a staff credential with a new random password, returned
// once, and records it in the audit trail by its id (a name may be a
// person's).
func (a admin) AddStaff(ctx context.Context, req *fieldsyncv1.AddStaffRequest) (*fieldsyncv1.AddStaffResponse, error) {
	s := a.s
	if err := checkStaffName(req.GetName()); err != nil {
		return nil, fmt.Errorf("add staff: %w", err)
	}
	role, err := s.staffRole(req.GetAreaCode(), req.GetRole())
	if err != nil {
		return nil, fmt.Errorf("add staff: %w", err)
	}
	password := newPassword()
	var id [8]byte
	rand.Read(id[:])
	m := boltstore.Staff{
		Name: req.GetName(), ID: hex.EncodeToString(id[:]), Area: req.GetAreaCode(), Role: role,
		PasswordHash: hashPassword(password), Created: s.now(),
	}
	err = s.store.Update(ctx, func(tx syncengine.Tx) error {
		if err := boltstore.AddStaffTx(ctx, tx, m); err != nil {
			return err
		}
		return s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_STAFF_ADD, "staff "+m.ID, fmt.Sprintf("web page credential for %s staff of %s", role, m.Area))
	})
	if errors.Is(err, boltstore.ErrStaffExists) {
		return nil, fmt.Errorf("add staff: %w: a staff member is named %q already ('fieldsync admin user list')", ErrBadRequest, m.Name)
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "staff credential made", "id", m.ID, "area", m.Area, "role", role)
	return &fieldsyncv1.AddStaffResponse{Password: password, Role: roleProto(role)}, nil
}

// ListStaff lists the staff, without their hashes.
func (a admin) ListStaff(ctx context.Context, _ *fieldsyncv1.ListStaffRequest) (*fieldsyncv1.ListStaffResponse, error) {
	list, err := a.s.store.StaffList(ctx)
	if err != nil {
		return nil, err
	}
	resp := &fieldsyncv1.ListStaffResponse{}
	for _, m := range list {
		resp.Staff = append(resp.Staff, &fieldsyncv1.StaffInfo{Name: m.Name, AreaCode: m.Area, Role: roleProto(m.Role), CreatedAt: timestamppb.New(m.Created)})
	}
	return resp, nil
}

// RemoveStaff deletes a staff credential; the member's web sessions end at
// their next request, which finds it gone.
func (a admin) RemoveStaff(ctx context.Context, req *fieldsyncv1.RemoveStaffRequest) (*fieldsyncv1.RemoveStaffResponse, error) {
	s := a.s
	err := s.store.Update(ctx, func(tx syncengine.Tx) error {
		m, err := boltstore.RemoveStaffTx(ctx, tx, req.GetName())
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_STAFF_REMOVE, "staff "+m.ID, fmt.Sprintf("web page credential of %s staff of %s removed", m.Role, m.Area))
	})
	if errors.Is(err, boltstore.ErrNoStaff) {
		return nil, fmt.Errorf("remove staff: %w: no staff member is named %q", ErrBadRequest, req.GetName())
	}
	if err != nil {
		return nil, err
	}
	return &fieldsyncv1.RemoveStaffResponse{}, nil
}

// SignIn checks a staff member's name and password, from is the caller's
// address (host:port, or a host). It returns the member, or an error wrapping
// ErrBadCredentials, or ErrRateLimited (with how long to wait) when the
// address made MaxSignInFailures refused attempts in SignInFailureWindow:
// then it hashes nothing. Each refusal is logged with the address, never the
// name or password.
func (s *Server) SignIn(ctx context.Context, name, password, from string) (Staff, error) {
	host := hostOf(from)
	if blocked, wait := s.signInFailures.blocked(host, s.now()); blocked {
		return Staff{}, fmt.Errorf("sign in: %w: try again in %v", ErrRateLimited, wait.Round(time.Second))
	}
	m, err := s.store.StaffMember(ctx, name)
	switch {
	case errors.Is(err, boltstore.ErrNoStaff):
		checkPassword(decoy(), password)
	case err != nil:
		return Staff{}, fmt.Errorf("sign in: %w", err)
	case checkPassword(m.PasswordHash, password):
		s.log.InfoContext(ctx, "staff signed in", "id", m.ID, "peer", host)
		return Staff{Name: m.Name, ID: m.ID, Area: m.Area, Role: m.Role}, nil
	}
	s.signInFailures.fail(host, s.now())
	s.log.WarnContext(ctx, "sign-in refused", "peer", host, "reason", wire.ReasonString(ReasonBadCredentials))
	return Staff{}, fmt.Errorf("sign in: %w", ErrBadCredentials)
}

// StaffMember returns the staff member name if their credential is still id
// (a session's), or an error wrapping ErrBadCredentials when it was removed
// or made again since.
func (s *Server) StaffMember(ctx context.Context, name, id string) (Staff, error) {
	m, err := s.store.StaffMember(ctx, name)
	switch {
	case errors.Is(err, boltstore.ErrNoStaff) || (err == nil && m.ID != id):
		return Staff{}, fmt.Errorf("staff: %w: the credential was removed", ErrBadCredentials)
	case err != nil:
		return Staff{}, fmt.Errorf("staff: %w", err)
	}
	return Staff{Name: m.Name, ID: m.ID, Area: m.Area, Role: m.Role}, nil
}

// hostOf is the host of addr ("host:port" or a host); an IPv6 address counts
// by its /64 network, as peerHost counts it.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return host
}
