package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// personConditions is the field number of Person.conditions in the engine's
// record state: the stamp of its winning write is when a patient's
// conditions were recorded.
var personConditions = int32((&fieldsyncv1.Person{}).ProtoReflect().Descriptor().Fields().ByName("conditions").Number())

// Indicators computes the indicators of an area of the server from every
// record it holds (so that the visits of a household that moved in count with
// it), as of a day.
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
	if !strings.HasPrefix(prefix, s.cfg.Area) {
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
	set, err := s.indicatorSet(ctx)
	if err != nil {
		return nil, fmt.Errorf("indicators: %w", err)
	}
	r, err := set.Compute(o)
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

// indicatorSet reads every live record of the server's area, and its device
// registry, into an indicator set.
func (s *Server) indicatorSet(ctx context.Context) (*indicators.Set, error) {
	set, err := s.indicatorRecords(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := s.store.Devices(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		set.AddDevice(indicators.Device{ID: d.ID.String(), Name: d.Name, Areas: d.Areas, Enrolled: d.Created, LastSync: d.Activity.LastSync, Revoked: d.Revoked, Relay: d.Relay})
	}
	if err := s.addRelayedDevices(ctx, set); err != nil {
		return nil, err
	}
	return set, nil
}

// conditionsRecorded is when a person's conditions were last written, zero
// for another record.
func conditionsRecorded(r syncengine.Record) time.Time {
	if fieldsyncv1.RecordKind(r.Kind()) != fieldsyncv1.RecordKind_RECORD_KIND_PERSON {
		return time.Time{}
	}
	ws := r.Writes(personConditions)
	if len(ws) == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ws[0].Stamp.WallMS)
}

// indicatorRecords reads every live record of the server's area. The
// snapshot comes in pages, each its own read transaction: when a change
// landed between the first page and the last (a record moved meanwhile could
// be read twice or not at all), it reads them again, up to three times, and
// then takes the last reading as good enough.
func (s *Server) indicatorRecords(ctx context.Context) (*indicators.Set, error) {
	var set *indicators.Set
	for range 3 {
		set = indicators.NewSet()
		var token []byte
		var first, last syncengine.Position
		for n := 0; ; n++ {
			page, err := s.store.Snapshot(ctx, s.cfg.Area, token, 2000)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				first = page.AsOf
			}
			last = page.AsOf
			for _, r := range page.Records {
				if !r.Exists() {
					continue
				}
				rec, err := wire.FromState(r)
				if err != nil {
					continue // a record of a kind or shape this build does not read
				}
				set.Add(rec, conditionsRecorded(r))
			}
			if page.Next == nil {
				break
			}
			token = page.Next
		}
		if first == last {
			break
		}
	}
	return set, nil
}
