package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/syncengine"
)

// newClockedTiers is newTiers with both servers on the clock given (Unix
// nanoseconds), so that a test can move their time.
func newClockedTiers(t *testing.T, clock *atomic.Int64) *tiers {
	t.Helper()
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	cdir, tdir := t.TempDir(), t.TempDir()
	c, caddr := servertest.Start(t, server.Config{DataDir: cdir, Area: county, IDHashKey: make([]byte, 32), Now: now})
	tw, taddr := servertest.Start(t, server.Config{DataDir: tdir, Area: township1, Now: now})
	code, _, err := c.IssueRelayCode([]string{township1}, "township 1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := tw.EnrollUpstream(t.Context(), caddr, code, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.SetUpstream(t.Context(), server.Upstream{Token: token}); err != nil {
		t.Fatal(err)
	}
	return &tiers{county: c, town: tw, countyAddr: caddr, townAddr: taddr, countyDir: cdir, townDir: tdir, token: token}
}

// reportedBy returns the devices of the county's SyncStatus that town
// reported, by replica id.
func reportedBy(t *testing.T, st *fieldsyncv1.SyncStatusResponse, town syncengine.ReplicaID) map[syncengine.ReplicaID]*fieldsyncv1.DeviceSyncStatus {
	t.Helper()
	out := map[syncengine.ReplicaID]*fieldsyncv1.DeviceSyncStatus{}
	for _, d := range st.GetDevices() {
		if len(d.GetReportedBy()) == 0 {
			continue
		}
		if syncengine.ReplicaID(d.GetReportedBy()) != town {
			t.Errorf("device %x reported by %x, want the township %v", d.GetReplicaId(), d.GetReportedBy(), town)
		}
		if _, ok := out[syncengine.ReplicaID(d.GetReplicaId())]; ok {
			t.Errorf("device %x listed twice", d.GetReplicaId())
		}
		out[syncengine.ReplicaID(d.GetReplicaId())] = d
	}
	return out
}

// notSynced3d returns devices_not_synced_3d of each village of township1 at
// the county.
func notSynced3d(t *testing.T, tr *tiers) map[string]uint64 {
	t.Helper()
	resp, err := adminClient(t, tr.countyAddr).Indicators(adminCtxFor(t, tr.countyDir), &fieldsyncv1.IndicatorsRequest{AreaCode: township1})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, row := range resp.GetRows() {
		for _, v := range row.GetValues() {
			if v.GetKey() == "devices_not_synced_3d" {
				out[row.GetAreaCode()] = uint64(v.GetNumerator())
			}
		}
	}
	return out
}

// A township's phones reach its county's status and indicators with the
// township's round: a phone that synced, with its last sync, and one that
// only said hello, with its pending changes and last error (cleaned and
// bounded); a phone not synced for three days counts in its village at the
// county until it syncs again and the township reports it; a phone revoked
// at the township shows revoked at the county, and counts no more. An
// unchanged registry is not sent again within the hour, and a report sent
// again stores each phone once. No name, token or code reaches the county.
func TestDevicesTravelToCounty(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	tr := newClockedTiers(t, &clock)
	town := tr.town.Replica()
	cadmin, cctx := adminClient(t, tr.countyAddr), adminCtxFor(t, tr.countyDir)
	countyStatus := func() *fieldsyncv1.SyncStatusResponse {
		t.Helper()
		st, err := cadmin.SyncStatus(cctx, &fieldsyncv1.SyncStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	round := func() {
		t.Helper()
		if err := tr.town.SyncUpstream(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	// Phone a, of 李春兰, syncs with the township; device c only says hello,
	// with work pending and a long error the township cuts mid-character.
	codeA, _, err := tr.town.IssueEnrolmentCode([]string{villageA}, "李春兰的手机", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := fieldsync.Open(t.Context(), filepath.Join(t.TempDir(), "phone.db"), fieldsync.WithRetry(fieldsync.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.Enroll(t.Context(), tr.townAddr, codeA); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(t.Context(), followUp(t, villageA, 130, 80)); err != nil {
		t.Fatal(err)
	}
	mustSyncAll(t, a)
	codeC, _, err := tr.town.IssueEnrolmentCode([]string{villageB}, "王芳的手机", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := syncengine.ReplicaID{0xc}
	townConn := dial(t, tr.townAddr)
	enrolled, err := fieldsyncv1.NewEnrolmentServiceClient(townConn).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: codeC, ReplicaId: c[:], DeviceName: "王芳的手机"})
	if err != nil {
		t.Fatal(err)
	}
	longErr := "rpc error: code = Unavailable\ndesc = " + strings.Repeat("超时", 200)
	cctxTown := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+enrolled.GetDeviceToken())
	if _, err := fieldsyncv1.NewSyncServiceClient(townConn).Hello(cctxTown, &fieldsyncv1.HelloRequest{ReplicaId: c[:], PendingChanges: 4, LastError: longErr}); err != nil {
		t.Fatal(err)
	}
	if got := reportedBy(t, countyStatus(), town); len(got) != 0 {
		t.Errorf("before the township's round the county lists %d of its devices", len(got))
	}
	round()
	st := countyStatus()
	got := reportedBy(t, st, town)
	aID := a.Replica()
	da, dc := got[aID], got[c]
	if len(got) != 2 || da == nil || dc == nil {
		t.Fatalf("county lists %d devices of the township, want a and c: %v", len(got), st.GetDevices())
	}
	if da.GetLastSync() == nil || !da.GetLastSync().AsTime().Equal(t0) || da.GetPendingChanges() != 0 || da.GetRevoked() || da.GetLastError() != "" ||
		len(da.GetAreaPrefixes()) != 1 || da.GetAreaPrefixes()[0] != villageA || da.GetName() != "" || !da.GetReportedAt().AsTime().Equal(t0) {
		t.Errorf("phone a at the county: %v; want synced at %v, 0 pending, village A, no name, reported at %v", da, t0, t0)
	}
	wantErr := "rpc error: code = Unavailable desc = 超时"
	if dc.GetLastSync() != nil || dc.GetLastSeen() == nil || dc.GetPendingChanges() != 4 || !strings.HasPrefix(dc.GetLastError(), wantErr) ||
		!utf8.ValidString(dc.GetLastError()) || utf8.RuneCountInString(dc.GetLastError()) > 300 {
		t.Errorf("device c at the county: %v; want seen, never synced, 4 pending, its error cleaned to at most 300 characters", dc)
	}
	// The township itself is listed once, as a relay, not as its own device.
	relays := 0
	for _, d := range st.GetDevices() {
		if d.GetRelay() {
			relays++
		}
	}
	if relays != 1 {
		t.Errorf("county lists %d relays, want the township", relays)
	}
	if n := notSynced3d(t, tr); n[villageA] != 0 || n[villageB] != 0 {
		t.Errorf("devices_not_synced_3d on the day they enrolled: %v, want 0 in both villages", n)
	}

	// Nothing changed at the township: its next round sends nothing.
	clock.Store(t0.Add(time.Minute).UnixNano())
	round()
	if at := reportedBy(t, countyStatus(), town)[aID].GetReportedAt().AsTime(); !at.Equal(t0) {
		t.Errorf("an unchanged registry was reported again at %v", at)
	}

	// Four days on: neither phone synced since. The township's round
	// reports again (its last report is over an hour old); both phones
	// count in their villages.
	day4 := t0.Add(4 * 24 * time.Hour)
	clock.Store(day4.UnixNano())
	round()
	if at := reportedBy(t, countyStatus(), town)[aID].GetReportedAt().AsTime(); !at.Equal(day4) {
		t.Errorf("report after four days taken at %v, want %v", at, day4)
	}
	if n := notSynced3d(t, tr); n[villageA] != 1 || n[villageB] != 1 || n[township1+"000"] != 2 {
		t.Errorf("devices_not_synced_3d after four days: %v, want 1 in each village, 2 in the township", n)
	}
	// Phone a syncs; c is revoked at the township.
	mustSyncAll(t, a)
	if _, err := adminClient(t, tr.townAddr).RevokeDevice(adminCtxFor(t, tr.townDir), &fieldsyncv1.RevokeDeviceRequest{ReplicaId: c[:]}); err != nil {
		t.Fatal(err)
	}
	round()
	got = reportedBy(t, countyStatus(), town)
	if !got[aID].GetLastSync().AsTime().Equal(day4) || !got[c].GetRevoked() || got[aID].GetRevoked() {
		t.Errorf("after a synced and c was revoked: a %v, c %v; want a synced at %v, c revoked", got[aID], got[c], day4)
	}
	if n := notSynced3d(t, tr); n[villageA] != 0 || n[villageB] != 0 {
		t.Errorf("devices_not_synced_3d after a synced and c was revoked: %v, want none", n)
	}

	// The township's acknowledgement is lost: it reports again, and the
	// county still lists each phone once.
	if err := tr.town.Store().SetMeta(t.Context(), "upstream_devices_reported", nil); err != nil {
		t.Fatal(err)
	}
	round()
	if got := reportedBy(t, countyStatus(), town); len(got) != 2 {
		t.Errorf("after a report sent again the county lists %d devices of the township, want 2", len(got))
	}

	// No name, token or code of the township's devices reached the county:
	// not in its status, nor anywhere in its store file.
	b, err := proto.Marshal(countyStatus())
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(tr.countyDir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"李春兰", "王芳", codeA, codeC, enrolled.GetDeviceToken(), tr.token} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the county's status holds %q", secret)
		}
		if strings.Contains(string(file), secret) {
			t.Errorf("the county's store holds %q", secret)
		}
	}
	if err := tr.county.Store().Check(t.Context()); err != nil {
		t.Error(err)
	}
}

// The county refuses, with InvalidArgument naming the device and the
// problem, a part from its township holding a device outside the township's
// areas, with a bad id, a bad time or count, a string beyond its bound, too
// many areas, a device twice, and a part of more than 5000 devices or out of
// order; nothing of a refused part is stored. A device's token may not report
// at all. A report in two parts takes effect with the second.
func TestReportDevicesRefuses(t *testing.T) {
	tr := newTiers(t)
	rpc := fieldsyncv1.NewSyncServiceClient(dial(t, tr.countyAddr))
	rctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tr.token)
	n := byte(0)
	good := func() *fieldsyncv1.DeviceReport {
		n++
		return &fieldsyncv1.DeviceReport{ReplicaId: []byte{n, 15: 1}, AreaPrefixes: []string{villageA}, EnrolledAt: timestamppb.Now(),
			LastSeen: timestamppb.Now(), LastSync: timestamppb.Now(), PendingChanges: 2, LastError: "超时"}
	}
	report := func(part, parts uint32, ds ...*fieldsyncv1.DeviceReport) error {
		_, err := rpc.ReportDevices(rctx, &fieldsyncv1.ReportDevicesRequest{Devices: ds, Part: part, Parts: parts})
		return err
	}
	held := func() map[syncengine.ReplicaID]*fieldsyncv1.DeviceSyncStatus {
		st, err := adminClient(t, tr.countyAddr).SyncStatus(adminCtxFor(t, tr.countyDir), &fieldsyncv1.SyncStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return reportedBy(t, st, tr.town.Replica())
	}
	first := good()
	if err := report(0, 1, first); err != nil {
		t.Fatal(err)
	}
	townID, countyID := tr.town.Replica(), tr.county.Replica()
	for _, tc := range []struct {
		name   string
		change func(*fieldsyncv1.DeviceReport)
		says   string
	}{
		{"another township's village", func(d *fieldsyncv1.DeviceReport) { d.AreaPrefixes = []string{village2} }, "outside the relay's areas"},
		{"the whole county", func(d *fieldsyncv1.DeviceReport) { d.AreaPrefixes = []string{county} }, "outside the relay's areas"},
		{"one area outside", func(d *fieldsyncv1.DeviceReport) { d.AreaPrefixes = []string{villageA, village2} }, "outside the relay's areas"},
		{"not an area code", func(d *fieldsyncv1.DeviceReport) { d.AreaPrefixes = []string{township1 + "2x"} }, "not an area code"},
		{"no areas", func(d *fieldsyncv1.DeviceReport) { d.AreaPrefixes = nil }, "no area_prefixes"},
		{"too many areas", func(d *fieldsyncv1.DeviceReport) {
			d.AreaPrefixes = nil
			for range 65 {
				d.AreaPrefixes = append(d.AreaPrefixes, villageA)
			}
		}, "65 area_prefixes, at most 64"},
		{"short id", func(d *fieldsyncv1.DeviceReport) { d.ReplicaId = []byte{1, 2, 3} }, "replica_id has 3 bytes"},
		{"zero id", func(d *fieldsyncv1.DeviceReport) { d.ReplicaId = make([]byte, 16) }, "replica_id is zero"},
		{"the relay itself", func(d *fieldsyncv1.DeviceReport) { d.ReplicaId = townID[:] }, "the relay's own"},
		{"the county", func(d *fieldsyncv1.DeviceReport) { d.ReplicaId = countyID[:] }, "this server's"},
		{"no enrolment time", func(d *fieldsyncv1.DeviceReport) { d.EnrolledAt = nil }, "enrolled_at is not a valid time"},
		{"bad last sync", func(d *fieldsyncv1.DeviceReport) { d.LastSync = &timestamppb.Timestamp{Seconds: 1, Nanos: -1} }, "last_sync is not a valid time"},
		{"bad last seen", func(d *fieldsyncv1.DeviceReport) { d.LastSeen = &timestamppb.Timestamp{Seconds: 1 << 40} }, "last_seen is not a valid time"},
		{"negative pending", func(d *fieldsyncv1.DeviceReport) { d.PendingChanges = -1 }, "pending_changes -1 is negative"},
		{"long error", func(d *fieldsyncv1.DeviceReport) { d.LastError = strings.Repeat("错", 301) }, "last_error has 301 characters, at most 300"},
		{"escape sequence", func(d *fieldsyncv1.DeviceReport) { d.LastError = "ok\x1b[2J" }, "last_error holds a control character"},
		{"listed twice", func(d *fieldsyncv1.DeviceReport) { d.ReplicaId = first.ReplicaId }, "listed twice"},
	} {
		bad := good()
		tc.change(bad)
		lead := first
		if tc.name != "listed twice" {
			lead = good()
		}
		err := report(0, 1, lead, bad)
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.InvalidArgument || servertest.ReasonOf(err) != server.ReasonBadRequest || !strings.Contains(msg, tc.says) ||
			(tc.name != "listed twice" && !strings.Contains(msg, "device 1")) {
			t.Errorf("%s: ReportDevices = %v, want InvalidArgument naming device 1 and saying %q", tc.name, err, tc.says)
		}
	}
	many := make([]*fieldsyncv1.DeviceReport, server.MaxReportDevices+1)
	for i := range many {
		many[i] = good()
		many[i].ReplicaId = []byte{byte(i), byte(i >> 8), 15: 2}
	}
	if err := report(0, 1, many...); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at most 5000") {
		t.Errorf("ReportDevices of %d devices = %v, want InvalidArgument", len(many), err)
	}
	for _, tc := range []struct {
		name        string
		part, parts uint32
		says        string
	}{
		{"a part beyond the count", 2, 2, "part 2 of 2"},
		{"too many parts", 0, 21, "21 parts, at most 20"},
		{"a second part with no first", 1, 2, "no earlier part"},
	} {
		if err := report(tc.part, tc.parts, good()); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: ReportDevices = %v, want InvalidArgument saying %q", tc.name, err, tc.says)
		}
	}
	if got := held(); len(got) != 1 || got[syncengine.ReplicaID(first.ReplicaId)] == nil {
		t.Errorf("after the refused parts the county holds %v, want only the first report", got)
	}

	// In two parts: the first part changes nothing yet.
	p0, p1 := good(), good()
	if err := report(0, 2, p0); err != nil {
		t.Fatal(err)
	}
	if got := held(); len(got) != 1 || got[syncengine.ReplicaID(first.ReplicaId)] == nil {
		t.Errorf("after part 0 of 2 the county holds %v, want the first report", got)
	}
	if err := report(1, 2, p1); err != nil {
		t.Fatal(err)
	}
	if got := held(); len(got) != 2 || got[syncengine.ReplicaID(p0.ReplicaId)] == nil || got[syncengine.ReplicaID(p1.ReplicaId)] == nil {
		t.Errorf("after part 1 of 2 the county holds %v, want the two parts' devices", got)
	}

	// A phone enrolled at the county is no relay.
	code, _, err := tr.county.IssueEnrolmentCode([]string{village2}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	phone := syncengine.ReplicaID{1, 2, 3}
	enrolled, err := fieldsyncv1.NewEnrolmentServiceClient(dial(t, tr.countyAddr)).Enroll(t.Context(), &fieldsyncv1.EnrollRequest{Code: code, ReplicaId: phone[:]})
	if err != nil {
		t.Fatal(err)
	}
	own := good()
	own.AreaPrefixes = []string{village2}
	pctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+enrolled.GetDeviceToken())
	if _, err := rpc.ReportDevices(pctx, &fieldsyncv1.ReportDevicesRequest{Devices: []*fieldsyncv1.DeviceReport{own}}); status.Code(err) != codes.PermissionDenied || servertest.ReasonOf(err) != server.ReasonNotRelay {
		t.Errorf("ReportDevices with a device token = %v, want PermissionDenied %s", err, server.ReasonNotRelay)
	}
	if got := held(); len(got) != 2 {
		t.Errorf("after the device's report the county holds %d reported devices, want 2", len(got))
	}
	if err := tr.county.Store().Check(t.Context()); err != nil {
		t.Error(err)
	}
}
