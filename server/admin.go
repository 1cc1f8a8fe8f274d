package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Files of the admin credential in Config.DataDir.
const (
	// AdminTokenFile holds the admin token for the operator's CLI (mode 0600).
	// The server itself never reads it back: it checks tokens against
	// AdminTokenHashFile.
	AdminTokenFile = "admin.token"
	// AdminTokenHashFile holds the hex SHA-256 of the admin token.
	AdminTokenHashFile = "admin.token.sha256"
)

// DefaultCodeTTL is how long an enrolment code stays valid when the request
// does not say.
const DefaultCodeTTL = 24 * time.Hour

// adminPrefix is the method prefix of AdminService.
var adminPrefix = "/" + fieldsyncv1.AdminService_ServiceDesc.ServiceName + "/"

// loadAdminHash returns the admin token's hash, creating the token on first
// start: a random token written to AdminTokenFile (0600) and its hash to
// AdminTokenHashFile.
func loadAdminHash(dir string) ([32]byte, error) {
	var h [32]byte
	hashPath := filepath.Join(dir, AdminTokenHashFile)
	b, err := os.ReadFile(hashPath)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return h, err
		}
		token := base64.RawURLEncoding.EncodeToString(raw[:])
		h = sha256.Sum256([]byte(token))
		if err := os.WriteFile(filepath.Join(dir, AdminTokenFile), []byte(token+"\n"), 0o600); err != nil {
			return h, fmt.Errorf("write admin token: %w", err)
		}
		if err := os.WriteFile(hashPath, []byte(hex.EncodeToString(h[:])+"\n"), 0o600); err != nil {
			return h, fmt.Errorf("write admin token hash: %w", err)
		}
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("read admin token hash: %w", err)
	}
	n, err := hex.Decode(h[:], []byte(strings.TrimSpace(string(b))))
	if err != nil || n != len(h) {
		return h, fmt.Errorf("%s is not a hex SHA-256: remove it and %s to make a new admin token", hashPath, AdminTokenFile)
	}
	return h, nil
}

// authenticateAdmin accepts only the admin token.
func (s *Server) authenticateAdmin(ctx context.Context) error {
	token, err := bearer(ctx)
	if err != nil {
		return err
	}
	h := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(h[:], s.adminHash[:]) != 1 {
		return fmt.Errorf("authenticate admin: %w", ErrUnknownToken)
	}
	return nil
}

// admin implements AdminService.
type admin struct {
	fieldsyncv1.UnimplementedAdminServiceServer
	s *Server
}

func (a admin) AddDevice(ctx context.Context, req *fieldsyncv1.AddDeviceRequest) (*fieldsyncv1.AddDeviceResponse, error) {
	ttl := DefaultCodeTTL
	if req.TtlSeconds != nil {
		ttl = time.Duration(req.GetTtlSeconds()) * time.Second
	}
	// The entry names the areas and the device replaced, never the code or
	// the device's name.
	note := func(ctx context.Context, tx syncengine.Tx, c boltstore.EnrolCode) error {
		kind := "phone"
		if c.Relay {
			kind = "relaying township"
		}
		areas := strings.Join(c.Areas, ",")
		if c.Replaces.IsZero() {
			return a.s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_ADD, areas, fmt.Sprintf("enrolment code for a %s, valid %v", kind, ttl))
		}
		return a.s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_REPLACE, c.Replaces.String(),
			fmt.Sprintf("enrolment code for a %s in its place, areas %s, valid %v", kind, areas, ttl))
	}
	var code string
	var expiry time.Time
	var err error
	if old := req.GetReplacesReplicaId(); len(old) > 0 {
		if len(old) != len(syncengine.ReplicaID{}) {
			return nil, fmt.Errorf("add device: %w: replaces_replica_id must be 16 bytes", ErrBadRequest)
		}
		code, expiry, err = a.s.issueReplace(ctx, syncengine.ReplicaID(old), req.GetAreaPrefixes(), ttl, note)
		if errors.Is(err, boltstore.ErrNoDevice) {
			return nil, fmt.Errorf("add device: %w: no device %v to replace: 'fieldsync admin device list' shows the enrolled ones", ErrBadRequest, syncengine.ReplicaID(old))
		}
	} else {
		code, expiry, err = a.s.issueCode(ctx, req.GetAreaPrefixes(), req.GetName(), ttl, req.GetRelay(), note)
	}
	if err != nil {
		return nil, err
	}
	a.s.log.InfoContext(ctx, "enrolment code issued", "areas", len(req.GetAreaPrefixes()), "expires", expiry)
	return &fieldsyncv1.AddDeviceResponse{Code: code, ExpiresAt: timestamppb.New(expiry)}, nil
}

func (a admin) ListDevices(ctx context.Context, _ *fieldsyncv1.ListDevicesRequest) (*fieldsyncv1.ListDevicesResponse, error) {
	ds, err := a.s.registry.Devices(ctx)
	if err != nil {
		return nil, err
	}
	resp := &fieldsyncv1.ListDevicesResponse{}
	for _, d := range ds {
		info := &fieldsyncv1.DeviceInfo{
			ReplicaId: append([]byte(nil), d.ID[:]...), Name: d.Name, AreaPrefixes: d.Areas,
			EnrolledAt: timestamppb.New(d.Created), Revoked: d.Revoked, Relay: d.Relay,
		}
		if d.Revoked {
			info.RevokedAt = timestamppb.New(d.RevokedAt)
		}
		resp.Devices = append(resp.Devices, info)
	}
	return resp, nil
}

func (a admin) RevokeDevice(ctx context.Context, req *fieldsyncv1.RevokeDeviceRequest) (*fieldsyncv1.RevokeDeviceResponse, error) {
	if len(req.GetReplicaId()) != len(syncengine.ReplicaID{}) {
		return nil, fmt.Errorf("revoke: %w: replica_id has %d bytes, want 16", ErrBadRequest, len(req.GetReplicaId()))
	}
	id := syncengine.ReplicaID(req.GetReplicaId())
	err := a.s.store.Update(ctx, func(tx syncengine.Tx) error {
		d, now, err := boltstore.RevokeDeviceTx(ctx, tx, id)
		if err != nil {
			return err
		}
		detail := "areas " + strings.Join(d.Areas, ",")
		if d.Relay {
			detail = "relaying township, " + detail
		}
		if !now {
			detail += "; revoked already since " + d.RevokedAt.UTC().Format(time.RFC3339)
		}
		return a.s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_DEVICE_REVOKE, id.String(), detail)
	})
	if err != nil {
		if errors.Is(err, boltstore.ErrNoDevice) {
			return nil, fmt.Errorf("revoke %v: %w: no such device", id, ErrBadRequest)
		}
		return nil, err
	}
	a.s.log.InfoContext(ctx, "device revoked", "device", id.String())
	return &fieldsyncv1.RevokeDeviceResponse{}, nil
}

// lagCap bounds how many log entries SyncStatus counts per device.
const lagCap = 10000

// SyncStatus reports what the server saw of each device's syncs, then the
// devices its townships reported (relayedStatus).
func (a admin) SyncStatus(ctx context.Context, _ *fieldsyncv1.SyncStatusRequest) (*fieldsyncv1.SyncStatusResponse, error) {
	s := a.s
	end, err := s.store.LogEnd(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := s.registry.Devices(ctx)
	if err != nil {
		return nil, err
	}
	resp := &fieldsyncv1.SyncStatusResponse{LogEnd: uint64(end)}
	if resp.Upstream, err = s.upstreamStatus(ctx); err != nil {
		return nil, err
	}
	for _, d := range ds {
		act := d.Activity
		st := &fieldsyncv1.DeviceSyncStatus{
			ReplicaId: append([]byte(nil), d.ID[:]...), Name: d.Name, AreaPrefixes: d.Areas, Revoked: d.Revoked, Relay: d.Relay,
			PendingChanges: int32(act.Pending), LastError: act.LastError,
		}
		if !act.LastSeen.IsZero() {
			st.LastSeen = timestamppb.New(act.LastSeen)
		}
		if !act.LastSync.IsZero() {
			st.LastSync = timestamppb.New(act.LastSync)
		}
		st.Lag, st.LagCapped, err = s.lag(ctx, d, end)
		if err != nil {
			return nil, err
		}
		resp.Devices = append(resp.Devices, st)
	}
	relayed, err := s.relayedStatus(ctx)
	if err != nil {
		return nil, err
	}
	resp.Devices = append(resp.Devices, relayed...)
	return resp, nil
}

// lag counts the log entries in d's areas made by others after what d's last
// completed pull delivered, up to lagCap.
func (s *Server) lag(ctx context.Context, d boltstore.Device, end syncengine.Position) (uint64, bool, error) {
	var n uint64
	after := d.Activity.PulledThrough
	for after < end && n < lagCap {
		entries, through, err := s.store.ReadLogArea(ctx, d.Areas, after, logPageLimit)
		if errors.Is(err, syncengine.ErrCompacted) {
			// Everything it has not pulled is gone from the log: it will
			// bootstrap again; count what the log still holds.
			after, err = s.store.Compacted(ctx)
			if err != nil {
				return 0, false, err
			}
			continue
		}
		if err != nil {
			return 0, false, err
		}
		for _, e := range entries {
			if e.Change.Origin != d.ID {
				n++
			}
		}
		if through <= after {
			break
		}
		after = through
	}
	return n, n >= lagCap, nil
}
