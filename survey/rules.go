package survey

import (
	"fmt"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// ChinaTime is China Standard Time (UTC+8, no daylight saving), the zone in
// which calendar dates of the field work are reckoned.
var ChinaTime = time.FixedZone("CST", 8*60*60)

// Rules holds the thresholds that bureaus set by configuration. The zero value
// is not useful; start from DefaultRules.
type Rules struct {
	// FutureTolerance is how far in the future a recorded time may lie.
	FutureTolerance time.Duration
	// MinEssentialDrugKinds is the fewest kinds of essential medicines a village
	// clinic must stock (基本药物 ≥ 80种).
	MinEssentialDrugKinds int32
	// MinFloorAreaM2 is the province's minimum floor area of a village clinic.
	MinFloorAreaM2 float64
	// SelfPayThresholdBP is the self-pay share of medical cost, in basis points,
	// above which a person is flagged for return-to-poverty monitoring
	// (1000 = 10 %; some provinces use 950 or 500).
	SelfPayThresholdBP int32
	// RectifyDays is how long after it is raised a problem is due for rectification.
	RectifyDays int
}

// DefaultRules returns the thresholds of DOMAIN.md: 80 drug kinds, 60 m², a 10 %
// self-pay share, 30 days to rectify and a 10-minute future tolerance.
func DefaultRules() Rules {
	return Rules{
		FutureTolerance:       DefaultFutureTolerance,
		MinEssentialDrugKinds: 80,
		MinFloorAreaM2:        60,
		SelfPayThresholdBP:    1000,
		RectifyDays:           30,
	}
}

// Today returns the calendar date of t in China Standard Time.
func Today(t time.Time) *fieldsyncv1.Date {
	t = t.In(ChinaTime)
	return &fieldsyncv1.Date{Year: int32(t.Year()), Month: int32(t.Month()), Day: int32(t.Day())}
}

// DateTime returns midnight China Standard Time at the start of d, or an error
// naming what is wrong when d is not a real calendar date.
func DateTime(d *fieldsyncv1.Date) (time.Time, error) {
	y, m, day := int(d.GetYear()), time.Month(d.GetMonth()), int(d.GetDay())
	t := time.Date(y, m, day, 0, 0, 0, 0, ChinaTime)
	if y < 1900 || y > 2200 || t.Year() != y || t.Month() != m || t.Day() != day {
		return time.Time{}, fmt.Errorf("%04d-%02d-%02d is not a calendar date between 1900 and 2200", y, m, day)
	}
	return t, nil
}
