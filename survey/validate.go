package survey

import (
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// DefaultFutureTolerance is how far in the future a recorded time may lie
// before validation refuses it: phones' clocks drift.
const DefaultFutureTolerance = 10 * time.Minute

// FieldError is one problem with one field of a record.
type FieldError struct {
	// Path names the field within the record's body message, e.g.
	// "findings[2].absence_reason".
	Path string
	// Reason is the machine-readable reason, as sent on the wire.
	Reason fieldsyncv1.FieldErrorReason
	// Message says what is wrong and what to do, for a person.
	Message string
}

// Error returns the path and the message.
func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// Validate checks a record of any kind against the rules for its kind with the
// default future tolerance and returns every problem found, or nil when the
// record is valid. now is the time against which future dates are judged.
func Validate(rec *fieldsyncv1.Record, now time.Time) []FieldError {
	return DefaultRules().Validate(rec, now)
}

// Validate checks a record of any kind against the rules for its kind and
// returns every problem found, or nil when the record is valid.
func (r Rules) Validate(rec *fieldsyncv1.Record, now time.Time) []FieldError {
	c := &checker{now: now, tolerance: r.FutureTolerance}
	switch b := rec.GetBody().(type) {
	case *fieldsyncv1.Record_Household:
		c.household(b.Household)
	case *fieldsyncv1.Record_Person:
		c.person(b.Person)
	case *fieldsyncv1.Record_Clinic:
		c.clinic(b.Clinic)
	case *fieldsyncv1.Record_Worker:
		c.worker(b.Worker)
	case *fieldsyncv1.Record_HouseholdVisit:
		c.householdVisit(b.HouseholdVisit)
	case *fieldsyncv1.Record_ClinicAudit:
		c.clinicAudit(b.ClinicAudit)
	case *fieldsyncv1.Record_FollowUp:
		c.followUp(b.FollowUp)
	case *fieldsyncv1.Record_Problem:
		c.problem(b.Problem)
	case *fieldsyncv1.Record_RiskFlag:
		c.riskFlag(b.RiskFlag)
	default:
		c.add("body", fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_REQUIRED,
			"the record has no body: set exactly one record kind")
	}
	return c.errs
}

// checker collects the field errors of one record.
type checker struct {
	now       time.Time
	tolerance time.Duration
	errs      []FieldError
}

func (c *checker) add(path string, reason fieldsyncv1.FieldErrorReason, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Path: path, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

const (
	reasonRequired   = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_REQUIRED
	reasonMalformed  = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_MALFORMED
	reasonRange      = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_OUT_OF_RANGE
	reasonLevel      = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_WRONG_AREA_LEVEL
	reasonFuture     = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_IN_FUTURE
	reasonEnum       = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_UNKNOWN_ENUM
	reasonConflict   = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_INCONSISTENT
	reasonRule       = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_RULE
	reasonNotAllowed = fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_NOT_ALLOWED
)

// recordID checks the record's own id: a canonical UUIDv7 made where the record
// was created.
func (c *checker) recordID(id string) {
	if id == "" {
		c.add("id", reasonRequired, "the record has no id: create it with a new UUIDv7")
		return
	}
	u, ok := c.uuid("id", id)
	if ok && u.Version() != 7 {
		c.add("id", reasonMalformed, "id %s is a version %d UUID, want version 7", id, u.Version())
	}
}

// ref checks a reference to another record; an empty reference is an error only
// when required.
func (c *checker) ref(path, id string, required bool) {
	if id == "" {
		if required {
			c.add(path, reasonRequired, "%s is required: link the record it refers to", path)
		}
		return
	}
	c.uuid(path, id)
}

func (c *checker) uuid(path, id string) (uuid.UUID, bool) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 || u.String() != id {
		c.add(path, reasonMalformed, "%q is not a UUID in canonical lower-case form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", id)
		return u, false
	}
	return u, true
}

// area checks an area code and, when want is not AreaInvalid, its level.
func (c *checker) area(code string, want AreaLevel) {
	if code == "" {
		c.add("area_code", reasonRequired, "area_code is required: the 12-digit code of the record's %s", want)
		return
	}
	level, err := ParseAreaCode(code)
	if err != nil {
		c.add("area_code", reasonMalformed, "%v", err)
		return
	}
	if want != AreaInvalid && level != want {
		c.add("area_code", reasonLevel, "area code %s is a %s, want a %s code", code, level, want)
	}
}

func (c *checker) text(path, s string, required bool, maxRunes int) {
	switch n := utf8.RuneCountInString(s); {
	case n == 0 && required:
		c.add(path, reasonRequired, "%s is required", path)
	case !utf8.ValidString(s):
		c.add(path, reasonMalformed, "%s is not valid UTF-8 text", path)
	case n > maxRunes:
		c.add(path, reasonRange, "%s has %d characters, at most %d allowed", path, n, maxRunes)
	}
}

// enum checks that an enum value is one this build knows and, when required,
// that it is set.
func (c *checker) enum(path string, e protoreflect.Enum, required bool) {
	n := e.Number()
	switch {
	case n == 0 && required:
		c.add(path, reasonRequired, "%s is required: choose one of the listed values", path)
	case e.Descriptor().Values().ByNumber(n) == nil:
		c.add(path, reasonEnum, "%s has value %d, which this version does not know: update the app or choose a listed value", path, n)
	}
}

// timestamp checks a recorded time: valid and not in the future beyond the
// tolerance. It returns the time and whether it was set and valid.
func (c *checker) timestamp(path string, ts *timestamppb.Timestamp, required bool) (time.Time, bool) {
	if ts == nil {
		if required {
			c.add(path, reasonRequired, "%s is required", path)
		}
		return time.Time{}, false
	}
	if err := ts.CheckValid(); err != nil {
		c.add(path, reasonMalformed, "%s is not a valid time: %v", path, err)
		return time.Time{}, false
	}
	t := ts.AsTime()
	if t.After(c.now.Add(c.tolerance)) {
		c.add(path, reasonFuture, "%s (%s) is in the future: check the phone's clock", path, t.In(ChinaTime).Format(time.DateTime))
		return t, false
	}
	return t, true
}

// date checks a calendar date; future reports whether dates after today are
// allowed. It returns the date and whether it was set and valid.
func (c *checker) date(path string, d *fieldsyncv1.Date, required, future bool) (time.Time, bool) {
	if d == nil {
		if required {
			c.add(path, reasonRequired, "%s is required", path)
		}
		return time.Time{}, false
	}
	t, err := DateTime(d)
	if err != nil {
		c.add(path, reasonMalformed, "%s: %v", path, err)
		return time.Time{}, false
	}
	if !future && t.After(c.now.Add(c.tolerance)) {
		c.add(path, reasonFuture, "%s (%s) is in the future", path, t.Format(time.DateOnly))
		return t, false
	}
	return t, true
}

func (c *checker) intRange(path string, v *int32, lo, hi int64, unit string) {
	if v != nil && (int64(*v) < lo || int64(*v) > hi) {
		c.add(path, reasonRange, "%s is %d %s, want %d to %d", path, *v, unit, lo, hi)
	}
}

func (c *checker) floatRange(path string, v *float64, lo, hi float64, unit string) {
	if v != nil && !(*v >= lo && *v <= hi) { // the negation also catches NaN
		c.add(path, reasonRange, "%s is %g %s, want %g to %g", path, *v, unit, lo, hi)
	}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (c *checker) attachment(path string, a *fieldsyncv1.Attachment) {
	if a == nil {
		return
	}
	if !sha256Hex.MatchString(a.GetSha256()) {
		c.add(path+".sha256", reasonMalformed, "%s.sha256 must be 64 lower-case hex digits", path)
	}
	if a.GetSizeBytes() < 0 {
		c.add(path+".size_bytes", reasonRange, "%s.size_bytes is negative", path)
	}
}

func (c *checker) location(path string, g *fieldsyncv1.GeoPoint) {
	if g == nil {
		return
	}
	lat, lon := g.GetLatitude(), g.GetLongitude()
	c.floatRange(path+".latitude", &lat, -90, 90, "degrees")
	c.floatRange(path+".longitude", &lon, -180, 180, "degrees")
	if g.AccuracyM != nil {
		c.floatRange(path+".accuracy_m", g.AccuracyM, 0, 100000, "m")
	}
}
