package sqlitestore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// DueReason is why a chronic patient is due for a follow-up. The values are
// ordered from the most to the least pressing; String returns a stable
// machine-readable code.
type DueReason uint8

// Reasons a patient is due.
const (
	// DueUrgentReferral: the last follow-up referred the patient urgently
	// (its referral.urgent).
	DueUrgentReferral DueReason = 1
	// DueUncontrolled: the last follow-up found control unsatisfactory
	// (classification UNCONTROLLED, ADVERSE_REACTION or COMPLICATION), so the
	// next one is due within 2 weeks.
	DueUncontrolled DueReason = 2
	// DueNeverFollowedUp: the patient has no follow-up for the disease; due
	// from the day the condition was diagnosed or recorded.
	DueNeverFollowedUp DueReason = 3
	// DueRoutine: the routine (3-month) follow-up after a satisfactory one.
	DueRoutine DueReason = 4
)

// String returns the reason's code: "urgent_referral", "uncontrolled",
// "never_followed_up" or "routine".
func (r DueReason) String() string {
	switch r {
	case DueUrgentReferral:
		return "urgent_referral"
	case DueUncontrolled:
		return "uncontrolled"
	case DueNeverFollowedUp:
		return "never_followed_up"
	case DueRoutine:
		return "routine"
	}
	return "due_reason(" + strconv.Itoa(int(r)) + ")"
}

// DuePatient is a hypertension or type 2 diabetes patient whose next
// follow-up for one disease is due or overdue on the day asked about.
type DuePatient struct {
	// PersonID is the id of the patient's Person record.
	PersonID string
	// Name is the patient's full name.
	Name string
	// AreaCode is the 12-digit code of the patient's village.
	AreaCode string
	// HouseholdID is the id of the patient's Household.
	HouseholdID string
	// HeadName and Address are the household's head and address, to help find
	// the patient; both are "" when the household is not in the replica.
	HeadName, Address string
	// Disease is CHRONIC_DISEASE_HYPERTENSION or CHRONIC_DISEASE_TYPE2_DIABETES.
	Disease fieldsyncv1.ChronicDisease
	// DueOn is the day the follow-up is due, as midnight China Standard Time:
	// the last follow-up's next_due_on, or for a patient never followed up the
	// condition's diagnosed_on, else the day the person's conditions were
	// recorded.
	DueOn time.Time
	// DaysOverdue is how many days DueOn lies before the day asked about; 0
	// when the follow-up is due that very day.
	DaysOverdue int
	// Reason is why the patient is due.
	Reason DueReason
	// LastFollowUpID is the id of the patient's latest follow-up for Disease
	// (by followed_up_at), "" if there is none.
	LastFollowUpID string
	// LastFollowedUpAt is when that follow-up took place; zero if there is none.
	LastFollowedUpAt time.Time
}

// Overdue reports whether the follow-up is past its due day (逾期).
func (d DuePatient) Overdue() bool { return d.DaysOverdue > 0 }

// dueDiseases are the diseases DuePatients lists, on the national schedule.
var dueDiseases = []fieldsyncv1.ChronicDisease{
	fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION,
	fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_TYPE2_DIABETES,
}

// conditionsField is the field number of Person.conditions in the engine's
// record state.
var conditionsField = int32((&fieldsyncv1.Person{}).ProtoReflect().Descriptor().Fields().ByName("conditions").Number())

// DuePatients returns, for every living person of the areas with
// hypertension or type 2 diabetes (Person.conditions), one row per person and
// disease whose next follow-up is due on or before the calendar day of day in
// China Standard Time: the list of who to see, missing no one. The next
// follow-up is due on the latest follow-up's next_due_on; a patient never
// followed up for the disease is due from the condition's diagnosed_on or,
// without one, from the day the engine write of the person's conditions was
// stamped. Deceased persons are left out. Rows come urgent referrals first,
// then most days overdue first, then by due day, name, person id and disease.
// It reads one consistent snapshot of the replica.
func (s *Store) DuePatients(ctx context.Context, prefixes []string, day time.Time) ([]DuePatient, error) {
	today, err := survey.DateTime(survey.Today(day))
	if err != nil {
		return nil, fmt.Errorf("due patients on %v: %w", day, err)
	}
	var out []DuePatient
	err = s.View(ctx, func(rt syncengine.ReadTx) error {
		t := rt.(*readTx)
		patients, err := t.chronicPatients(ctx, prefixes)
		if err != nil {
			return err
		}
		last, err := t.latestFollowUps(ctx, prefixes)
		if err != nil {
			return err
		}
		for _, p := range patients {
			rows, err := t.duePatientRows(ctx, p, last, today)
			if err != nil {
				return err
			}
			out = append(out, rows...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: due patients: %w", s.path, err)
	}
	slices.SortFunc(out, func(a, b DuePatient) int {
		return cmp.Or(
			-cmpBool(a.Reason == DueUrgentReferral, b.Reason == DueUrgentReferral),
			-cmp.Compare(a.DaysOverdue, b.DaysOverdue),
			a.DueOn.Compare(b.DueOn),
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.PersonID, b.PersonID),
			cmp.Compare(a.Disease, b.Disease),
		)
	})
	return out, nil
}

// chronicPatient is a living chronic patient's read-model row.
type chronicPatient struct {
	row    DuePatient // the person's columns of each of its rows
	person *fieldsyncv1.Person
}

// patientsWhere is the condition selecting the living chronic patients of
// the areas in persons p, and its arguments.
func patientsWhere(prefixes []string) (string, []any) {
	cond, args := areaFilter("p.area_code", prefixes)
	return `p.chronic = 1 AND p.residency != ? AND ` + cond,
		append([]any{fieldsyncv1.Residency_RESIDENCY_DECEASED.String()}, args...)
}

// chronicPatients returns the living chronic patients of the areas with their
// households' head and address.
func (t *readTx) chronicPatients(ctx context.Context, prefixes []string) ([]chronicPatient, error) {
	where, args := patientsWhere(prefixes)
	rows, err := t.query(ctx, `SELECT p.id, p.area_code, p.household_id, p.record, h.id, h.record
		FROM persons p LEFT JOIN households h ON h.id = p.household_id
		WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("query chronic patients: %w", err)
	}
	defer rows.Close()
	var out []chronicPatient
	for rows.Next() {
		var p chronicPatient
		var raw, hraw []byte
		var hid *string
		r := &p.row
		if err := rows.Scan(&r.PersonID, &r.AreaCode, &r.HouseholdID, &raw, &hid, &hraw); err != nil {
			return nil, fmt.Errorf("read chronic patient: %w", err)
		}
		p.person = &fieldsyncv1.Person{}
		if err := t.rowRecord("persons", r.PersonID, raw, p.person); err != nil {
			return nil, err
		}
		r.Name = p.person.GetName()
		if hid != nil {
			h := &fieldsyncv1.Household{}
			if err := t.rowRecord("households", *hid, hraw, h); err != nil {
				return nil, err
			}
			r.HeadName, r.Address = h.GetHeadName(), h.GetAddress()
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query chronic patients: %w", err)
	}
	return out, nil
}

// followUpKey names a person's follow-ups for one disease.
type followUpKey struct {
	person  string
	disease string // the ChronicDisease enum name, as the read model keeps it
}

// latestFollowUps returns the latest follow-up (by followed_up_at, then id)
// for each living chronic patient of the areas and each disease DuePatients
// lists.
func (t *readTx) latestFollowUps(ctx context.Context, prefixes []string) (map[followUpKey]*fieldsyncv1.FollowUp, error) {
	where, args := patientsWhere(prefixes)
	args = append(args, dueDiseases[0].String(), dueDiseases[1].String())
	rows, err := t.query(ctx, `SELECT id, person_id, disease, record FROM (
		SELECT f.id, f.person_id, f.disease, f.record, row_number() OVER (
			PARTITION BY f.person_id, f.disease ORDER BY f.followed_up_at DESC, f.id DESC) AS n
		FROM follow_ups f JOIN persons p ON p.id = f.person_id
		WHERE `+where+` AND f.disease IN (?, ?))
		WHERE n = 1`, args...)
	if err != nil {
		return nil, fmt.Errorf("query latest follow-ups: %w", err)
	}
	defer rows.Close()
	out := make(map[followUpKey]*fieldsyncv1.FollowUp)
	for rows.Next() {
		var k followUpKey
		var id string
		var raw []byte
		if err := rows.Scan(&id, &k.person, &k.disease, &raw); err != nil {
			return nil, fmt.Errorf("read latest follow-up: %w", err)
		}
		f := &fieldsyncv1.FollowUp{}
		if err := t.rowRecord("follow_ups", id, raw, f); err != nil {
			return nil, err
		}
		out[k] = f
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query latest follow-ups: %w", err)
	}
	return out, nil
}

// duePatientRows returns p's rows due on or before today (midnight China
// Standard Time), one per listed disease of its conditions.
func (t *readTx) duePatientRows(ctx context.Context, p chronicPatient, last map[followUpKey]*fieldsyncv1.FollowUp, today time.Time) ([]DuePatient, error) {
	var out []DuePatient
	var recorded time.Time // the day the conditions were written, read once when needed
	for _, disease := range dueDiseases {
		has, diagnosed := false, time.Time{}
		for _, c := range p.person.GetConditions() {
			if c.GetDisease() != disease {
				continue
			}
			has = true
			if d, err := survey.DateTime(c.GetDiagnosedOn()); err == nil && (diagnosed.IsZero() || d.Before(diagnosed)) {
				diagnosed = d
			}
		}
		if !has {
			continue
		}
		row := p.row
		row.Disease = disease
		if f := last[followUpKey{p.row.PersonID, disease.String()}]; f != nil {
			row.LastFollowUpID = f.GetId()
			if f.GetFollowedUpAt() != nil {
				row.LastFollowedUpAt = f.GetFollowedUpAt().AsTime().In(survey.ChinaTime)
			}
			row.DueOn, row.Reason = nextDue(f, today)
		} else {
			row.Reason = DueNeverFollowedUp
			row.DueOn = diagnosed
			if row.DueOn.IsZero() {
				if recorded.IsZero() {
					var err error
					if recorded, err = t.conditionsRecorded(ctx, p.row.PersonID, today); err != nil {
						return nil, err
					}
				}
				row.DueOn = recorded
			}
		}
		if row.DueOn.After(today) {
			continue
		}
		row.DaysOverdue = int(today.Sub(row.DueOn) / (24 * time.Hour)) // both midnight of the fixed zone
		out = append(out, row)
	}
	return out, nil
}

// nextDue returns when the follow-up after f is due and why. It is f's
// next_due_on; a follow-up without a valid one (which validation refuses) is
// due when the national standard says (survey.AssessFollowUp), and failing
// that today, so that no patient drops off the list.
func nextDue(f *fieldsyncv1.FollowUp, today time.Time) (time.Time, DueReason) {
	reason := DueRoutine
	switch f.GetClassification() {
	case fieldsyncv1.Classification_CLASSIFICATION_UNCONTROLLED,
		fieldsyncv1.Classification_CLASSIFICATION_ADVERSE_REACTION,
		fieldsyncv1.Classification_CLASSIFICATION_COMPLICATION:
		reason = DueUncontrolled
	}
	if f.GetReferral().GetUrgent() {
		reason = DueUrgentReferral
	}
	d, err := survey.DateTime(survey.NextDue(f, survey.Today(today)))
	if err != nil {
		return today, reason
	}
	return d, reason
}

// conditionsRecorded returns the calendar day (midnight China Standard Time)
// of the stamp of the winning write of person id's conditions field: when its
// conditions were last recorded. A person whose record has no such write
// (which the read model never shows) counts as recorded today.
func (t *readTx) conditionsRecorded(ctx context.Context, id string, today time.Time) (time.Time, error) {
	rid, err := wire.RecordID(id)
	if err != nil {
		return time.Time{}, fmt.Errorf("person: %w", err)
	}
	r, err := t.Record(ctx, rid)
	if err != nil {
		return time.Time{}, err
	}
	ws := r.Writes(conditionsField)
	if len(ws) == 0 {
		return today, nil
	}
	return survey.DateTime(survey.Today(time.UnixMilli(ws[0].Stamp.WallMS)))
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Managed is how many living patients of a disease the areas have, and how
// many of them are under standard management (规范管理).
type Managed struct {
	Disease  fieldsyncv1.ChronicDisease
	Patients int
	Managed  int
}

// StandardManagement returns, for hypertension and type 2 diabetes, the
// living patients of the areas and those under standard management at at
// (survey.StandardManagement: at least 4 face-to-face follow-ups in the 12
// months ending at at). It reads one consistent snapshot of the replica.
func (s *Store) StandardManagement(ctx context.Context, prefixes []string, at time.Time) ([]Managed, error) {
	out := make([]Managed, len(dueDiseases))
	err := s.View(ctx, func(rt syncengine.ReadTx) error {
		t := rt.(*readTx)
		patients, err := t.chronicPatients(ctx, prefixes)
		if err != nil {
			return err
		}
		byPerson, err := t.followUpsOf(ctx, prefixes)
		if err != nil {
			return err
		}
		for i, disease := range dueDiseases {
			out[i].Disease = disease
			for _, p := range patients {
				if !slices.ContainsFunc(p.person.GetConditions(), func(c *fieldsyncv1.Condition) bool { return c.GetDisease() == disease }) {
					continue
				}
				out[i].Patients++
				if survey.StandardManagement(byPerson[p.row.PersonID], disease, at) {
					out[i].Managed++
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: standard management: %w", s.path, err)
	}
	return out, nil
}

// followUpsOf returns the follow-ups of the living chronic patients of the
// areas, by person.
func (t *readTx) followUpsOf(ctx context.Context, prefixes []string) (map[string][]*fieldsyncv1.FollowUp, error) {
	where, args := patientsWhere(prefixes)
	rows, err := t.query(ctx, `SELECT f.id, f.person_id, f.record FROM follow_ups f JOIN persons p ON p.id = f.person_id WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("query follow-ups: %w", err)
	}
	defer rows.Close()
	out := make(map[string][]*fieldsyncv1.FollowUp)
	for rows.Next() {
		var id, person string
		var raw []byte
		if err := rows.Scan(&id, &person, &raw); err != nil {
			return nil, fmt.Errorf("read follow-up: %w", err)
		}
		f := &fieldsyncv1.FollowUp{}
		if err := t.rowRecord("follow_ups", id, raw, f); err != nil {
			return nil, err
		}
		out[person] = append(out[person], f)
	}
	return out, rows.Err()
}
