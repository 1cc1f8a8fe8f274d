package countygen

import (
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// County is the generated registry: the areas, the workers and the people, with
// what the records do not carry (clear ID numbers, relations within a
// household). It belongs to the Generator that built it and must not be
// modified; it is safe for concurrent reads.
type County struct {
	// Code is the county's 12-digit area code, e.g. "532523000000".
	Code string
	// Name is the county's name.
	Name string
	// Townships in code order.
	Townships []*Township
	// Inspectors are the county inspectors (县卫健局 / 包保工作队).
	Inspectors []*Worker
}

// Township is a township (乡镇) and its villages.
type Township struct {
	// Code is the 12-digit township code, village digits 000.
	Code string
	// Name, e.g. "白河乡".
	Name string
	// Villages in code order.
	Villages []*Village
	// Staff are the township health centre's staff (乡镇卫生院).
	Staff []*Worker
}

// Village is a village (行政村) with its clinic, doctors and households.
type Village struct {
	// Index is the village's position in the county, from 0, in code order.
	Index int
	// Code is the 12-digit village code.
	Code string
	// Name, e.g. "新寨村".
	Name string
	// Township is the village's township.
	Township *Township
	// Clinic is the village clinic (村卫生室).
	Clinic *Clinic
	// Doctors are the village doctors practising at the clinic; empty when the
	// post is vacant and Cover serves the village.
	Doctors []*Worker
	// Cover is the worker covering a vacant post (a township staff member or a
	// neighbouring village's doctor); nil when Doctors is not empty.
	Cover *Worker
	// Households of the village; a household's members follow it.
	Households []*Household
	// Latitude and Longitude of the village centre.
	Latitude, Longitude float64
}

// Clinic is a village clinic.
type Clinic struct {
	ID      string
	Name    string
	Address string
	// Latitude and Longitude of the clinic.
	Latitude, Longitude float64
}

// Worker is a village doctor, township staff member or county inspector.
type Worker struct {
	ID string
	// AreaCode is the 12-digit code of the post: the village, or the township or
	// county padded with zeros.
	AreaCode string
	Name     string
	Role     fieldsyncv1.WorkerRole
	// Licence is the village doctor's licence number (乡村医生执业证书); empty
	// for other roles.
	Licence string
	// LicenceExpires is the licence's expiry date; zero for other roles.
	LicenceExpires time.Time
	// ClinicID is the clinic of a village doctor; empty for other roles.
	ClinicID string
}

// Household is a household (户) of the registry.
type Household struct {
	ID       string
	AreaCode string
	// Address within the village, e.g. "三组17号".
	Address string
	Status  fieldsyncv1.HouseholdStatus
	// Members of the household; Members[0] is the head.
	Members []*Person
	// Latitude and Longitude of the house.
	Latitude, Longitude float64
	// Created is when the household was entered in the registry.
	Created time.Time
}

// Registered reports whether the household is in the poverty registry (any
// status but ordinary), whose people are owed the "service 111".
func (h *Household) Registered() bool {
	return h.Status != fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY
}

// Relation is a member's relation to the head of the household.
type Relation int

// The relations a household is built from.
const (
	RelationHead       Relation = iota // 户主
	RelationSpouse                     // 配偶
	RelationChild                      // 子女
	RelationChildInLaw                 // 儿媳 / 女婿
	RelationGrandchild                 // 孙子女
	RelationParent                     // 父母
)

// Person is a person (人) of the registry.
type Person struct {
	ID          string
	HouseholdID string
	AreaCode    string
	Name        string
	Relation    Relation
	Sex         fieldsyncv1.Sex
	// BirthDate is midnight CST of the birth date, as in the ID number.
	BirthDate time.Time
	// IDNumber is the clear 18-character ID number. Records carry only its
	// masked and hashed forms; it is here for tests of capture and matching.
	IDNumber  string
	Residency fieldsyncv1.Residency
	Disabled  bool
	// Conditions are chronic diseases and major illnesses, key diseases first.
	Conditions []Condition
	// Contract is set when a family-doctor contract is signed.
	Contract bool
	// ContractDoctorID is the Worker who signed the contract.
	ContractDoctorID string
	// ContractSignedOn is the date the contract was signed.
	ContractSignedOn time.Time
	// HealthRecord, OnePersonPlan and ChronicHandbook are the service-111 items
	// and the handbook; the last two are meaningful for chronic patients only.
	HealthRecord, OnePersonPlan, ChronicHandbook bool
	// Certificate is set when a village committee certificate explains a missing
	// service-111 item.
	Certificate bool
	// LastHealthCheckOn is midnight CST of the day of the person's latest free
	// health check (免费健康体检); zero when none is known.
	LastHealthCheckOn time.Time
	// MajorIllnessTreated, MajorIllnessReviewed and UntreatedReason are what
	// every visit finds for a living person under major-illness treatment:
	// treated this year (集中救治), reviewed by the expert group this year
	// (大病复核), and why not treated (大病未救治原因; empty when treated). They
	// are meaningful only when MajorIllness reports true and the person is alive.
	MajorIllnessTreated, MajorIllnessReviewed bool
	UntreatedReason                           string
	// SafetyNetApplied is what every visit finds for a living person with a
	// severe illness: whether this year's costs went through the whole safety
	// net (兜底). It is meaningful only when SevereIllness reports true and the
	// person is alive.
	SafetyNetApplied bool
	// Created is when the person was entered in the registry.
	Created time.Time
}

// Condition is one chronic disease or major illness of a person.
type Condition struct {
	Disease fieldsyncv1.ChronicDisease
	// OtherName names a disease of the province's list when Disease is
	// OTHER_LISTED.
	OtherName string
	// MajorIllness is set for major illness under special treatment.
	MajorIllness bool
	// SevereIllness is set for a severe illness under the safety net
	// (重病兜底保障).
	SevereIllness bool
	// DiagnosedOn is midnight CST of the diagnosis date.
	DiagnosedOn time.Time
}

// Age returns the person's age in whole years at t.
func (p *Person) Age(t time.Time) int { return ageAt(p.BirthDate, t) }

// Chronic reports whether the person is a chronic patient (any condition), who
// is owed a per-person plan (一人一策).
func (p *Person) Chronic() bool { return len(p.Conditions) > 0 }

// MajorIllness reports whether the person is under major-illness treatment.
func (p *Person) MajorIllness() bool {
	for _, c := range p.Conditions {
		if c.MajorIllness {
			return true
		}
	}
	return false
}

// SevereIllness reports whether the person has a severe illness under the
// safety net.
func (p *Person) SevereIllness() bool {
	for _, c := range p.Conditions {
		if c.SevereIllness {
			return true
		}
	}
	return false
}

// Alive reports whether the person is not deceased.
func (p *Person) Alive() bool {
	return p.Residency != fieldsyncv1.Residency_RESIDENCY_DECEASED
}

// Numbers are a village's numbers as a doctor states them from memory (一口清).
type Numbers struct {
	RegisteredPoorPeople   int // living people of 脱贫户 and 监测户 households
	SickPeople             int // of those, chronic patients
	ChronicHandbooksIssued int // of those, holding a chronic-care handbook
	OnePersonPlansHeld     int // of those, holding a per-person plan
	MajorIllnessTreated    int // of those, under major-illness treatment
}

// Numbers returns the village's 一口清 numbers as the registry gives them.
func (v *Village) Numbers() Numbers {
	var n Numbers
	for _, h := range v.Households {
		if h.Status != fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_REGISTERED_OUT_OF_POVERTY &&
			h.Status != fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_MONITORED {
			continue
		}
		for _, p := range h.Members {
			if !p.Alive() {
				continue
			}
			n.RegisteredPoorPeople++
			if !p.Chronic() {
				continue
			}
			n.SickPeople++
			if p.ChronicHandbook {
				n.ChronicHandbooksIssued++
			}
			if p.OnePersonPlan {
				n.OnePersonPlansHeld++
			}
			if p.MajorIllness() {
				n.MajorIllnessTreated++
			}
		}
	}
	return n
}

// StatedNumbers returns the numbers as a message, every field set: the registry
// side that survey.Rules.ClinicAuditProblems compares an audit's with.
func (n Numbers) StatedNumbers() *fieldsyncv1.StatedNumbers {
	return &fieldsyncv1.StatedNumbers{
		RegisteredPoorPeople:   proto.Int32(int32(n.RegisteredPoorPeople)),
		SickPeople:             proto.Int32(int32(n.SickPeople)),
		ChronicHandbooksIssued: proto.Int32(int32(n.ChronicHandbooksIssued)),
		OnePersonPlansHeld:     proto.Int32(int32(n.OnePersonPlansHeld)),
		MajorIllnessTreated:    proto.Int32(int32(n.MajorIllnessTreated)),
	}
}

// Serving returns the workers who serve the village's people: its doctors, or
// the cover when the post is vacant.
func (v *Village) Serving() []*Worker {
	if len(v.Doctors) > 0 {
		return v.Doctors
	}
	return []*Worker{v.Cover}
}

// Villages returns every village in code order.
func (c *County) Villages() []*Village {
	var vs []*Village
	for _, t := range c.Townships {
		vs = append(vs, t.Villages...)
	}
	return vs
}
