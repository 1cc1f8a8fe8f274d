package factstore

import (
	"bytes"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/store/boltstore"
)

// source is an indicators.Source over the buckets in one read transaction.
type source struct {
	units, facts *bbolt.Bucket
	unit         indicators.Unit // reused from unit to unit
}

func (s *source) Villages(prefix string) ([]string, error) {
	if s.facts == nil {
		return nil, nil
	}
	var out []string
	c := s.facts.Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && len(k) >= 12 && bytes.HasPrefix(k, []byte(prefix)); {
		v := k[:12]
		if bytes.Equal(v, nowhere) {
			break
		}
		out = append(out, string(v))
		k, _ = c.Seek(append(bytes.Clone(v), 0xFF))
	}
	return out, nil
}

func (s *source) Village(village string, fn func(indicators.Unit) error) error {
	return s.walk([]byte(village), fn)
}

func (s *source) Orphans(fn func(indicators.Unit) error) error { return s.walk(nowhere, fn) }

// walk calls fn with each unit filed under place.
func (s *source) walk(place []byte, fn func(indicators.Unit) error) error {
	if s.facts == nil {
		return nil
	}
	u := &s.unit
	flush := func() error {
		if u.Key == nil {
			return nil
		}
		err := fn(*u)
		u.Key, u.Own, u.Facts = nil, nil, u.Facts[:0]
		return err
	}
	c := s.facts.Cursor()
	for k, v := c.Seek(place); k != nil && bytes.HasPrefix(k, place); k, v = c.Next() {
		if len(k) < 14 || len(k) < 13+int(k[12]) {
			return fmt.Errorf("factstore: fact key %x: %w", k, boltstore.ErrCorrupt)
		}
		n := int(k[12])
		unit, key := k[13:13+n], k[13+n:]
		if !bytes.Equal(unit, u.Key) {
			if err := flush(); err != nil {
				return err
			}
			u.Key = unit
		}
		if len(key) == 1 && key[0] == 0 {
			u.Own = v
		} else if len(key) > 0 {
			u.Facts = append(u.Facts, indicators.KV{Key: key, Value: v})
		}
	}
	return flush()
}

func (s *source) Own(unit string) ([]byte, error) {
	if s.units == nil || !unitFits(unit) {
		return nil, nil
	}
	place := s.units.Get([]byte(unit)) // nowhere for a unit of no village
	if len(place) != 12 {
		return nil, nil
	}
	return s.facts.Get(factKey(place, unit, ownKey)), nil
}
