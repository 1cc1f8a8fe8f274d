package syncengine_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

func TestScope(t *testing.T) {
	for _, tc := range []struct {
		prefixes []string
		want     []string // normalised; nil for an error
		in, out  []string
		all      bool
	}{
		{prefixes: []string{"532523100", "532523"}, want: []string{"532523"}, in: []string{"532523100201", "532523200101"}, out: []string{"532524100201", "53252"}},
		{prefixes: []string{"532523100201", "532523100202", "532523100201"}, want: []string{"532523100201", "532523100202"},
			in: []string{"532523100201", "532523100202"}, out: []string{"532523100203", "532523100"}},
		{prefixes: []string{"", "532523"}, want: []string{""}, in: []string{"532523100201", "110101001001", ""}, all: true},
		{prefixes: nil, want: []string{}, out: []string{"532523100201", ""}},
		{prefixes: []string{"5325231002011"}},     // 13 digits
		{prefixes: []string{"532523", "53252a"}},  // not digits
		{prefixes: []string{"532523", " 532523"}}, // a space
		{prefixes: []string{"５３２５２３"}},            // full-width digits
	} {
		s, err := syncengine.ParseScope(tc.prefixes)
		if tc.want == nil {
			if !errors.Is(err, syncengine.ErrInvalidPrefix) {
				t.Errorf("ParseScope(%q) = %v, %v; want ErrInvalidPrefix", tc.prefixes, s.Prefixes(), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseScope(%q): %v", tc.prefixes, err)
			continue
		}
		if got := s.Prefixes(); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("ParseScope(%q) = %q, want %q", tc.prefixes, got, tc.want)
		}
		if s.All() != tc.all {
			t.Errorf("ParseScope(%q).All() = %v", tc.prefixes, s.All())
		}
		for _, a := range tc.in {
			if !s.Contains(a) || !syncengine.InAreas(a, tc.prefixes) {
				t.Errorf("%q does not contain %q", tc.prefixes, a)
			}
		}
		for _, a := range tc.out {
			if s.Contains(a) || syncengine.InAreas(a, tc.prefixes) {
				t.Errorf("%q contains %q", tc.prefixes, a)
			}
		}
	}
}

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"532523", "532523100201", true},
		{"532523100201", "532523", true},
		{"532523100", "532523100", true},
		{"532523100", "532523200", false},
		{"532523100201", "532523100202", false},
		{"", "110101", true},
	} {
		if got := syncengine.Overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
