package survey

import (
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Dates the way people count them: calendar days and months in China Standard
// Time, whatever zone the phone or server runs in.

// AddMonths returns the date n months after d, the way people count months: the
// same day of the month, or the last day of a shorter month ("in 3 months" from
// 30 November is 28 February, or 29 in a leap year, never 2 March).
func AddMonths(d *fieldsyncv1.Date, n int) *fieldsyncv1.Date {
	y, m := int(d.GetYear()), int(d.GetMonth())-1+n
	y += m / 12
	if m %= 12; m < 0 {
		m += 12
		y--
	}
	day := min(int(d.GetDay()), daysIn(y, time.Month(m+1)))
	return &fieldsyncv1.Date{Year: int32(y), Month: int32(m + 1), Day: int32(day)}
}

// AddDays returns the calendar date n days after d ("within 2 weeks" is 14
// calendar days).
func AddDays(d *fieldsyncv1.Date, n int) *fieldsyncv1.Date {
	t := time.Date(int(d.GetYear()), time.Month(d.GetMonth()), int(d.GetDay())+n, 12, 0, 0, 0, time.UTC)
	return &fieldsyncv1.Date{Year: int32(t.Year()), Month: int32(t.Month()), Day: int32(t.Day())}
}

// CompareDates returns -1, 0 or +1 as a is before, equal to or after b.
func CompareDates(a, b *fieldsyncv1.Date) int {
	for _, p := range [][2]int32{{a.GetYear(), b.GetYear()}, {a.GetMonth(), b.GetMonth()}, {a.GetDay(), b.GetDay()}} {
		switch {
		case p[0] < p[1]:
			return -1
		case p[0] > p[1]:
			return 1
		}
	}
	return 0
}

// DaysBetween returns the calendar days from a to b (negative when b is
// earlier).
func DaysBetween(a, b *fieldsyncv1.Date) int {
	ta := time.Date(int(a.GetYear()), time.Month(a.GetMonth()), int(a.GetDay()), 12, 0, 0, 0, time.UTC)
	tb := time.Date(int(b.GetYear()), time.Month(b.GetMonth()), int(b.GetDay()), 12, 0, 0, 0, time.UTC)
	return int(tb.Sub(ta).Hours() / 24)
}

// FormatDate is d as YYYY-MM-DD.
func FormatDate(d *fieldsyncv1.Date) string {
	return time.Date(int(d.GetYear()), time.Month(d.GetMonth()), int(d.GetDay()), 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
