// Package indicatorstest computes the indicators from records in memory:
// the reference the server's read model (indicators/factstore) is tested
// against, and what tests of the indicators' definitions compute with.
package indicatorstest

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/indicators/factstore"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Set holds the merged records an indicator report is computed from, as
// facts in memory: those of the area asked for, and the records they name
// wherever they lie (the visits of a household that moved in, the follow-ups
// of its people). Add every record the server holds of the area; deleted
// records are not added.
type Set struct {
	units   map[string]*setUnit
	devices []indicators.Device
	placed  map[string][]indicators.Unit // village ("" for none) → units, in key order; nil when stale
}

type setUnit struct {
	own   []byte
	area  string
	facts map[string][]byte
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{units: map[string]*setUnit{}} }

// Add adds a record's merged state. For a Person, conditionsRecorded is when
// its conditions were last written (the stamp of the winning write): the day
// a patient never followed up and without a diagnosis date is due from.
func (s *Set) Add(rec *fieldsyncv1.Record, conditionsRecorded time.Time) {
	for _, f := range indicators.FactsOf(rec, conditionsRecorded) {
		u := s.units[f.Unit]
		if u == nil {
			u = &setUnit{facts: map[string][]byte{}}
			s.units[f.Unit] = u
		}
		if f.Own() {
			u.own, u.area = f.Value, f.Area
		} else {
			u.facts[f.Key] = f.Value
		}
	}
	s.placed = nil
}

// AddDevice adds a device of the server's registry.
func (s *Set) AddDevice(d indicators.Device) { s.devices = append(s.devices, d) }

func (s *Set) place() {
	if s.placed != nil {
		return
	}
	s.placed = map[string][]indicators.Unit{}
	for k, u := range s.units {
		v := ""
		if u.own != nil {
			v = indicators.Placement(u.area)
		}
		s.placed[v] = append(s.placed[v], s.unit(k))
	}
	for _, us := range s.placed {
		slices.SortFunc(us, func(a, b indicators.Unit) int { return bytes.Compare(a.Key, b.Key) })
	}
}

// Villages implements indicators.Source.
func (s *Set) Villages(prefix string) ([]string, error) {
	s.place()
	var out []string
	for v := range s.placed {
		if v != "" && strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Village implements indicators.Source.
func (s *Set) Village(village string, fn func(indicators.Unit) error) error {
	s.place()
	for _, u := range s.placed[village] {
		if err := fn(u); err != nil {
			return err
		}
	}
	return nil
}

// Orphans implements indicators.Source.
func (s *Set) Orphans(fn func(indicators.Unit) error) error { return s.Village("", fn) }

// Own implements indicators.Source.
func (s *Set) Own(unit string) ([]byte, error) {
	if u := s.units[unit]; u != nil {
		return u.own, nil
	}
	return nil, nil
}

func (s *Set) unit(k string) indicators.Unit {
	u := s.units[k]
	out := indicators.Unit{Key: []byte(k), Own: u.own}
	for fk, v := range u.facts {
		out.Facts = append(out.Facts, indicators.KV{Key: []byte(fk), Value: v})
	}
	slices.SortFunc(out.Facts, func(a, b indicators.KV) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

// Compute computes the report o asks for.
func (s *Set) Compute(o indicators.Options) (indicators.Report, error) {
	return indicators.Compute(s, o, s.devices, nil)
}

// A Snapshotter reads a store's records in pages, as boltstore.Store does.
type Snapshotter interface {
	Snapshot(ctx context.Context, prefix string, token []byte, limit int) (syncengine.SnapshotPage, error)
}

// EachRecord calls fn with every live record st holds, decoded, and its
// state.
func EachRecord(ctx context.Context, st Snapshotter, fn func(*fieldsyncv1.Record, syncengine.Record) error) error {
	var token []byte
	for {
		page, err := st.Snapshot(ctx, "", token, 2000)
		if err != nil {
			return err
		}
		for _, r := range page.Records {
			if !r.Exists() {
				continue
			}
			rec, err := wire.FromState(r)
			if err != nil {
				return err
			}
			if err := fn(rec, r); err != nil {
				return err
			}
		}
		if page.Next == nil {
			return nil
		}
		token = page.Next
	}
}

// FromStore is the set of every live record st holds: what a report
// computed afresh from a server's records reads.
func FromStore(ctx context.Context, st Snapshotter) (*Set, error) {
	s := NewSet()
	err := EachRecord(ctx, st, func(rec *fieldsyncv1.Record, r syncengine.Record) error {
		s.Add(rec, factstore.ConditionsRecorded(r))
		return nil
	})
	return s, err
}
