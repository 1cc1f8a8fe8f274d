package survey

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The county sets the configurable thresholds in a small JSON file
// (fieldsyncd serve --rules FILE), with the keys of fieldsync.v1.Rules, each
// optional (an absent key keeps DefaultRules' value):
//
//	{
//	  "self_pay_threshold_bp": 1000,
//	  "min_essential_drug_kinds": 80,
//	  "min_floor_area_m2": 60,
//	  "rectify_days": 30
//	}
//
// The rules travel down in the sync handshake (HelloResponse.rules): a township
// applies its county's and hands them to its phones.

// ParseRules reads a rules file. It returns an error naming the key that is
// unknown or out of range.
func ParseRules(b []byte) (Rules, error) {
	var m fieldsyncv1.Rules
	if err := protojson.Unmarshal(b, &m); err != nil {
		return Rules{}, fmt.Errorf("rules file: %w (keys: self_pay_threshold_bp, min_essential_drug_kinds, min_floor_area_m2, rectify_days)", err)
	}
	if m.GetSource() != "" {
		return Rules{}, errors.New("rules file: source is set by the server, not the file")
	}
	return RulesFromProto(&m)
}

// RulesFromProto returns DefaultRules with the thresholds m sets (a zero value
// keeps the default), or an error naming a threshold out of range. A nil m
// gives DefaultRules.
func RulesFromProto(m *fieldsyncv1.Rules) (Rules, error) {
	r := DefaultRules()
	if n := utf8.RuneCountInString(m.GetSource()); n > 200 {
		return Rules{}, fmt.Errorf("source has %d characters, at most 200", n)
	}
	if v := m.GetSelfPayThresholdBp(); v != 0 {
		if v < 0 || v > 10000 {
			return Rules{}, fmt.Errorf("self_pay_threshold_bp is %d, want 1 to 10000 basis points (1000 = 10 %%)", v)
		}
		r.SelfPayThresholdBP = v
	}
	if v := m.GetMinEssentialDrugKinds(); v != 0 {
		if v < 0 || v > 2000 {
			return Rules{}, fmt.Errorf("min_essential_drug_kinds is %d, want 1 to 2000", v)
		}
		r.MinEssentialDrugKinds = v
	}
	if v := m.GetMinFloorAreaM2(); v != 0 {
		if !(v > 0 && v <= 10000) {
			return Rules{}, fmt.Errorf("min_floor_area_m2 is %g, want more than 0 and at most 10000", v)
		}
		r.MinFloorAreaM2 = v
	}
	if v := m.GetRectifyDays(); v != 0 {
		if v < 0 || v > 366 {
			return Rules{}, fmt.Errorf("rectify_days is %d, want 1 to 366", v)
		}
		r.RectifyDays = int(v)
	}
	return r, nil
}

// Proto returns the configurable thresholds of r as sent in the handshake,
// with source saying where they come from.
func (r Rules) Proto(source string) *fieldsyncv1.Rules {
	return &fieldsyncv1.Rules{
		SelfPayThresholdBp:    r.SelfPayThresholdBP,
		MinEssentialDrugKinds: r.MinEssentialDrugKinds,
		MinFloorAreaM2:        r.MinFloorAreaM2,
		RectifyDays:           int32(r.RectifyDays),
		Source:                source,
	}
}

// String describes r for people, as `fieldsync device status` shows it.
func (r Rules) String() string {
	return fmt.Sprintf("self-pay share > %d.%02d %% flags a risk; clinics: ≥ %d essential medicines, ≥ %g m²; problems rectified within %d days",
		r.SelfPayThresholdBP/100, r.SelfPayThresholdBP%100, r.MinEssentialDrugKinds, r.MinFloorAreaM2, r.RectifyDays)
}
