package indicators

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// Facts are what the indicators read of the records: per record, a few dozen
// bytes filed under the unit the record counts for (a person's follow-ups and
// visit answers under the person, a household's visits under the household, a
// clinic's audits under the clinic). A unit's own record gives its own fact,
// which says the area it counts in. Every figure of a report is computed
// from the facts of the units of its area, wherever the records lie; so a
// store can keep the facts as its records change (FactsOf the state before
// and after) and compute a report without reading a record.

// The kinds of unit, the first byte of a unit key.
const (
	unitHousehold = 'h'
	unitPerson    = 'p'
	unitClinic    = 'c'
	unitProblem   = 'q'
)

// The kinds of fact, the first byte of a fact key.
const (
	factOwn      = 0 // the unit's own record
	factVisit    = 1 // under a household: a visit of it
	factMember   = 2 // under a household: a person naming it (value empty)
	factFinding  = 3 // under a person: a visit's findings for them
	factFollowUp = 4 // under a person
	factFlag     = 5 // under a person, or a household for a flag naming nobody
	factAudit    = 6 // under a clinic
)

// A Fact is what one record contributes to one unit.
type Fact struct {
	// Unit is the unit's key: its kind and id.
	Unit string
	// Key is the fact's key within the unit: its kind and the record's id.
	// A unit's own fact has an empty record id.
	Key string
	// Value is the fact's encoding.
	Value []byte
	// Area is, for a unit's own fact, the area the unit counts in.
	Area string
}

// Own reports whether f is its unit's own fact.
func (f Fact) Own() bool { return f.Key == string(rune(factOwn)) }

// Member reports whether f names a household's member, and returns the
// person's unit key: a change of the household changes what the member
// counts.
func (f Fact) Member() (string, bool) {
	if len(f.Key) == 0 || f.Key[0] != factMember {
		return "", false
	}
	return string(rune(unitPerson)) + f.Key[1:], true
}

// A KV is a fact's key and value, as a unit holds them.
type KV struct {
	Key   []byte
	Value []byte
}

// A Unit is the facts of one unit, as a Source gives them: its own fact (nil
// when its record is not held) and the others in key order.
type Unit struct {
	Key   []byte
	Own   []byte
	Facts []KV
}

// HouseholdUnit returns the unit key of the household with id.
func HouseholdUnit(id string) string { return unitKey(unitHousehold, id) }

// unitKey is the key of the unit of kind with id.
func unitKey(kind byte, id string) string { return string(rune(kind)) + encID(id) }

// encID encodes an id: a canonical UUID as its 16 bytes, another as its text.
func encID(id string) string {
	if len(id) == 36 {
		if u, err := uuid.Parse(id); err == nil && u.String() == id {
			return "u" + string(u[:])
		}
	}
	return "s" + id
}

// decID is the text of an id encoded by encID.
func decID(b string) string {
	if len(b) == 17 && b[0] == 'u' {
		return uuid.UUID([]byte(b[1:])).String()
	}
	if len(b) > 0 {
		return b[1:]
	}
	return ""
}

// unitID is the id of the unit with key k.
func unitID(k []byte) string {
	if len(k) == 0 {
		return ""
	}
	return decID(string(k[1:]))
}

// factKey is the key of a fact of kind made by record id.
func factKey(kind byte, id string) string { return string(rune(kind)) + encID(id) }

// recordOf is the record id of a fact key.
func recordOf(k []byte) string {
	if len(k) <= 1 {
		return ""
	}
	return decID(string(k[1:]))
}

// FactsOf returns the facts of a record's merged state (deleted records have
// none). For a Person, conditionsRecorded is when its conditions were last
// written (see Set.Add). A record without an id gives none.
func FactsOf(rec *fieldsyncv1.Record, conditionsRecorded time.Time) []Fact {
	switch b := rec.GetBody().(type) {
	case *fieldsyncv1.Record_Person:
		return personFacts(b.Person, conditionsRecorded)
	case *fieldsyncv1.Record_Household:
		return householdFacts(b.Household)
	case *fieldsyncv1.Record_Clinic:
		return clinicFacts(b.Clinic)
	case *fieldsyncv1.Record_Problem:
		return problemFacts(b.Problem)
	case *fieldsyncv1.Record_HouseholdVisit:
		return visitFacts(b.HouseholdVisit)
	case *fieldsyncv1.Record_FollowUp:
		return followUpFacts(b.FollowUp)
	case *fieldsyncv1.Record_RiskFlag:
		return flagFacts(b.RiskFlag)
	case *fieldsyncv1.Record_ClinicAudit:
		return auditFacts(b.ClinicAudit)
	}
	return nil
}

// own is the own fact of the unit of kind with id, in area.
func own(kind byte, id, area string, e *enc) Fact {
	return Fact{Unit: unitKey(kind, id), Key: string(rune(factOwn)), Value: e.b, Area: area}
}

// personFacts are a person's own fact and, under the household, its member fact.
func personFacts(p *fieldsyncv1.Person, conditionsRecorded time.Time) []Fact {
	if p.GetId() == "" {
		return nil
	}
	var e enc
	e.str(p.GetAreaCode())
	e.str(encID(p.GetHouseholdId()))
	e.str(p.GetName())
	e.str(p.GetIdNumber().GetMasked())
	e.flags(p.GetResidency() == fieldsyncv1.Residency_RESIDENCY_DECEASED, p.GetHasHealthRecord(), p.GetHasOnePersonPlan())
	var conds []*fieldsyncv1.Condition
	for _, cd := range p.GetConditions() {
		if cd.GetDisease() != fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_UNSPECIFIED {
			conds = append(conds, cd)
		}
	}
	e.uvarint(uint64(len(conds)))
	for _, cd := range conds {
		e.uvarint(uint64(cd.GetDisease()))
		e.date(cd.GetDiagnosedOn())
		e.flags(cd.GetMajorIllness(), cd.GetSevereIllness())
	}
	signed := p.GetContract().GetSignedOn()
	e.date(signed)
	if signed != nil {
		e.date(survey.AddMonths(signed, ContractTerm))
	}
	e.date(p.GetBirthDate())
	e.date(p.GetLastHealthCheckOn())
	var recorded *fieldsyncv1.Date
	if !conditionsRecorded.IsZero() {
		recorded = survey.Today(conditionsRecorded)
	}
	e.date(recorded)
	out := []Fact{own(unitPerson, p.GetId(), p.GetAreaCode(), &e)}
	if h := p.GetHouseholdId(); h != "" {
		out = append(out, Fact{Unit: unitKey(unitHousehold, h), Key: factKey(factMember, p.GetId())})
	}
	return out
}

// householdFacts are a household's own fact.
func householdFacts(h *fieldsyncv1.Household) []Fact {
	if h.GetId() == "" {
		return nil
	}
	var e enc
	e.str(h.GetAreaCode())
	e.uvarint(uint64(h.GetStatus()))
	e.str(h.GetHeadName())
	return []Fact{own(unitHousehold, h.GetId(), h.GetAreaCode(), &e)}
}

// clinicFacts are a clinic's own fact.
func clinicFacts(c *fieldsyncv1.Clinic) []Fact {
	if c.GetId() == "" {
		return nil
	}
	var e enc
	e.str(c.GetAreaCode())
	e.str(c.GetName())
	return []Fact{own(unitClinic, c.GetId(), c.GetAreaCode(), &e)}
}

// problemFacts are a problem's own fact: a problem is its own unit.
func problemFacts(p *fieldsyncv1.Problem) []Fact {
	if p.GetId() == "" {
		return nil
	}
	var e enc
	e.str(p.GetAreaCode())
	e.str(p.GetItem())
	e.str(p.GetPersonId())
	e.uvarint(uint64(p.GetStatus()))
	e.flags(p.GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL)
	e.date(p.GetDeadline())
	for _, t := range []*timestamppb.Timestamp{p.GetRaisedAt(), p.GetRectifiedAt(), p.GetVerifiedAt(), p.GetReopenedAt()} {
		e.moment(t)
	}
	return []Fact{own(unitProblem, p.GetId(), p.GetAreaCode(), &e)}
}

// visitFacts are a visit's campaign and day under its household, and each
// member's findings under the member.
func visitFacts(v *fieldsyncv1.HouseholdVisit) []Fact {
	if v.GetId() == "" {
		return nil
	}
	var out []Fact
	if h := v.GetHouseholdId(); h != "" {
		var e enc
		e.str(v.GetCampaign())
		e.moment(v.GetStartedAt())
		out = append(out, Fact{Unit: unitKey(unitHousehold, h), Key: factKey(factVisit, v.GetId()), Value: e.b})
	}
	// A visit's findings for a person, in the visit's order (a later
	// finding for the same person overrides an earlier one).
	byPerson := map[string][]*fieldsyncv1.MemberFinding{}
	var order []string
	for _, f := range v.GetFindings() {
		id := f.GetPersonId()
		if id == "" {
			continue
		}
		if byPerson[id] == nil {
			order = append(order, id)
		}
		byPerson[id] = append(byPerson[id], f)
	}
	for _, id := range order {
		var e enc
		e.moment(v.GetStartedAt())
		e.uvarint(uint64(len(byPerson[id])))
		for _, f := range byPerson[id] {
			e.tri(f.ContractServedOnTime)
			e.tri(f.MajorIllnessTreated)
			e.tri(f.MajorIllnessReviewed)
			e.tri(f.SafetyNetApplied)
			e.optInt(f.OutOfPocketFen)
			e.optInt(f.TotalMedicalCostFen)
			for _, q := range []*bool{f.KnowsContractedDoctor, f.KnowsSecondaryHospitalDoctor, f.CanExplainKanbing_120, f.CanExplainFuwu_111} {
				e.tri(q)
			}
			var sat *bool
			switch f.GetSatisfaction() {
			case fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED:
				sat = ptr(true)
			case fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED:
				sat = ptr(false)
			}
			e.tri(sat)
		}
		out = append(out, Fact{Unit: unitKey(unitPerson, id), Key: factKey(factFinding, v.GetId()), Value: e.b})
	}
	return out
}

// followUpFacts are a follow-up's fact under its person.
func followUpFacts(f *fieldsyncv1.FollowUp) []Fact {
	if f.GetId() == "" || f.GetPersonId() == "" {
		return nil
	}
	var e enc
	e.uvarint(uint64(f.GetDisease()))
	m := f.GetMethod()
	e.flags(m != fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE && m != fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_UNSPECIFIED)
	e.moment(f.GetFollowedUpAt())
	// NextDue falls back to the report's day only when the follow-up
	// gives no valid day: nil says so.
	var due *fieldsyncv1.Date
	if d := survey.NextDue(f, &fieldsyncv1.Date{}); d.GetYear() != 0 {
		due = d
	}
	e.date(due)
	return []Fact{{Unit: unitKey(unitPerson, f.GetPersonId()), Key: factKey(factFollowUp, f.GetId()), Value: e.b}}
}

// flagFacts are a flag's fact under its person, or its household when it
// names nobody.
func flagFacts(f *fieldsyncv1.RiskFlag) []Fact {
	if f.GetId() == "" {
		return nil
	}
	unit := unitKey(unitPerson, f.GetPersonId())
	if f.GetPersonId() == "" {
		unit = unitKey(unitHousehold, f.GetHouseholdId())
	}
	var e enc
	e.uvarint(uint64(f.GetStatus()))
	e.moment(f.GetFlaggedAt())
	e.str(f.GetHouseholdId())
	e.str(f.GetAreaCode())
	return []Fact{{Unit: unit, Key: factKey(factFlag, f.GetId()), Value: e.b}}
}

// auditFacts are an audit's fact under its clinic.
func auditFacts(a *fieldsyncv1.ClinicAudit) []Fact {
	if a.GetId() == "" || a.GetClinicId() == "" {
		return nil
	}
	var e enc
	e.moment(a.GetAuditedAt())
	pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return nil
	}
	e.bytes(pb)
	return []Fact{{Unit: unitKey(unitClinic, a.GetClinicId()), Key: factKey(factAudit, a.GetId()), Value: e.b}}
}

// enc appends a fact's fields.
type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.b = append(e.b, b...) }

// flags packs up to eight booleans in a byte.
func (e *enc) flags(bs ...bool) {
	var v byte
	for i, b := range bs {
		if b {
			v |= 1 << i
		}
	}
	e.b = append(e.b, v)
}

// tri is an optional boolean: 0 unset, 1 false, 2 true.
func (e *enc) tri(b *bool) {
	switch {
	case b == nil:
		e.b = append(e.b, 0)
	case *b:
		e.b = append(e.b, 2)
	default:
		e.b = append(e.b, 1)
	}
}

func (e *enc) optInt(v *int64) {
	if v == nil {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.varint(*v)
}

// date is an optional calendar date, packed as year·10⁴ + month·100 + day
// (which orders as CompareDates does for every date in the calendar).
func (e *enc) date(d *fieldsyncv1.Date) {
	if d == nil {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.varint(int64(d.GetYear())*10000 + int64(d.GetMonth())*100 + int64(d.GetDay()))
}

// moment is an optional timestamp: its seconds and nanoseconds, for order,
// and its calendar day in China Standard Time.
func (e *enc) moment(t *timestamppb.Timestamp) {
	if t == nil {
		e.b = append(e.b, 0)
		return
	}
	at := t.AsTime()
	e.b = append(e.b, 1)
	e.varint(at.Unix())
	e.uvarint(uint64(at.Nanosecond()))
	e.date(survey.Today(at))
}

// errShort is a fact that ends early or holds a bad length.
var errShort = errors.New("indicators: fact truncated")

// dec reads a fact's fields; the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errShort
	}
	d.b = nil
}

func (d *dec) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string { return string(d.raw()) }

func (d *dec) flags(bs ...*bool) {
	v := d.byte()
	for i, b := range bs {
		*b = v&(1<<i) != 0
	}
}

// tri is an optional boolean as a fact keeps it.
type tri uint8

const (
	unset tri = iota
	no
	yes
)

// is reports whether t is set and true.
func (t tri) is() bool { return t == yes }

// keep keeps a later answer.
func (t *tri) keep(v tri) {
	if v != unset {
		*t = v
	}
}

func (d *dec) tri() tri {
	switch v := tri(d.byte()); v {
	case no, yes:
		return v
	}
	return unset
}

// optInt is an optional integer.
type optInt struct {
	v  int64
	ok bool
}

func (d *dec) optInt() optInt {
	if d.byte() == 0 {
		return optInt{}
	}
	return optInt{d.varint(), true}
}

func ptr[T any](v T) *T { return &v }

// day is a packed calendar date; ok is false for none.
type day struct {
	v  int64
	ok bool
}

func (d *dec) date() day {
	if d.byte() == 0 {
		return day{}
	}
	return day{d.varint(), true}
}

// moment is a decoded timestamp.
type moment struct {
	sec  int64
	nsec uint64
	day  int64
	ok   bool
}

func (d *dec) moment() moment {
	if d.byte() == 0 {
		return moment{}
	}
	m := moment{sec: d.varint(), nsec: d.uvarint(), ok: true}
	m.day = d.date().v
	return m
}

// compare orders two set moments.
func (m moment) compare(o moment) int {
	switch {
	case m.sec != o.sec:
		if m.sec < o.sec {
			return -1
		}
		return 1
	case m.nsec != o.nsec:
		if m.nsec < o.nsec {
			return -1
		}
		return 1
	}
	return 0
}

// after reports whether m is after o.
func (m moment) after(o moment) bool { return m.compare(o) > 0 }

// pack is d packed as the facts keep dates.
func pack(d *fieldsyncv1.Date) int64 {
	return int64(d.GetYear())*10000 + int64(d.GetMonth())*100 + int64(d.GetDay())
}

// unpack is a packed date as a Date.
func unpack(v int64) *fieldsyncv1.Date {
	return &fieldsyncv1.Date{Year: int32(v / 10000), Month: int32(v / 100 % 100), Day: int32(v % 100)}
}
