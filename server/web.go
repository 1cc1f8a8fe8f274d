package server

import (
	"context"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// IndicatorsReport computes the indicators of an area as AdminService's
// Indicators does, for the server's web page (package web), which reads
// them for a signed-in staff member after checking the area is theirs. Its
// errors wrap ErrBadRequest for a request the RPC would refuse.
func (s *Server) IndicatorsReport(ctx context.Context, req *fieldsyncv1.IndicatorsRequest) (*fieldsyncv1.IndicatorsResponse, error) {
	return admin{s: s}.Indicators(ctx, req)
}

// CountedDevice is a phone that devices_not_synced_3d looks at, as the web
// page's devices page needs it: no name, token or sync times.
type CountedDevice struct {
	// ID is the replica id, as IndicatorItem.id names a listed device.
	ID string
	// Areas are the area-code prefixes the phone serves.
	Areas []string
}

// CountedDevices returns the phones devices_not_synced_3d looks at, synced
// lately or not: the server's own and, at a county, those its townships last
// reported; never a revoked one or a relay (a township server). The web page
// sets them beside the list of devices_not_synced_3d to tell the villages
// that no phone has synced for in three days. The slices are the caller's.
func (s *Server) CountedDevices(ctx context.Context) ([]CountedDevice, error) {
	ds, err := s.registry.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var out []CountedDevice
	for _, d := range ds {
		if !d.Revoked && !d.Relay {
			out = append(out, CountedDevice{ID: d.ID.String(), Areas: d.Areas})
		}
	}
	rs, err := s.relayedReports(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		for _, d := range r.Devices {
			if !d.Revoked && !d.Relay {
				out = append(out, CountedDevice{ID: d.ID.String(), Areas: d.Areas})
			}
		}
	}
	return out, nil
}

// AreaNames returns the names of areas SetAreaNames stored, by 12-digit code
// (a county's or township's padded with zeros), for the web page's
// breadcrumb. The map is the caller's.
func (s *Server) AreaNames(ctx context.Context) (map[string]string, error) {
	return s.areaNames(ctx)
}
