package server

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// TestOneReportEach: a phone two townships report (re-enrolled under the
// second) stands once, in the report that saw it sync last; a phone enrolled
// with the county itself is not taken from a report.
func TestOneReportEach(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "server.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &Server{store: st, registry: st.Registry()}
	var moved, stays, direct syncengine.ReplicaID
	moved[0], stays[0], direct[0] = 1, 2, 3
	if err := st.Registry().PutDevice(t.Context(), boltstore.Device{ID: direct, Name: "county phone", Areas: []string{"532523"}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	dev := func(id syncengine.ReplicaID, synced time.Time) boltstore.ReportedDevice {
		return boltstore.ReportedDevice{ID: id, Areas: []string{"532523100201"}, Enrolled: t0.Add(-time.Hour), LastSync: synced}
	}
	rs := []boltstore.DeviceReport{
		{Relay: syncengine.ReplicaID{9}, Devices: []boltstore.ReportedDevice{dev(moved, t0), dev(stays, t0), dev(direct, t0)}},
		{Relay: syncengine.ReplicaID{8}, Devices: []boltstore.ReportedDevice{dev(moved, t0.Add(time.Hour))}},
	}
	got, err := s.oneReportEach(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(r boltstore.DeviceReport) (out []syncengine.ReplicaID) {
		for _, d := range r.Devices {
			out = append(out, d.ID)
		}
		return out
	}
	if a, b := ids(got[0]), ids(got[1]); len(a) != 1 || a[0] != stays || len(b) != 1 || b[0] != moved {
		t.Errorf("reports keep %v and %v; want the first only the phone that stayed, the second the moved one", a, b)
	}
}
