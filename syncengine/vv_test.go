package syncengine_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

var (
	ra = replicaID("a")
	rb = replicaID("b")
	rc = replicaID("c")
)

func vv(pairs ...any) syncengine.VersionVector {
	var dots []syncengine.Dot
	for i := 0; i < len(pairs); i += 2 {
		dots = append(dots, syncengine.Dot{Replica: pairs[i].(syncengine.ReplicaID), Counter: uint64(pairs[i+1].(int))})
	}
	return syncengine.NewVersionVector(dots...)
}

func TestVersionVectorCompare(t *testing.T) {
	tests := []struct {
		name string
		v, w syncengine.VersionVector
		want syncengine.Ordering
	}{
		{"both empty", vv(), vv(), syncengine.Equal},
		{"equal", vv(ra, 2, rb, 1), vv(rb, 1, ra, 2), syncengine.Equal},
		{"before", vv(ra, 1), vv(ra, 2), syncengine.Before},
		{"before missing replica", vv(ra, 1), vv(ra, 1, rb, 1), syncengine.Before},
		{"after", vv(ra, 3, rb, 1), vv(ra, 2), syncengine.After},
		{"concurrent", vv(ra, 2), vv(rb, 1), syncengine.Concurrent},
		{"concurrent crossing", vv(ra, 2, rb, 1), vv(ra, 1, rb, 2), syncengine.Concurrent},
		{"empty before", vv(), vv(rc, 1), syncengine.Before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.Compare(tt.w); got != tt.want {
				t.Errorf("Compare = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVersionVectorMergeContainsAdd(t *testing.T) {
	v := vv(ra, 2, rc, 1)
	w := vv(rb, 3, rc, 4)
	m := v.Merge(w)
	if got, want := m.String(), vv(ra, 2, rb, 3, rc, 4).String(); got != want {
		t.Errorf("Merge = %s, want %s", got, want)
	}
	if !m.Covers(v) || !m.Covers(w) {
		t.Errorf("merge does not cover its inputs")
	}
	for _, tc := range []struct {
		d    syncengine.Dot
		want bool
	}{
		{syncengine.Dot{Replica: ra, Counter: 2}, true},
		{syncengine.Dot{Replica: ra, Counter: 3}, false},
		{syncengine.Dot{Replica: rb, Counter: 1}, true},
		{syncengine.Dot{Replica: ra, Counter: 0}, false},
	} {
		if got := m.Contains(tc.d); got != tc.want {
			t.Errorf("Contains(%v) = %v, want %v", tc.d, got, tc.want)
		}
	}
	if got := v.Add(syncengine.Dot{Replica: rb, Counter: 1}); got.Get(rb) != 1 || v.Get(rb) != 0 {
		t.Errorf("Add changed the receiver or did not add")
	}
}

func TestVersionVectorEncodingRoundTripsAndIsCanonical(t *testing.T) {
	v := vv(rc, 300, ra, 1, rb, 1<<40)
	b, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got syncengine.VersionVector
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Compare(v) != syncengine.Equal {
		t.Errorf("round trip = %v, want %v", got, v)
	}
	b2, _ := got.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Errorf("re-encoding differs")
	}

	bad := map[string][]byte{
		"truncated":       b[:len(b)-1],
		"trailing":        append(bytes.Clone(b), 0),
		"huge count":      {0xff, 0xff, 0xff, 0xff, 0x0f},
		"zero counter":    append(append([]byte{1}, ra[:]...), 0),
		"non-minimal":     append(append([]byte{1}, ra[:]...), 0x81, 0x00),
		"unsorted":        append(append(append(append([]byte{2}, rb[:]...), 1), ra[:]...), 1),
		"duplicate":       append(append(append(append([]byte{2}, ra[:]...), 1), ra[:]...), 2),
		"overlong varint": {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
	}
	for name, in := range bad {
		if err := got.UnmarshalBinary(in); !errors.Is(err, syncengine.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestIDStringRoundTrip(t *testing.T) {
	id := syncengine.ReplicaID{0x01, 0x8f, 0x3a, 0x4b, 0x5c, 0x6d, 0x7e, 0x8f, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07}
	s := id.String()
	if want := "018f3a4b-5c6d-7e8f-90a1-b2c3d4e5f607"; s != want {
		t.Errorf("String = %s, want %s", s, want)
	}
	got, err := syncengine.ParseReplicaID(s)
	if err != nil || got != id {
		t.Errorf("ParseReplicaID = %v, %v; want %v", got, err, id)
	}
	for _, bad := range []string{"", "018f3a4b5c6d7e8f90a1b2c3d4e5f607", "018f3a4b-5c6d-7e8f-90a1-b2c3d4e5f6zz"} {
		if _, err := syncengine.ParseReplicaID(bad); err == nil {
			t.Errorf("ParseReplicaID(%q) succeeded", bad)
		}
	}
}
