package indicators

import (
	"errors"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// Device is a device in the server's registry, for devices_not_synced_3d.
type Device struct {
	// ID is its replica id and Name its label, for lists.
	ID, Name string
	// Areas are the area prefixes it serves.
	Areas []string
	// Enrolled and LastSync (zero if it never completed a sync).
	Enrolled, LastSync time.Time
	Revoked, Relay     bool
}

// Options say what report to compute.
type Options struct {
	// Area is the area asked for: a county (6 digits), township (9) or
	// village (12) code, or one padded with zeros to 12 digits.
	Area string
	// Depth is the lowest level of rows (Village when zero).
	Depth Level
	// AsOf is the day (its calendar day in China Standard Time); it may not
	// be after Now's.
	AsOf time.Time
	// Campaign is the campaign visit_coverage counts; "" means the campaign of
	// the latest visit of the area's households by AsOf.
	Campaign string
	// HealthCheckFrom starts health_check_rate's period; zero means 1 January
	// of AsOf's year.
	HealthCheckFrom time.Time
	// Rules are the thresholds in force (clinic floor area, essential
	// medicines, the self-pay share).
	Rules survey.Rules
	// Now is the time of the computation (devices_not_synced_3d).
	Now time.Time
	// List names an indicator whose units Report.Items lists: those not
	// achieving a rate, those a count counts; "" lists nothing.
	List Key
}

// StaleAfter is how long a device may go without a completed sync before
// devices_not_synced_3d counts it.
const StaleAfter = 72 * time.Hour

// ContractTerm is how long a family-doctor contract runs from its signing.
const ContractTerm = 12 // months

// ErrBadArea is returned for an area that is not a county, township or
// village code.
var ErrBadArea = errors.New("not a county, township or village code")

// acc sums the indicators of areas: per area, a value per key, in the
// order of Keys.
type acc map[string][]Value

// keyIndex is each key's place in Keys.
var keyIndex = func() map[Key]int {
	m := map[Key]int{}
	for i, d := range Keys() {
		m[d.Key] = i
	}
	return m
}()

// at returns area's values, made on first use.
func (a acc) at(area string) []Value {
	v := a[area]
	if v == nil {
		v = make([]Value, len(keyIndex))
		a[area] = v
	}
	return v
}

// Item is a unit behind an indicator's number (Options.List): a unit not
// achieving a rate (a person without a contract, a household not visited),
// or one a count counts (a patient overdue, an open problem, a device not
// synced).
type Item struct {
	// Area is the village (or, for a device, the area) the unit counts in.
	Area string
	// Kind is "person", "household", "clinic", "problem" or "device".
	Kind string
	// ID is the unit's record id (a device's replica id).
	ID string
	// Name is the person's name, the head of household, the clinic's name, a
	// problem's item or a device's name; MaskedID a person's masked ID
	// number (never the clear one).
	Name, MaskedID string
	// Detail says why it is listed (a due date, a deadline, a last sync), in
	// English; the fields below say the same for a page to word it.
	Detail string
	// Reason is "due" (a follow-up; Disease, Day), "not_visited"
	// (Campaign), "problem" (Status, Day the deadline), "flag" (Status),
	// "device" (LastSync), "clinic", or "" (a unit not achieving a rate;
	// Disease for standard management).
	Reason   string
	Disease  fieldsyncv1.ChronicDisease
	Day      *fieldsyncv1.Date
	Status   string // a problem's or flag's status, the enum's name
	Campaign string
	LastSync time.Time
}
