package server

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncclient"
	"github.com/fieldsync/fieldsync/syncengine"
)

// A township relays its device registry to its county after each round
// (ReportDevices), so that the county's status and indicators cover the
// township's phones as well as the township. The report is a snapshot of the
// whole registry (phones of the township's areas, revoked ones included),
// sent only when it differs from the one the county last acknowledged, or
// when that acknowledgement is over reportRefresh old; the county keeps each
// township's last report whole, in place of the one before. A reported phone
// carries no name (a phone's name may be a person's: "李春兰的手机"), token
// or code: its replica id and areas say which village's phone it is.
//
// What the county knows of a township's phone is what the township knew at
// its last report: the phone's last sync is its last completed sync with the
// township. A township cut off from its county reports nothing, so its
// phones' last syncs at the county age with the report, and after three days
// they count in devices_not_synced_3d: their work has not reached the county
// either.

// MaxReportDevices is the most devices one ReportDevices part may carry.
const MaxReportDevices = 5000

// maxReportParts bounds the parts of one report (100,000 devices: far more
// than a township has).
const maxReportParts = 20

// maxReportBytes bounds one part, encoded, well below the server's message
// limit (maxRecvMsg).
const maxReportBytes = 512 << 10

// Bounds of a reported device: its areas, and its last error in characters
// (what the township sends is cut to it; the county refuses more).
const (
	maxReportAreas = 64
	maxReportError = 300
)

// reportRefresh is how old the county's acknowledgement of an unchanged
// report may grow before the township sends it again: a county restored
// from a backup gets it back within the hour.
const reportRefresh = time.Hour

// metaUpstreamDevices keeps the SHA-256 (hex) of the device report the
// county last acknowledged, a space, and when (RFC 3339).
const metaUpstreamDevices = "upstream_devices_reported"

// deviceReportOf is d as the township reports it: no name or token, times
// to the second, the last error cleaned and bounded.
func deviceReportOf(d boltstore.Device) *fieldsyncv1.DeviceReport {
	ts := func(t time.Time) *timestamppb.Timestamp {
		if t.IsZero() {
			return nil
		}
		return timestamppb.New(t.Truncate(time.Second))
	}
	a := d.Activity
	return &fieldsyncv1.DeviceReport{
		ReplicaId: append([]byte(nil), d.ID[:]...), AreaPrefixes: d.Areas, EnrolledAt: ts(d.Created),
		Revoked: d.Revoked, Relay: d.Relay, LastSeen: ts(a.LastSeen), LastSync: ts(a.LastSync),
		PendingChanges: int32(min(max(a.Pending, 0), 1<<31-1)), LastError: clean(a.LastError, maxReportError),
	}
}

// within reports whether every one of prefixes lies within one of areas.
func within(prefixes, areas []string) bool {
	for _, p := range prefixes {
		if !syncengine.InAreas(p, areas) {
			return false
		}
	}
	return true
}

// reportParts splits the devices into the parts of a report: at most
// MaxReportDevices devices and maxReportBytes each. It returns at least one
// part, empty for no devices.
func reportParts(ds []*fieldsyncv1.DeviceReport) [][]*fieldsyncv1.DeviceReport {
	parts := [][]*fieldsyncv1.DeviceReport{nil}
	size := 0
	for _, d := range ds {
		n := proto.Size(d) + 4 // its tag and length
		last := parts[len(parts)-1]
		if len(last) > 0 && (len(last) == MaxReportDevices || size+n > maxReportBytes) {
			parts, size = append(parts, nil), 0
		}
		parts[len(parts)-1] = append(parts[len(parts)-1], d)
		size += n
	}
	return parts
}

// reportDevices sends the county, on the relay's round connection, this
// server's device registry (ReportDevices): the devices within areas, the
// township's areas at the county as its handshake said (nil: all). It sends
// nothing when the registry is the one the county acknowledged less than
// reportRefresh ago, and records each acknowledged report
// (metaUpstreamDevices). A county too old to take reports (Unimplemented) is
// not an error: the report is offered again at the next round.
func (s *Server) reportDevices(ctx context.Context, rpc fieldsyncv1.SyncServiceClient, areas []string) error {
	ds, err := s.registry.Devices(ctx)
	if err != nil {
		return fmt.Errorf("report devices: %w", err)
	}
	all := &fieldsyncv1.ReportDevicesRequest{}
	outside := 0
	for _, d := range ds {
		if areas != nil && !within(d.Areas, areas) {
			outside++
			continue
		}
		all.Devices = append(all.Devices, deviceReportOf(d))
	}
	if outside > 0 {
		s.log.WarnContext(ctx, "devices outside the township's areas at the county are not reported", "count", outside, "areas", areas)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(all)
	if err != nil {
		return fmt.Errorf("report devices: %w", err)
	}
	h := sha256.Sum256(b)
	sum := hex.EncodeToString(h[:])
	now := s.now()
	held, err := s.store.Meta(ctx, metaUpstreamDevices)
	if err != nil {
		return fmt.Errorf("report devices: %w", err)
	}
	if heldSum, at, ok := strings.Cut(string(held), " "); ok && heldSum == sum {
		if t, err := time.Parse(time.RFC3339, at); err == nil && now.Sub(t) < reportRefresh && !t.After(now) {
			return nil
		}
	}
	parts := reportParts(all.Devices)
	if len(parts) > maxReportParts {
		return fmt.Errorf("report devices: %d devices take %d parts, more than the %d a county takes", len(all.Devices), len(parts), maxReportParts)
	}
	for i, p := range parts {
		req := &fieldsyncv1.ReportDevicesRequest{Devices: p, Part: uint32(i), Parts: uint32(len(parts))}
		cctx, cancel := context.WithTimeout(ctx, syncclient.RPCDeadline(proto.Size(req)))
		_, err := rpc.ReportDevices(cctx, req)
		cancel()
		if status.Code(err) == codes.Unimplemented {
			s.log.WarnContext(ctx, "the county does not take device reports (an older version)")
			return nil
		}
		if err != nil {
			return fmt.Errorf("report devices: part %d of %d: %w", i, len(parts), err)
		}
	}
	if err := s.store.SetMeta(ctx, metaUpstreamDevices, []byte(sum+" "+now.UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("report devices: %w", err)
	}
	s.log.InfoContext(ctx, "device registry reported upstream", "devices", len(all.Devices), "parts", len(parts), "bytes", len(b))
	return nil
}

// checkText refuses a string of a relayed message that is not UTF-8, is
// longer than n characters or holds a control character.
func checkText(name, v string, n int) error {
	switch c := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", name)
	case c > n:
		return fmt.Errorf("%s has %d characters, at most %d", name, c, n)
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("%s holds a control character", name)
	}
	return nil
}

// reportedFromProto checks a device relay p reported and converts it. It
// refuses an id that is not 16 bytes, zero, the relay's or this server's;
// no areas, too many, or one that is not a prefix within the relay's areas;
// an enrolment time that is missing or invalid, or another time invalid; a
// negative pending count; and a last error that checkText refuses.
func reportedFromProto(pd *fieldsyncv1.DeviceReport, p Peer, self syncengine.ReplicaID) (boltstore.ReportedDevice, error) {
	var d boltstore.ReportedDevice
	id := pd.GetReplicaId()
	switch {
	case len(id) != len(d.ID):
		return d, fmt.Errorf("replica_id has %d bytes, want 16", len(id))
	case syncengine.ReplicaID(id).IsZero():
		return d, errors.New("replica_id is zero")
	case syncengine.ReplicaID(id) == p.ID:
		return d, errors.New("replica_id is the relay's own: a township reports its devices, not itself")
	case syncengine.ReplicaID(id) == self:
		return d, errors.New("replica_id is this server's")
	case len(pd.GetAreaPrefixes()) == 0:
		return d, errors.New("no area_prefixes")
	case len(pd.GetAreaPrefixes()) > maxReportAreas:
		return d, fmt.Errorf("%d area_prefixes, at most %d", len(pd.GetAreaPrefixes()), maxReportAreas)
	case pd.GetEnrolledAt() == nil || pd.GetEnrolledAt().CheckValid() != nil:
		return d, errors.New("enrolled_at is not a valid time")
	case pd.LastSeen != nil && pd.GetLastSeen().CheckValid() != nil:
		return d, errors.New("last_seen is not a valid time")
	case pd.LastSync != nil && pd.GetLastSync().CheckValid() != nil:
		return d, errors.New("last_sync is not a valid time")
	case pd.GetPendingChanges() < 0:
		return d, fmt.Errorf("pending_changes %d is negative", pd.GetPendingChanges())
	}
	for _, a := range pd.GetAreaPrefixes() {
		if !survey.DivisionPrefix(a) {
			return d, fmt.Errorf("area %q is not an area code", clean(a, 20))
		}
		if !syncengine.InAreas(a, p.Areas) {
			return d, fmt.Errorf("area %s is outside the relay's areas %s: a township reports only its own devices", a, strings.Join(p.Areas, ","))
		}
	}
	if err := checkText("last_error", pd.GetLastError(), maxReportError); err != nil {
		return d, err
	}
	d = boltstore.ReportedDevice{
		ID: syncengine.ReplicaID(id), Areas: pd.GetAreaPrefixes(), Enrolled: pd.GetEnrolledAt().AsTime(),
		Revoked: pd.GetRevoked(), Relay: pd.GetRelay(), Pending: int(pd.GetPendingChanges()), LastError: pd.GetLastError(),
	}
	if pd.LastSeen != nil {
		d.LastSeen = pd.GetLastSeen().AsTime()
	}
	if pd.LastSync != nil {
		d.LastSync = pd.GetLastSync().AsTime()
	}
	return d, nil
}

// ReportDevices stores a part of the device registry a relaying township
// reports; the last part makes it the township's report, in place of its
// previous one. It answers PermissionDenied to a device that is not a relay,
// and InvalidArgument, naming the device and the problem, for a part of more
// than MaxReportDevices devices, a part out of order, a device
// reportedFromProto refuses and a device listed twice; nothing of a refused
// part is stored.
func (v syncService) ReportDevices(ctx context.Context, req *fieldsyncv1.ReportDevicesRequest) (*fieldsyncv1.ReportDevicesResponse, error) {
	s := v.s
	p, err := peer(ctx)
	if err != nil {
		return nil, err
	}
	if !p.Relay {
		return nil, fmt.Errorf("device report from device %v: %w", p.ID, ErrNotRelay)
	}
	parts := max(int(req.GetParts()), 1)
	switch n := len(req.GetDevices()); {
	case n > MaxReportDevices:
		return nil, fmt.Errorf("device report from relay %v: %w: %d devices in a part, at most %d", p.ID, ErrBadRequest, n, MaxReportDevices)
	case parts > maxReportParts:
		return nil, fmt.Errorf("device report from relay %v: %w: %d parts, at most %d", p.ID, ErrBadRequest, parts, maxReportParts)
	case int(req.GetPart()) >= parts:
		return nil, fmt.Errorf("device report from relay %v: %w: part %d of %d", p.ID, ErrBadRequest, req.GetPart(), parts)
	}
	self := s.store.Replica()
	ds := make([]boltstore.ReportedDevice, 0, len(req.GetDevices()))
	for i, pd := range req.GetDevices() {
		d, err := reportedFromProto(pd, p, self)
		if err != nil {
			return nil, fmt.Errorf("device report from relay %v: %w: device %d (%x): %v", p.ID, ErrBadRequest, i, pd.GetReplicaId(), err)
		}
		ds = append(ds, d)
	}
	complete, err := s.registry.PutDeviceReport(ctx, p.ID, int(req.GetPart()), parts, ds, s.now())
	if errors.Is(err, boltstore.ErrInvalidReport) {
		return nil, fmt.Errorf("device report from relay %v: %w: %v", p.ID, ErrBadRequest, err)
	}
	if err != nil {
		return nil, fmt.Errorf("device report from relay %v: %w", p.ID, err)
	}
	s.log.InfoContext(ctx, "device report received", "relay", p.ID.String(), "part", req.GetPart(), "parts", parts, "devices", len(ds), "complete", complete)
	return &fieldsyncv1.ReportDevicesResponse{}, nil
}

// relayedReports returns the last report of every relay registered here and
// not revoked: a revoked (or replaced) township's phones are no longer
// shown or counted.
func (s *Server) relayedReports(ctx context.Context) ([]boltstore.DeviceReport, error) {
	rs, err := s.registry.DeviceReports(ctx)
	if err != nil {
		return nil, err
	}
	out := rs[:0]
	for _, r := range rs {
		d, err := s.registry.Device(ctx, r.Relay)
		if errors.Is(err, boltstore.ErrNoDevice) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if d.Relay && !d.Revoked {
			out = append(out, r)
		}
	}
	return s.oneReportEach(ctx, out)
}

// oneReportEach keeps each phone in one township's report: a phone
// re-enrolled under another township is reported by both until the first
// revokes it, and only the report that saw it sync last (else seen, else
// enrolled last) stands. A phone enrolled with this server itself is its own
// registry's, not a report's.
func (s *Server) oneReportEach(ctx context.Context, rs []boltstore.DeviceReport) ([]boltstore.DeviceReport, error) {
	newer := func(a, b boltstore.ReportedDevice) bool {
		return cmp.Or(a.LastSync.Compare(b.LastSync), a.LastSeen.Compare(b.LastSeen), a.Enrolled.Compare(b.Enrolled)) > 0
	}
	best := map[syncengine.ReplicaID]boltstore.ReportedDevice{}
	for _, r := range rs {
		for _, d := range r.Devices {
			if b, ok := best[d.ID]; !ok || newer(d, b) {
				best[d.ID] = d
			}
		}
	}
	for i := range rs {
		kept := make([]boltstore.ReportedDevice, 0, len(rs[i].Devices))
		for _, d := range rs[i].Devices {
			if b := best[d.ID]; !newer(b, d) && !newer(d, b) {
				if _, err := s.registry.Device(ctx, d.ID); errors.Is(err, boltstore.ErrNoDevice) {
					kept = append(kept, d)
					delete(best, d.ID) // an exact tie: the first report keeps it
				} else if err != nil {
					return nil, err
				}
			}
		}
		rs[i].Devices = kept
	}
	return rs, nil
}

// relayedStatus returns the status of the devices the server's townships
// reported, township by township (SyncStatus).
func (s *Server) relayedStatus(ctx context.Context) ([]*fieldsyncv1.DeviceSyncStatus, error) {
	rs, err := s.relayedReports(ctx)
	if err != nil {
		return nil, err
	}
	var out []*fieldsyncv1.DeviceSyncStatus
	for _, r := range rs {
		for _, d := range r.Devices {
			st := &fieldsyncv1.DeviceSyncStatus{
				ReplicaId: append([]byte(nil), d.ID[:]...), AreaPrefixes: d.Areas, Revoked: d.Revoked, Relay: d.Relay,
				PendingChanges: int32(min(d.Pending, 1<<31-1)), LastError: d.LastError,
				ReportedBy: append([]byte(nil), r.Relay[:]...), ReportedAt: timestamppb.New(r.At),
			}
			if !d.LastSeen.IsZero() {
				st.LastSeen = timestamppb.New(d.LastSeen)
			}
			if !d.LastSync.IsZero() {
				st.LastSync = timestamppb.New(d.LastSync)
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// relayedDevices returns the devices the server's townships reported, with
// their last syncs with their township (see the top of this file).
func (s *Server) relayedDevices(ctx context.Context) ([]indicators.Device, error) {
	rs, err := s.relayedReports(ctx)
	if err != nil {
		return nil, err
	}
	var out []indicators.Device
	for _, r := range rs {
		for _, d := range r.Devices {
			out = append(out, indicators.Device{ID: d.ID.String(), Areas: d.Areas, Enrolled: d.Enrolled, LastSync: d.LastSync, Revoked: d.Revoked, Relay: d.Relay})
		}
	}
	return out, nil
}
