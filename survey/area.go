package survey

import "fmt"

// AreaLevel is the level of a 12-digit statistical division code (统计用区划代码).
type AreaLevel int

// The levels of the division hierarchy that fieldsync uses.
const (
	// AreaInvalid is not a valid 12-digit code.
	AreaInvalid AreaLevel = iota
	// AreaCounty is a county: township and village digits all zero.
	AreaCounty
	// AreaTownship is a township: village digits zero.
	AreaTownship
	// AreaVillage is a village: every part set.
	AreaVillage
)

// String returns the level's name.
func (l AreaLevel) String() string {
	switch l {
	case AreaCounty:
		return "county"
	case AreaTownship:
		return "township"
	case AreaVillage:
		return "village"
	}
	return "invalid"
}

// ParseAreaCode returns the level of a 12-digit area code: 2 digits province,
// 2 city, 2 county, 3 township, 3 village. A code whose province, city or county
// part is zero, or whose village part is set under a zero township part, is
// invalid.
func ParseAreaCode(code string) (AreaLevel, error) {
	if len(code) != 12 {
		return AreaInvalid, fmt.Errorf("area code %q has %d characters, want 12 digits", code, len(code))
	}
	for i := 0; i < 12; i++ {
		if code[i] < '0' || code[i] > '9' {
			return AreaInvalid, fmt.Errorf("area code %q has a non-digit at position %d", code, i+1)
		}
	}
	if code[0:2] == "00" || code[2:4] == "00" || code[4:6] == "00" {
		return AreaInvalid, fmt.Errorf("area code %q has a zero province, city or county part", code)
	}
	township, village := code[6:9] != "000", code[9:12] != "000"
	switch {
	case township && village:
		return AreaVillage, nil
	case township:
		return AreaTownship, nil
	case village:
		return AreaInvalid, fmt.Errorf("area code %q has a village part under a zero township part", code)
	}
	return AreaCounty, nil
}

// AreaPrefix returns the prefix that stands for an area in scope checks: 6
// digits for a county, 9 for a township, 12 for a village.
func AreaPrefix(code string) (string, error) {
	level, err := ParseAreaCode(code)
	switch level {
	case AreaCounty:
		return code[:6], nil
	case AreaTownship:
		return code[:9], nil
	case AreaVillage:
		return code, nil
	}
	return "", err
}

// ParseArea reads an area as people and URLs give it: a county's 6 digits, a
// township's 9, a village's 12, or any of them padded with zeros to 12. It
// returns the area's prefix (AreaPrefix) and level.
func ParseArea(code string) (string, AreaLevel, error) {
	switch len(code) {
	case 6, 9, 12:
	default:
		return "", AreaInvalid, fmt.Errorf("area code %q: want 6, 9 or 12 digits", code)
	}
	padded := code + "000000"[:12-len(code)]
	level, err := ParseAreaCode(padded)
	if err != nil {
		return "", AreaInvalid, err
	}
	if len(code) == 9 && level != AreaTownship {
		return "", AreaInvalid, fmt.Errorf("area code %q: 9 digits name a township, and its part %q is zero", code, code[6:])
	}
	prefix, err := AreaPrefix(padded)
	return prefix, level, err
}

// DivisionPrefix reports whether p is the scope prefix of a county (6
// digits), a township (9) or a village (12), as AreaPrefix gives it: the only
// scopes a device, relay or server is given. What any area prefix is, and
// whether an area lies in a scope, is syncengine's (ValidPrefix, Scope).
func DivisionPrefix(p string) bool {
	prefix, _, err := ParseArea(p)
	return err == nil && prefix == p
}
