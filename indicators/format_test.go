package indicators

import "testing"

func TestPercentAndFraction(t *testing.T) {
	for _, c := range []struct {
		num, den       int64
		percent, fract string
	}{
		{6118, 6666, "91.78", "0.917792"},
		{1379, 1511, "91.26", "0.912641"},
		{147, 159, "92.45", "0.924528"},
		{1, 200, "0.50", "0.005000"},
		{1, 3, "33.33", "0.333333"},
		{2, 3, "66.67", "0.666667"},
		{1, 80000, "0.00", "0.000013"},
		{5, 5, "100.00", "1.000000"},
		{0, 7, "0.00", "0.000000"},
		{1, 0, "", ""},
	} {
		if got := Percent(c.num, c.den); got != c.percent {
			t.Errorf("Percent(%d, %d) = %q, want %q", c.num, c.den, got, c.percent)
		}
		if got := Fraction(c.num, c.den); got != c.fract {
			t.Errorf("Fraction(%d, %d) = %q, want %q", c.num, c.den, got, c.fract)
		}
	}
}
