package boltstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// ReportedDevice is a device of another server's registry (a township's
// phone) as that server reported it to this one, its county. The store keeps
// what it is given; the server decides what a report may say.
type ReportedDevice struct {
	// ID is the device's replica id.
	ID syncengine.ReplicaID
	// Areas are the area-code prefixes the device may sync.
	Areas []string
	// Enrolled is when the reporting server registered the device.
	Enrolled time.Time
	// Revoked and Relay are as in Device.
	Revoked, Relay bool
	// LastSeen, LastSync, Pending and LastError are what the reporting
	// server saw of the device's syncs (its Activity).
	LastSeen, LastSync time.Time
	Pending            int
	LastError          string
}

// DeviceReport is the whole registry a relay last reported.
type DeviceReport struct {
	// Relay is the replica id of the server that reported it.
	Relay syncengine.ReplicaID
	// At is when this store took the report's last part.
	At time.Time
	// Devices are in the order reported, each once.
	Devices []ReportedDevice
}

// reportJSON is how a report is stored under its relay's id, and a report
// whose parts are arriving under the relay's id and 'p' (Parts and Next then
// say how many parts it has and which comes next). JSON keeps it readable
// with bbolt's tools and lets fields be added.
type reportJSON struct {
	At      time.Time      `json:"at,omitzero"`
	Parts   int            `json:"parts,omitempty"`
	Next    int            `json:"next,omitempty"`
	Devices []reportedJSON `json:"devices"`
}

type reportedJSON struct {
	ID        string    `json:"id"`
	Areas     []string  `json:"areas"`
	Enrolled  time.Time `json:"enrolled,omitzero"`
	Revoked   bool      `json:"revoked,omitempty"`
	Relay     bool      `json:"relay,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	Pending   int       `json:"pending,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

// reports is the devicereports bucket.
func (t *tx) reports() *bbolt.Bucket { return t.btx.Bucket(bucketDeviceReports) }

// partialSuffix ends the key of a report whose parts are arriving.
const partialSuffix = 'p'

func partialKey(relay syncengine.ReplicaID) []byte { return append(relay[:], partialSuffix) }

func toReportedJSON(d ReportedDevice) reportedJSON {
	return reportedJSON{
		ID: hex.EncodeToString(d.ID[:]), Areas: d.Areas, Enrolled: d.Enrolled.UTC(), Revoked: d.Revoked, Relay: d.Relay,
		LastSeen: d.LastSeen.UTC(), LastSync: d.LastSync.UTC(), Pending: d.Pending, LastError: d.LastError,
	}
}

// decodeReport decodes the value v of key k of the devicereports bucket. It
// returns whether it is a report whose parts are still arriving.
func decodeReport(k, v []byte) (DeviceReport, reportJSON, bool, error) {
	var r DeviceReport
	var j reportJSON
	partial := len(k) == idLen+1 && k[idLen] == partialSuffix
	if len(k) != idLen && !partial {
		return r, j, false, fmt.Errorf("boltstore: device report key of %d bytes: %w", len(k), ErrCorrupt)
	}
	r.Relay = syncengine.ReplicaID(k[:idLen])
	if err := json.Unmarshal(v, &j); err != nil {
		return r, j, partial, fmt.Errorf("boltstore: device report of %v: %w: %v", r.Relay, ErrCorrupt, err)
	}
	if partial && (j.Next <= 0 || j.Next >= j.Parts) {
		return r, j, partial, fmt.Errorf("boltstore: device report of %v: %w: part %d of %d next", r.Relay, ErrCorrupt, j.Next, j.Parts)
	}
	r.At = j.At
	seen := make(map[syncengine.ReplicaID]bool, len(j.Devices))
	for _, dj := range j.Devices {
		var d ReportedDevice
		if n, err := hex.Decode(d.ID[:], []byte(dj.ID)); err != nil || n != idLen || len(dj.ID) != 2*idLen {
			return r, j, partial, fmt.Errorf("boltstore: device report of %v: %w: device id %q", r.Relay, ErrCorrupt, dj.ID)
		}
		if seen[d.ID] {
			return r, j, partial, fmt.Errorf("boltstore: device report of %v: %w: device %v twice", r.Relay, ErrCorrupt, d.ID)
		}
		seen[d.ID] = true
		d.Areas, d.Enrolled, d.Revoked, d.Relay = dj.Areas, dj.Enrolled, dj.Revoked, dj.Relay
		d.LastSeen, d.LastSync, d.Pending, d.LastError = dj.LastSeen, dj.LastSync, dj.Pending, dj.LastError
		r.Devices = append(r.Devices, d)
	}
	return r, j, partial, nil
}

// PutDeviceReport stores part (from 0) of the parts of the registry relay
// reports, taken at at, in one transaction. Part 0 starts a new report (a
// report whose other parts never came is dropped); each further part must
// follow the last one taken, of a report of as many parts; the last part
// makes the report relay's, replacing its previous report whole (a device it
// no longer lists is gone). It returns whether the report is now complete.
// It returns an error wrapping ErrInvalidReport, storing nothing, for a zero
// relay, a part out of order or beyond parts, a device with a zero id, no
// areas or an invalid area prefix, and a device listed twice in the report.
func (r *Registry) PutDeviceReport(ctx context.Context, relay syncengine.ReplicaID, part, parts int, devices []ReportedDevice, at time.Time) (complete bool, err error) {
	s := r.s
	switch {
	case relay.IsZero():
		return false, fmt.Errorf("boltstore: device report: %w: zero relay", ErrInvalidReport)
	case parts < 1 || part < 0 || part >= parts:
		return false, fmt.Errorf("boltstore: device report of %v: %w: part %d of %d", relay, ErrInvalidReport, part, parts)
	}
	add := make([]reportedJSON, 0, len(devices))
	for _, d := range devices {
		if d.ID.IsZero() || len(d.Areas) == 0 {
			return false, fmt.Errorf("boltstore: device report of %v: %w: device %v without an id or areas", relay, ErrInvalidReport, d.ID)
		}
		for _, a := range d.Areas {
			if !syncengine.ValidPrefix(a) || a == "" {
				return false, fmt.Errorf("boltstore: device report of %v: %w: device %v: area %q", relay, ErrInvalidReport, d.ID, a)
			}
		}
		d.Areas = slices.Clone(d.Areas)
		add = append(add, toReportedJSON(d))
	}
	err = s.update(ctx, func(t *tx) error {
		if err := t.check(ctx); err != nil {
			return err
		}
		j := reportJSON{Parts: parts, Next: 1}
		if part > 0 {
			v := t.reports().Get(partialKey(relay))
			if v == nil {
				return fmt.Errorf("boltstore: device report of %v: %w: part %d of %d, and no earlier part arrived: send the report again from part 0", relay, ErrInvalidReport, part, parts)
			}
			_, held, _, err := decodeReport(partialKey(relay), v)
			if err != nil {
				return err
			}
			if held.Parts != parts || held.Next != part {
				return fmt.Errorf("boltstore: device report of %v: %w: part %d of %d, after part %d of %d: send the report again from part 0", relay, ErrInvalidReport, part, parts, held.Next-1, held.Parts)
			}
			j, j.Next = held, part+1
		}
		seen := make(map[string]bool, len(j.Devices)+len(add))
		for _, d := range j.Devices {
			seen[d.ID] = true
		}
		for _, d := range add {
			if seen[d.ID] {
				return fmt.Errorf("boltstore: device report of %v: %w: device %s listed twice", relay, ErrInvalidReport, d.ID)
			}
			seen[d.ID] = true
		}
		j.Devices = append(j.Devices, add...)
		if complete = j.Next == parts; !complete {
			v, err := json.Marshal(j)
			if err != nil {
				return err
			}
			return t.reports().Put(partialKey(relay), v)
		}
		if err := t.reports().Delete(partialKey(relay)); err != nil {
			return err
		}
		v, err := json.Marshal(reportJSON{At: at.UTC(), Devices: j.Devices})
		if err != nil {
			return err
		}
		return t.reports().Put(bytes.Clone(relay[:]), v)
	})
	return complete, err
}

// DeviceReports returns the last complete report of every relay that sent
// one, ordered by relay id.
func (r *Registry) DeviceReports(ctx context.Context) ([]DeviceReport, error) {
	s := r.s
	var out []DeviceReport
	err := s.view(ctx, func(t *tx) error {
		out = nil
		return t.reports().ForEach(func(k, v []byte) error {
			if len(k) != idLen {
				return nil // a report whose parts are arriving
			}
			r, _, _, err := decodeReport(k, v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// deviceReports verifies that every device report, complete or arriving,
// decodes and lists each device once.
func (ck *checker) deviceReports() error {
	return ck.t.reports().ForEach(func(k, v []byte) error {
		if err := ck.tick(); err != nil {
			return err
		}
		if _, _, _, err := decodeReport(k, v); err != nil {
			ck.fail("%v", err)
		}
		return nil
	})
}
