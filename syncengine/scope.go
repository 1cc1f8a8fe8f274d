package syncengine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Areas and scopes. An area code is AreaLen ASCII digits; an area prefix is
// up to AreaLen of them, and covers the codes that start with it ("" covers
// every area). A scope is the areas under some prefixes: what a device,
// relay or server serves, or what a read covers. This file is the one place
// that says what a prefix is and whether an area lies in a scope; which
// prefixes a device may be given (a county's, township's or village's
// division code) is survey's to say.

// ErrInvalidPrefix is returned for an area prefix that is not up to AreaLen
// ASCII digits.
var ErrInvalidPrefix = errors.New("invalid area prefix")

// ValidPrefix reports whether p can prefix an area code: up to AreaLen ASCII
// digits.
func ValidPrefix(p string) bool {
	return len(p) <= AreaLen && strings.Trim(p, "0123456789") == ""
}

// A Scope is the areas under a set of prefixes, kept sorted with none under
// another. The zero Scope holds no area.
type Scope struct{ prefixes []string }

// ParseScope validates prefixes and returns their scope. It returns an error
// wrapping ErrInvalidPrefix naming the first prefix that is not valid.
func ParseScope(prefixes []string) (Scope, error) {
	ps := slices.Clone(prefixes)
	for _, p := range ps {
		if !ValidPrefix(p) {
			return Scope{}, fmt.Errorf("%w: %q is not up to %d digits", ErrInvalidPrefix, p, AreaLen)
		}
	}
	slices.Sort(ps)
	out := ps[:0]
	for _, p := range ps {
		if len(out) == 0 || !strings.HasPrefix(p, out[len(out)-1]) {
			out = append(out, p)
		}
	}
	return Scope{out}, nil
}

// Prefixes returns the scope's prefixes: sorted, none under another
// ([""] for every area, none for the zero Scope). The caller must not
// change them.
func (s Scope) Prefixes() []string { return s.prefixes }

// All reports whether the scope covers every area.
func (s Scope) All() bool { return len(s.prefixes) == 1 && s.prefixes[0] == "" }

// Contains reports whether area lies in the scope.
func (s Scope) Contains(area string) bool {
	_, ok := s.Covering(area)
	return ok
}

// Covering returns the prefix of the scope that area (an area code, or any
// key that starts with one) starts with.
func (s Scope) Covering(area string) (string, bool) {
	for _, p := range s.prefixes {
		if strings.HasPrefix(area, p) {
			return p, true
		}
	}
	return "", false
}

// Overlap reports whether some area lies under both prefix a and prefix b:
// one of them starts with the other.
func Overlap(a, b string) bool { return strings.HasPrefix(a, b) || strings.HasPrefix(b, a) }

// InAreas reports whether area starts with one of prefixes, as given (not
// validated): Contains for a caller holding the prefixes alone.
func InAreas(area string, prefixes []string) bool {
	return Scope{prefixes}.Contains(area)
}
