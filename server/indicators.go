package server

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// Indicators computes the indicators of an area of the server, as of a day,
// from the facts its read model keeps of every record it holds (so that the
// visits of a household that moved in count with it).
func (a admin) Indicators(ctx context.Context, req *fieldsyncv1.IndicatorsRequest) (*fieldsyncv1.IndicatorsResponse, error) {
	s := a.s
	now := s.now()
	o := indicators.Options{Area: req.GetAreaCode(), AsOf: now, Campaign: req.GetCampaign(), Now: now, List: indicators.Key(req.GetListKey())}
	if _, ok := indicators.Lookup(o.List); o.List != "" && !ok {
		return nil, fmt.Errorf("indicators: %w: list_key %q is not an indicator key (see the README's list)", ErrBadRequest, o.List)
	}
	if o.Area == "" {
		o.Area = s.cfg.Area
	}
	prefix, _, err := survey.ParseArea(o.Area)
	if err != nil {
		return nil, fmt.Errorf("indicators: %w: %v", ErrBadRequest, err)
	}
	if !s.serves(prefix) {
		return nil, fmt.Errorf("indicators: %w: area %q is not in the server's area %q", ErrBadRequest, o.Area, s.cfg.Area)
	}
	if d := req.GetDepth(); d != "" {
		l, err := indicators.ParseLevel(d)
		if err != nil {
			return nil, fmt.Errorf("indicators: %w: %v", ErrBadRequest, err)
		}
		o.Depth = l
	}
	if req.AsOf != nil {
		if o.AsOf, err = survey.DateTime(req.GetAsOf()); err != nil {
			return nil, fmt.Errorf("indicators: %w: as_of: %v", ErrBadRequest, err)
		}
	}
	if req.HealthCheckFrom != nil {
		if o.HealthCheckFrom, err = survey.DateTime(req.GetHealthCheckFrom()); err != nil {
			return nil, fmt.Errorf("indicators: %w: health_check_from: %v", ErrBadRequest, err)
		}
	}
	if o.Rules, _, err = s.rules(ctx); err != nil {
		return nil, err
	}
	devices, err := s.indicatorDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("indicators: %w", err)
	}
	r, err := s.facts.Compute(ctx, o, devices)
	if err != nil {
		return nil, fmt.Errorf("indicators: %w: %v", ErrBadRequest, err)
	}
	names, err := s.areaNames(ctx)
	if err != nil {
		return nil, err
	}
	resp := &fieldsyncv1.IndicatorsResponse{
		AsOf: survey.Today(r.AsOf), Campaign: r.Campaign, HealthCheckFrom: survey.Today(r.HealthCheckFrom),
		ComputedAt: timestamppb.New(r.ComputedAt),
	}
	for _, row := range r.Rows {
		pr := &fieldsyncv1.IndicatorRow{AreaCode: row.Area, Level: row.Level.String(), AreaName: names[row.Area]}
		for _, d := range indicators.Keys() {
			v := row.Values[d.Key]
			pr.Values = append(pr.Values, &fieldsyncv1.IndicatorValue{Key: string(d.Key), Numerator: v.Num, Denominator: v.Den, Rate: d.Kind == indicators.Rate})
		}
		resp.Rows = append(resp.Rows, pr)
	}
	for _, it := range r.Items {
		pi := &fieldsyncv1.IndicatorItem{AreaCode: it.Area, Kind: it.Kind, Id: it.ID, Name: it.Name, MaskedId: it.MaskedID, Detail: it.Detail,
			Reason: it.Reason, Day: it.Day, Status: it.Status, Campaign: it.Campaign}
		if it.Disease != fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_UNSPECIFIED {
			pi.Disease = it.Disease.String()
		}
		if !it.LastSync.IsZero() {
			pi.LastSync = timestamppb.New(it.LastSync)
		}
		resp.Items = append(resp.Items, pi)
	}
	return resp, nil
}

// indicatorDevices returns the devices of the server's registry, and those
// its townships reported.
func (s *Server) indicatorDevices(ctx context.Context) ([]indicators.Device, error) {
	ds, err := s.registry.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var out []indicators.Device
	for _, d := range ds {
		out = append(out, indicators.Device{ID: d.ID.String(), Name: d.Name, Areas: d.Areas, Enrolled: d.Created, LastSync: d.Activity.LastSync, Revoked: d.Revoked, Relay: d.Relay})
	}
	relayed, err := s.relayedDevices(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, relayed...), nil
}
