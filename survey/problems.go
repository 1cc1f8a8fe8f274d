package survey

import (
	"fmt"
	"math/bits"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Problems are returned with their derived id (ProblemID of the source record,
// item and person), so that raising them again anywhere names the same
// problem. Every problem is open, raised at the survey's time, and due for
// rectification Rules.RectifyDays later.

// statedItem pairs one 一口清 number with its field name.
type statedItem struct {
	field, label string
	value        *int32
}

func statedItems(s *fieldsyncv1.StatedNumbers) []statedItem {
	return []statedItem{
		{"registered_poor_people", "registered poor people (建档立卡人口)", s.RegisteredPoorPeople},
		{"sick_people", "sick people (患病人数)", s.SickPeople},
		{"chronic_handbooks_issued", "chronic handbooks issued (慢病手册)", s.ChronicHandbooksIssued},
		{"one_person_plans_held", "一人一策 held", s.OnePersonPlansHeld},
		{"major_illness_treated", "major-illness patients treated (大病救治)", s.MajorIllnessTreated},
	}
}

// checkItem is one yes/no item of the clinic checklist: ok is the finding, good
// the answer that passes.
type checkItem struct {
	item, what string
	ok         *bool
	good       bool
}

func clinicChecklist(a *fieldsyncv1.ClinicAudit) []checkItem {
	return []checkItem{
		{"clinic.room.consultation", "the consultation room is not separate (四室分开)", a.ConsultationRoomSeparate, true},
		{"clinic.room.treatment", "the treatment room is not separate (四室分开)", a.TreatmentRoomSeparate, true},
		{"clinic.room.public_health", "the public-health room is not separate (四室分开)", a.PublicHealthRoomSeparate, true},
		{"clinic.room.pharmacy", "the pharmacy is not separate (四室分开)", a.PharmacySeparate, true},
		{"clinic.equipment.stethoscope", "no stethoscope", a.HasStethoscope, true},
		{"clinic.equipment.thermometer", "no thermometer", a.HasThermometer, true},
		{"clinic.equipment.sphygmomanometer", "no sphygmomanometer", a.HasSphygmomanometer, true},
		{"clinic.equipment.examination_bed", "no examination bed", a.HasExaminationBed, true},
		{"clinic.drugs.expired", "expired medicines found", a.ExpiredDrugsFound, false},
		{"clinic.drugs.supplements", "health supplements found on sale", a.HealthSupplementsFound, false},
		{"clinic.drugs.off_list", "medicines outside the essential list found", a.OffListDrugsFound, false},
		{"clinic.running.water", "no running water", a.HasWater, true},
		{"clinic.running.electricity", "no electricity", a.HasElectricity, true},
		{"clinic.running.heating", "no heating", a.HasHeating, true},
		{"clinic.running.funds", "no operating funds", a.HasOperatingFunds, true},
	}
}

// ClinicAuditProblems returns the problems a clinic audit produces: each failed
// checklist item; a floor area below MinFloorAreaM2; fewer essential-medicine
// kinds than MinEssentialDrugKinds; no licensed doctor and no named covering
// arrangement; one problem listing the items left unchecked; and, when registry
// is not nil, every 一口清 number the doctor stated differently from the
// registry's (or could not state).
func (r Rules) ClinicAuditProblems(a *fieldsyncv1.ClinicAudit, registry *fieldsyncv1.StatedNumbers) []*fieldsyncv1.Problem {
	p := r.raiser(a.GetAreaCode(), fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, a.GetId(), a.GetAuditedAt())
	var unchecked []string
	for _, c := range clinicChecklist(a) {
		switch {
		case c.ok == nil:
			unchecked = append(unchecked, c.item)
		case *c.ok != c.good:
			p.raise(c.item, "", fieldsyncv1.Severity_SEVERITY_NORMAL, c.what)
		}
	}
	switch area := a.FloorAreaM2; {
	case area == nil:
		unchecked = append(unchecked, "clinic.floor_area")
	case *area < r.MinFloorAreaM2:
		p.raise("clinic.floor_area", "", fieldsyncv1.Severity_SEVERITY_NORMAL,
			fmt.Sprintf("floor area %g m² is below the standard of %g m²", *area, r.MinFloorAreaM2))
	}
	switch kinds := a.EssentialDrugKinds; {
	case kinds == nil:
		unchecked = append(unchecked, "clinic.drugs.essential_kinds")
	case *kinds < r.MinEssentialDrugKinds:
		p.raise("clinic.drugs.essential_kinds", "", fieldsyncv1.Severity_SEVERITY_NORMAL,
			fmt.Sprintf("%d kinds of essential medicines, at least %d required", *kinds, r.MinEssentialDrugKinds))
	}
	r.doctorProblems(p, a, &unchecked)
	if len(unchecked) > 0 {
		p.raise("clinic.incomplete", "", fieldsyncv1.Severity_SEVERITY_NORMAL,
			"audit items not checked (项项核): "+strings.Join(unchecked, ", "))
	}
	if registry != nil {
		stated := a.GetStatedNumbers()
		if stated == nil {
			stated = &fieldsyncv1.StatedNumbers{}
		}
		want := statedItems(registry)
		for i, got := range statedItems(stated) {
			switch w := want[i].value; {
			case w == nil:
			case got.value == nil:
				p.raise("clinic.yikouqing."+got.field, "", fieldsyncv1.Severity_SEVERITY_NORMAL,
					fmt.Sprintf("一口清: the doctor could not state the %s (registry: %d)", got.label, *w))
			case *got.value != *w:
				p.raise("clinic.yikouqing."+got.field, "", fieldsyncv1.Severity_SEVERITY_NORMAL,
					fmt.Sprintf("一口清: the doctor stated %d %s, the registry has %d", *got.value, got.label, *w))
			}
		}
	}
	return p.problems
}

func (r Rules) doctorProblems(p *raiser, a *fieldsyncv1.ClinicAudit, unchecked *[]string) {
	covered := a.GetCoveringArrangement() != fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_UNSPECIFIED
	switch lic := a.LicensedDoctorPresent; {
	case lic == nil:
		*unchecked = append(*unchecked, "clinic.doctor")
	case !*lic && !covered:
		p.raise("clinic.doctor", "", fieldsyncv1.Severity_SEVERITY_NORMAL,
			"no licensed village doctor (合格村医) and no covering arrangement")
	case !*lic && a.GetCoveringDoctorName() == "":
		p.raise("clinic.doctor", "", fieldsyncv1.Severity_SEVERITY_NORMAL,
			"the covering arrangement names no doctor")
	}
}

// HouseholdVisitProblems returns the problems a household visit produces.
// household is the visited household and people maps person ids to the
// registry's records of the members; a nil household counts as registered, and
// members missing from people are judged from the finding alone.
//
// Per member of every household: dissatisfaction, with its reason. Per member of
// a registered household (any status but ORDINARY), to whom the service 111 is
// owed: a missing family-doctor contract or health record without a village
// committee certificate; a contract signed but not served on time; and,
// critical (颠覆性问题), a chronic patient without 一人一策.
func (r Rules) HouseholdVisitProblems(v *fieldsyncv1.HouseholdVisit, household *fieldsyncv1.Household, people map[string]*fieldsyncv1.Person) []*fieldsyncv1.Problem {
	p := r.raiser(v.GetAreaCode(), fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT, v.GetId(), v.GetStartedAt())
	registered := household.GetStatus() != fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY
	for _, f := range v.GetFindings() {
		if f.GetSatisfaction() == fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED {
			p.raise("member.dissatisfied", f.GetPersonId(), fieldsyncv1.Severity_SEVERITY_NORMAL,
				memberName(f, people)+": not satisfied with care: "+f.GetDissatisfactionReason())
		}
		if registered {
			p.service111(f, people[f.GetPersonId()], memberName(f, people))
		}
	}
	return p.problems
}

// memberName is the member's name from the registry, or their id.
func memberName(f *fieldsyncv1.MemberFinding, people map[string]*fieldsyncv1.Person) string {
	if person := people[f.GetPersonId()]; person != nil {
		return person.GetName()
	}
	return "member " + f.GetPersonId()
}

// service111 raises the service-111 problems of one member's finding.
func (p *raiser) service111(f *fieldsyncv1.MemberFinding, person *fieldsyncv1.Person, who string) {
	excused := person.GetVillageCertificate() != nil || f.GetAbsenceCertificate() != nil
	if f.ContractSigned != nil && !*f.ContractSigned && !excused {
		p.raise("service111.contract", f.GetPersonId(), fieldsyncv1.Severity_SEVERITY_NORMAL,
			who+": no family-doctor contract (签约) and no village committee certificate")
	}
	if f.HealthRecordExists != nil && !*f.HealthRecordExists && !excused {
		p.raise("service111.health_record", f.GetPersonId(), fieldsyncv1.Severity_SEVERITY_NORMAL,
			who+": no health record (健康档案) and no village committee certificate")
	}
	if plan := f.OnePersonPlanPresent; (ChronicPatient(person) && (plan == nil || !*plan)) || (plan != nil && !*plan) {
		p.raise("service111.one_person_plan", f.GetPersonId(), fieldsyncv1.Severity_SEVERITY_CRITICAL,
			who+": chronic patient without 一人一策 (颠覆性问题)")
	}
	if f.GetContractSigned() && f.ContractServedOnTime != nil && !*f.ContractServedOnTime {
		p.raise("contract.not_served", f.GetPersonId(), fieldsyncv1.Severity_SEVERITY_NORMAL,
			who+": contract signed but not served on time (签约未履约)")
	}
}

// ChronicPatient reports whether a person has one of the chronic diseases that
// need a per-person plan (一人一策). A nil person is not one.
func ChronicPatient(p *fieldsyncv1.Person) bool {
	for _, c := range p.GetConditions() {
		if c.GetDisease() != fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_UNSPECIFIED {
			return true
		}
	}
	return false
}

// raiser builds the problems of one survey record.
type raiser struct {
	area     string
	kind     fieldsyncv1.RecordKind
	source   string
	at       *timestamppb.Timestamp
	deadline *fieldsyncv1.Date
	problems []*fieldsyncv1.Problem
}

func (r Rules) raiser(area string, kind fieldsyncv1.RecordKind, source string, at *timestamppb.Timestamp) *raiser {
	var deadline *fieldsyncv1.Date
	if at != nil {
		deadline = Today(at.AsTime().Add(time.Duration(r.RectifyDays) * 24 * time.Hour))
	}
	return &raiser{area: area, kind: kind, source: source, at: at, deadline: deadline}
}

func (p *raiser) raise(item, personID string, sev fieldsyncv1.Severity, what string) {
	p.problems = append(p.problems, &fieldsyncv1.Problem{
		Id:             ProblemID(p.source, item, personID),
		AreaCode:       p.area,
		SourceKind:     p.kind,
		SourceRecordId: p.source,
		Item:           item,
		PersonId:       personID,
		Severity:       sev,
		Description:    what,
		Deadline:       p.deadline,
		Status:         fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN,
		RaisedAt:       p.at,
	})
}

// RiskFlags returns a return-to-poverty flag for every member of a visited
// household whose self-pay share of medical cost (out_of_pocket_fen /
// total_medical_cost_fen) exceeds SelfPayThresholdBP. A share exactly at the
// threshold is not flagged; members without both amounts, or with no cost, are
// not judged. Flags are returned with their derived id (RiskFlagID).
func (r Rules) RiskFlags(v *fieldsyncv1.HouseholdVisit) []*fieldsyncv1.RiskFlag {
	var flags []*fieldsyncv1.RiskFlag
	for _, f := range v.GetFindings() {
		if f.OutOfPocketFen == nil || f.TotalMedicalCostFen == nil || *f.TotalMedicalCostFen <= 0 {
			continue
		}
		oop, total := *f.OutOfPocketFen, *f.TotalMedicalCostFen
		if !shareExceeds(oop, total, r.SelfPayThresholdBP) {
			continue
		}
		flags = append(flags, &fieldsyncv1.RiskFlag{
			Id:                  RiskFlagID(v.GetId(), f.GetPersonId(), fieldsyncv1.RiskReason_RISK_REASON_SELF_PAY_SHARE.String()),
			AreaCode:            v.GetAreaCode(),
			HouseholdId:         v.GetHouseholdId(),
			PersonId:            f.GetPersonId(),
			Reason:              fieldsyncv1.RiskReason_RISK_REASON_SELF_PAY_SHARE,
			OutOfPocketFen:      oop,
			TotalMedicalCostFen: total,
			ThresholdBp:         r.SelfPayThresholdBP,
			SourceRecordId:      v.GetId(),
			FlaggedAt:           v.GetStartedAt(),
			Status:              fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN,
		})
	}
	return flags
}

// shareExceeds reports whether part/total > bp/10000 exactly, without overflow:
// it compares part·10000 with bp·total in 128 bits. Negative amounts never exceed.
func shareExceeds(part, total int64, bp int32) bool {
	if part < 0 || total <= 0 || bp < 0 {
		return false
	}
	lh, ll := bits.Mul64(uint64(part), 10000)
	rh, rl := bits.Mul64(uint64(bp), uint64(total))
	return lh > rh || (lh == rh && ll > rl)
}

// SelfPayShareExceeds reports whether out-of-pocket spending oop is a larger
// share of total medical cost than the threshold (SelfPayThresholdBP), as
// RiskFlags judges it: exactly, in integers.
func (r Rules) SelfPayShareExceeds(oop, total int64) bool {
	return shareExceeds(oop, total, r.SelfPayThresholdBP)
}
