// Package server is fieldsync's gRPC server: SyncService (Hello, Push, Pull,
// and PushAudit and ReportDevices for relaying townships), EnrolmentService
// and AdminService over a boltstore replica, with bearer-token
// authentication, area scopes, survey validation of every incoming change and
// an audit trail of every admin action (audit.go). Protobuf types stop here:
// convert.go is the one place where they are translated to and from the sync
// engine's.
//
// Use:
//
//	srv, err := server.New(server.Config{DataDir: dir})
//	gs := grpc.NewServer(srv.GRPCOptions()...)
//	srv.Register(gs)
//	go gs.Serve(lis)
//	...
//	gs.GracefulStop()
//	srv.Close()
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor: clients may send and ask for gzip
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/fieldsync/fieldsync/indicators/factstore"
	_ "github.com/fieldsync/fieldsync/internal/zstdgrpc" // the compressor of protocol version 2
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
)

// StoreFile is the name of the bbolt store within Config.DataDir.
const StoreFile = "server.db"

// Defaults for Config.
const (
	// DefaultMaxClockSkew is how far ahead of server time a change may be
	// stamped: phones' clocks drift, but a day ahead means a wrong clock.
	DefaultMaxClockSkew = 5 * time.Minute
	// DefaultMaxPushChanges matches the engine's default batch.
	DefaultMaxPushChanges = syncengine.DefaultBatchLimit
	// DefaultMaxPushBytes bounds one PushRequest, encoded, uncompressed.
	DefaultMaxPushBytes = 512 << 10
	// DefaultMaxPullBytes bounds one PullResponse, encoded, before gzip:
	// 48 KiB, which gzip brings to about 12-16 KiB on the wire. On a 20 kbit/s
	// link that is some 5-7 s of transfer, so a cut link loses little, and a
	// snapshot of 20,000 records takes some 500 responses, not 2,000.
	DefaultMaxPullBytes = 48 << 10
	// DefaultMaxDotGap bounds a pushed dot counter beyond the highest the
	// server holds of its replica: a million changes between two syncs is
	// more than any phone or township makes, and far from 2^64.
	DefaultMaxDotGap = 1 << 20
)

// Config configures New. The zero value of every field but DataDir is a
// default.
type Config struct {
	// DataDir holds the store; it is created (mode 0700) if missing.
	DataDir string
	// Area is the area-code prefix the server serves: a county's 6 digits or
	// a township's 9. Devices are enrolled only for areas within it. It is
	// recorded in DataDir (AreaFile) on first start; empty means the recorded
	// area, or every area if none is recorded.
	Area string
	// IDHashKey is the county's key for hashing ID numbers, handed to
	// devices at enrolment.
	IDHashKey []byte
	// MaxClockSkew is how far ahead of the server's clock a pushed change
	// may be stamped; 0 means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// MaxPushChanges, MaxPushBytes and MaxPullBytes are the batch limits;
	// 0 means the defaults.
	MaxPushChanges, MaxPushBytes, MaxPullBytes int
	// MaxDotGap is how far beyond the highest dot counter the server holds of
	// a replica a pushed change's counter may be; 0 means DefaultMaxDotGap.
	MaxDotGap int
	// Logger receives structured logs (device ids and counts, never record
	// contents); nil discards them.
	Logger *slog.Logger
	// Now is the wall clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// Rules are the survey rules this server sets (a county's, from
	// fieldsyncd serve --rules), with their source; nil means
	// survey.DefaultRules. A township with an upstream applies its county's
	// instead, as the county's handshake sends them. New records a change of
	// them since the last start in the audit trail.
	Rules *fieldsyncv1.Rules
	// Operator is who starts the server (fieldsyncd passes the OS user): the
	// audit trail records them as the author of a change of Rules. Empty
	// means "unknown".
	Operator string
}

// Server serves one replica's store. Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	store *boltstore.Store
	// registry is the store's register of devices, relays, enrolment codes
	// and reported registries.
	registry *boltstore.Registry
	facts    *factstore.Model // the indicators' read model of store
	clock    *syncengine.Clock
	// adminHash is the SHA-256 of the admin token (see AdminTokenFile).
	adminHash [32]byte
	health    *health.Server
	log       *slog.Logger
	closed    atomic.Bool
	// pulledByAll is the position every device had pulled at the last
	// compaction: a township forgets the records that moved out of its area
	// through it at the next (forgetMovedAway).
	pulledByAll atomic.Uint64
	// relay is the upstream relay, once SetUpstream ran.
	relay atomic.Pointer[relay]
	// enrolFailures, authFailures and signInFailures count refused
	// attempts per peer address (ratelimit.go, staff.go).
	enrolFailures, authFailures, signInFailures *failures
}

// New opens (creating on first start, with a new replica identity) the store
// in cfg.DataDir and returns a server for it. It returns the store's errors
// (boltstore.ErrLocked when another process serves the directory, and so on).
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: no data directory")
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.MaxPushChanges <= 0 {
		cfg.MaxPushChanges = DefaultMaxPushChanges
	}
	if cfg.MaxPushBytes <= 0 {
		cfg.MaxPushBytes = DefaultMaxPushBytes
	}
	if cfg.MaxPullBytes <= 0 {
		cfg.MaxPullBytes = DefaultMaxPullBytes
	}
	if cfg.MaxDotGap <= 0 {
		cfg.MaxDotGap = DefaultMaxDotGap
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	err := os.MkdirAll(cfg.DataDir, 0o700)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.Area, err = loadArea(cfg.DataDir, cfg.Area); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	adminHash, err := loadAdminHash(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	st, err := boltstore.Open(filepath.Join(cfg.DataDir, StoreFile), nil)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		enrolFailures:  newFailures(MaxEnrolFailures, EnrolFailureWindow),
		authFailures:   newFailures(MaxAuthFailures, AuthFailureWindow),
		signInFailures: newFailures(MaxSignInFailures, SignInFailureWindow),
		adminHash:      adminHash,
		cfg:            cfg,
		store:          st,
		registry:       st.Registry(),
		clock:          syncengine.NewClock(st.Replica(), cfg.MaxClockSkew.Milliseconds()),
		health:         health.NewServer(),
		log:            cfg.Logger,
	}
	s.log.Info("store opened", "replica", st.Replica().String())
	began := time.Now()
	if s.facts, err = factstore.Open(context.Background(), st, filepath.Join(cfg.DataDir, factstore.File)); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if d := time.Since(began); d > time.Second {
		s.log.Info("indicators read model caught up with the store", "file", factstore.File, "took", d.Round(time.Millisecond).String())
	}
	if err := s.noteRules(context.Background()); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	return s, nil
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// AreaFile is the file in Config.DataDir recording the server's area.
const AreaFile = "area"

// loadArea returns the server's area: want, recorded in dir on first use,
// or the recorded one when want is empty. A want that differs from the
// recorded area is refused: devices were enrolled within the recorded one.
func loadArea(dir, want string) (string, error) {
	if want != "" && ((len(want) != 6 && len(want) != 9) || !survey.DivisionPrefix(want)) {
		return "", fmt.Errorf("area %q is not a county (6 digits) or township (9 digits) code", want)
	}
	path := filepath.Join(dir, AreaFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if want == "" {
			return "", nil
		}
		return want, os.WriteFile(path, []byte(want+"\n"), 0o600)
	case err != nil:
		return "", err
	}
	have := strings.TrimSpace(string(b))
	if have != "" && !survey.DivisionPrefix(have) {
		return "", fmt.Errorf("%s holds %q, not an area code: restore it from backup", path, have)
	}
	if want != "" && want != have {
		return "", fmt.Errorf("this data directory serves area %s, not %s: give --area %s, or use another data directory", have, want, have)
	}
	return have, nil
}

// Area returns the area-code prefix the server serves ("" for every area).
func (s *Server) Area() string { return s.cfg.Area }

// Replica returns the server's replica id.
func (s *Server) Replica() syncengine.ReplicaID { return s.store.Replica() }

// Store returns the server's store, for tests and tools that read it
// directly (its register of peers is Store().Registry()). It is closed by
// Close.
func (s *Server) Store() *boltstore.Store { return s.store }

// Keepalive and size settings for phones on 2G links (see
// shared/research/perf_rel_anchors.md §3.4): round trips of 1.3 s and more,
// 20 kbit/s, connections that vanish without a FIN.
var (
	serverKeepalive = keepalive.ServerParameters{
		// Reap connections of phones that went away; they reconnect cheaply
		// compared with holding a dead connection's memory.
		MaxConnectionIdle: 5 * time.Minute,
		// Ping after 60 s of silence to find half-open TCP during long
		// pulls; allow 20 s for the answer over a slow, buffered link
		// (never the 1 s of grpc's example).
		Time:    60 * time.Second,
		Timeout: 20 * time.Second,
	}
	// Clients may ping every 30 s while a call is open, not when idle, so a
	// client keepalive of 60 s is never answered with GOAWAY.
	serverEnforcement = keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: false}
)

// maxRecvMsg bounds the memory one request can take: 1 MiB, well above
// MaxPushBytes and far below grpc's 4 MiB default.
const maxRecvMsg = 1 << 20

// GRPCOptions returns the options the grpc.Server serving s must be made
// with: the authentication interceptors, keepalive for 2G links and message
// limits.
func (s *Server) GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
		grpc.KeepaliveParams(serverKeepalive),
		grpc.KeepaliveEnforcementPolicy(serverEnforcement),
		grpc.MaxRecvMsgSize(maxRecvMsg),
		grpc.MaxConcurrentStreams(16),
		grpc.ForceServerCodecV2(newPushCodec()),
	}
}

// Register registers SyncService, EnrolmentService, the standard health
// service and reflection on gs, which must have been made with GRPCOptions.
func (s *Server) Register(gs *grpc.Server) {
	fieldsyncv1.RegisterSyncServiceServer(gs, syncService{s: s})
	fieldsyncv1.RegisterEnrolmentServiceServer(gs, enrolment{s: s})
	fieldsyncv1.RegisterAdminServiceServer(gs, admin{s: s})
	grpc_health_v1.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
	s.health.SetServingStatus("", grpc_health_v1.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(fieldsyncv1.SyncService_ServiceDesc.ServiceName, grpc_health_v1.HealthCheckResponse_SERVING)
}

// Close marks the server not serving, refuses new calls with Unavailable and
// closes the store after the transactions in progress end. Stop the
// grpc.Server first (GracefulStop) so no call is cut short.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.health.Shutdown()
	if err := s.facts.Close(); err != nil {
		_ = s.store.Close()
		return fmt.Errorf("server: %w", err)
	}
	if err := s.store.Close(); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// Recover opens the store in dataDir accepting that it may have lost its last
// commits (boltstore.ErrRolledBack: a damaged meta page, or a file older than
// the last commit recorded beside it, as after a restore from a backup),
// records its present state as the last commit, and closes it; the server then
// starts on it. It returns what was accepted ("" for a sound store), which the
// caller logs. Every device takes a snapshot at its next sync, and pushes
// again what the store lost of its own changes (Hello tells it how far the
// store holds them).
func Recover(dataDir string) (string, error) {
	path := filepath.Join(dataDir, StoreFile)
	st, err := boltstore.Open(path, &boltstore.Options{AcceptRollback: true})
	if err != nil {
		return "", fmt.Errorf("recover %s: %w", path, err)
	}
	accepted := st.AcceptedRollback()
	if accepted != "" {
		// A commit rewrites the damaged meta page and records the state. A
		// new snapshot epoch makes every device's pull cursor, which may
		// point past the log's new end, take a snapshot again.
		ctx := context.Background()
		epoch, err := st.Meta(ctx, metaSnapshotEpoch)
		if err == nil {
			n, _ := strconv.ParseUint(string(epoch), 10, 64)
			err = st.SetMeta(ctx, metaSnapshotEpoch, []byte(strconv.FormatUint(n+1, 10)))
		}
		// A township takes a snapshot from its county again: the county
		// leaves out of its pulls what the township relayed to it, which
		// the restored copy may have lost.
		if err == nil {
			err = st.SetMeta(ctx, metaUpstreamCursor, nil)
		}
		if err == nil {
			err = st.SetMeta(ctx, "recovered_at", []byte(time.Now().UTC().Format(time.RFC3339)))
		}
		if err != nil {
			st.Close()
			return "", fmt.Errorf("recover %s: %w", path, err)
		}
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("recover %s: %w", path, err)
	}
	return accepted, nil
}
