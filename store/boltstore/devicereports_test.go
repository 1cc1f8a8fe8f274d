package boltstore_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

func reportedDevice(name string) boltstore.ReportedDevice {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	return boltstore.ReportedDevice{
		ID: replicaID(name), Areas: []string{villageA}, Enrolled: t0, LastSeen: t0.Add(time.Hour), LastSync: t0.Add(time.Hour),
		Pending: 3, LastError: "连接超时",
	}
}

// reportIDs returns the ids of each relay's reported devices.
func reportIDs(t *testing.T, s *boltstore.Store) map[syncengine.ReplicaID][]syncengine.ReplicaID {
	t.Helper()
	rs, err := s.Registry().DeviceReports(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[syncengine.ReplicaID][]syncengine.ReplicaID{}
	for _, r := range rs {
		out[r.Relay] = []syncengine.ReplicaID{}
		for _, d := range r.Devices {
			out[r.Relay] = append(out[r.Relay], d.ID)
		}
	}
	return out
}

// A relay's report replaces its previous one whole, beside other relays'
// reports, and reads back as it was put.
func TestDeviceReportReplaces(t *testing.T) {
	s := openStore(t)
	town1, town2 := replicaID("town1"), replicaID("town2")
	a, b, c := reportedDevice("a"), reportedDevice("b"), reportedDevice("c")
	b.Revoked, b.LastSeen, b.LastSync, b.LastError = true, time.Time{}, time.Time{}, ""
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, put := range []struct {
		relay   syncengine.ReplicaID
		devices []boltstore.ReportedDevice
	}{{town1, []boltstore.ReportedDevice{a, b}}, {town2, []boltstore.ReportedDevice{c}}} {
		if done, err := s.Registry().PutDeviceReport(t.Context(), put.relay, 0, 1, put.devices, at); err != nil || !done {
			t.Fatalf("put a one-part report: %v, %v", done, err)
		}
	}
	rs, err := s.Registry().DeviceReports(t.Context())
	if err != nil || len(rs) != 2 {
		t.Fatalf("DeviceReports = %v, %v; want two", rs, err)
	}
	r := rs[slices.IndexFunc(rs, func(r boltstore.DeviceReport) bool { return r.Relay == town1 })]
	if !r.At.Equal(at) || len(r.Devices) != 2 {
		t.Fatalf("town1's report = %+v", r)
	}
	for i, want := range []boltstore.ReportedDevice{a, b} {
		got := r.Devices[i]
		if got.ID != want.ID || !slices.Equal(got.Areas, want.Areas) || !got.Enrolled.Equal(want.Enrolled) || got.Revoked != want.Revoked ||
			!got.LastSeen.Equal(want.LastSeen) || !got.LastSync.Equal(want.LastSync) || got.Pending != want.Pending || got.LastError != want.LastError {
			t.Errorf("device %d reads back as %+v, want %+v", i, got, want)
		}
	}
	// b is gone from town1's registry: its next report does not list it.
	if _, err := s.Registry().PutDeviceReport(t.Context(), town1, 0, 1, []boltstore.ReportedDevice{a}, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := reportIDs(t, s)
	if !slices.Equal(got[town1], []syncengine.ReplicaID{a.ID}) || !slices.Equal(got[town2], []syncengine.ReplicaID{c.ID}) {
		t.Errorf("after town1's second report: %v", got)
	}
	// An empty report says the relay has no devices.
	if _, err := s.Registry().PutDeviceReport(t.Context(), town1, 0, 1, nil, at.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := reportIDs(t, s); len(got[town1]) != 0 || len(got) != 2 {
		t.Errorf("after town1's empty report: %v", got)
	}
}

// A report in parts takes effect with its last part, whole; a part out of
// order is refused and stores nothing; part 0 starts again.
func TestDeviceReportInParts(t *testing.T) {
	s := openStore(t)
	town := replicaID("town")
	a, b, c := reportedDevice("a"), reportedDevice("b"), reportedDevice("c")
	put := func(part, parts int, ds ...boltstore.ReportedDevice) (bool, error) {
		return s.Registry().PutDeviceReport(t.Context(), town, part, parts, ds, time.Now())
	}
	if _, err := put(0, 1, a); err != nil {
		t.Fatal(err)
	}
	if done, err := put(0, 3, b); err != nil || done {
		t.Fatalf("part 0 of 3: %v, %v", done, err)
	}
	if done, err := put(1, 3, c); err != nil || done {
		t.Fatalf("part 1 of 3: %v, %v", done, err)
	}
	if got := reportIDs(t, s)[town]; !slices.Equal(got, []syncengine.ReplicaID{a.ID}) {
		t.Errorf("before the last part the report is the previous one, %v; got %v", a.ID, got)
	}
	for _, tc := range []struct {
		name        string
		part, parts int
		ds          []boltstore.ReportedDevice
	}{
		{"a part again", 1, 3, nil},
		{"another count of parts", 2, 4, nil},
		{"a part beyond the count", 3, 3, nil},
		{"a device listed in an earlier part", 2, 3, []boltstore.ReportedDevice{b}},
		{"a device twice in the part", 2, 3, []boltstore.ReportedDevice{a, a}},
		{"a zero id", 2, 3, []boltstore.ReportedDevice{{Areas: []string{villageA}}}},
		{"no areas", 2, 3, []boltstore.ReportedDevice{{ID: replicaID("x")}}},
		{"a bad area", 2, 3, []boltstore.ReportedDevice{{ID: replicaID("x"), Areas: []string{"53x"}}}},
	} {
		if _, err := put(tc.part, tc.parts, tc.ds...); !errors.Is(err, boltstore.ErrInvalidReport) {
			t.Errorf("%s: %v, want ErrInvalidReport", tc.name, err)
		}
	}
	if done, err := put(2, 3, a); err != nil || !done {
		t.Fatalf("the last part: %v, %v", done, err)
	}
	if got := reportIDs(t, s)[town]; !slices.Equal(got, []syncengine.ReplicaID{b.ID, c.ID, a.ID}) {
		t.Errorf("after the last part: %v, want b, c, a", got)
	}
	if _, err := put(1, 2, b); !errors.Is(err, boltstore.ErrInvalidReport) {
		t.Errorf("part 1 with no report arriving: %v, want ErrInvalidReport", err)
	}
	if _, err := s.Registry().PutDeviceReport(t.Context(), syncengine.ReplicaID{}, 0, 1, nil, time.Now()); !errors.Is(err, boltstore.ErrInvalidReport) {
		t.Errorf("a zero relay: %v, want ErrInvalidReport", err)
	}
}

// A store of schema 6 (before device reports) opens as the current schema,
// and takes reports.
func TestOpenUpgradesSchema6(t *testing.T) {
	path := realStore(t, t.TempDir())
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket([]byte("devicereports")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 6))
	})
	s := openAt(t, path)
	if _, err := s.Registry().PutDeviceReport(t.Context(), replicaID("town"), 0, 1, []boltstore.ReportedDevice{reportedDevice("a")}, time.Now()); err != nil {
		t.Fatalf("put a report after the upgrade: %v", err)
	}
	if got := reportIDs(t, s); len(got) != 1 {
		t.Errorf("reports after the upgrade: %v", got)
	}
}
