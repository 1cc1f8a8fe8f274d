package survey

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// maskedID is the display form of an ID number: four characters, ten masked,
// the last three digits and the check character.
var maskedID = regexp.MustCompile(`^[0-9]{4}\*{10}[0-9]{3}[0-9X]$`)

func (c *checker) household(h *fieldsyncv1.Household) {
	c.recordID(h.GetId())
	c.area(h.GetAreaCode(), AreaVillage)
	c.ref("head_person_id", h.GetHeadPersonId(), false)
	c.text("head_name", h.GetHeadName(), true, 30)
	c.text("address", h.GetAddress(), false, 200)
	c.enum("status", h.GetStatus(), true)
	c.location("location", h.GetLocation())
	c.intRange("registered_members", h.RegisteredMembers, 1, 50, "people")
	c.text("notes", h.GetNotes(), false, 2000)
}

func (c *checker) person(p *fieldsyncv1.Person) {
	c.recordID(p.GetId())
	c.area(p.GetAreaCode(), AreaVillage)
	c.ref("household_id", p.GetHouseholdId(), true)
	c.text("name", p.GetName(), true, 30)
	switch id := p.GetIdNumber(); {
	case id == nil:
		c.add("id_number", reasonRequired, "id_number is required: capture the ID card number on the phone")
	default:
		if !maskedID.MatchString(id.GetMasked()) {
			c.add("id_number.masked", reasonMalformed, "id_number.masked must look like 5325**********1234; the clear number never leaves the phone")
		}
		if len(id.GetKeyedHash()) != 32 {
			c.add("id_number.keyed_hash", reasonMalformed, "id_number.keyed_hash has %d bytes, want the 32-byte HMAC-SHA256", len(id.GetKeyedHash()))
		}
	}
	c.enum("sex", p.GetSex(), true)
	birth, bornOK := c.date("birth_date", p.GetBirthDate(), true, false)
	c.enum("residency", p.GetResidency(), true)
	for i, cond := range p.GetConditions() {
		path := fmt.Sprintf("conditions[%d]", i)
		c.enum(path+".disease", cond.GetDisease(), true)
		other := cond.GetDisease() == fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_OTHER_LISTED
		switch {
		case other && cond.GetOtherName() == "":
			c.add(path+".other_name", reasonRequired, "%s.other_name is required for a disease outside the four key ones", path)
		case !other && cond.GetOtherName() != "":
			c.add(path+".other_name", reasonConflict, "%s.other_name is set but the disease is not OTHER_LISTED", path)
		}
		c.text(path+".other_name", cond.GetOtherName(), false, 60)
		c.date(path+".diagnosed_on", cond.GetDiagnosedOn(), false, false)
	}
	if k := p.GetContract(); k != nil {
		c.ref("contract.doctor_worker_id", k.GetDoctorWorkerId(), true)
		c.date("contract.signed_on", k.GetSignedOn(), true, false)
		c.attachment("contract.document", k.GetDocument())
	}
	c.attachment("village_certificate", p.GetVillageCertificate())
	if check, ok := c.date("last_health_check_on", p.GetLastHealthCheckOn(), false, false); ok && bornOK && check.Before(birth) {
		c.add("last_health_check_on", reasonConflict, "last_health_check_on (%s) is before the birth date (%s)",
			check.Format(time.DateOnly), birth.Format(time.DateOnly))
	}
}

func (c *checker) clinic(k *fieldsyncv1.Clinic) {
	c.recordID(k.GetId())
	c.area(k.GetAreaCode(), AreaVillage)
	c.text("name", k.GetName(), true, 60)
	c.text("address", k.GetAddress(), false, 200)
	c.location("location", k.GetLocation())
	for i, id := range k.GetDoctorWorkerIds() {
		c.ref(fmt.Sprintf("doctor_worker_ids[%d]", i), id, true)
	}
}

func (c *checker) worker(w *fieldsyncv1.Worker) {
	c.recordID(w.GetId())
	c.area(w.GetAreaCode(), AreaInvalid)
	c.text("name", w.GetName(), true, 30)
	c.enum("role", w.GetRole(), true)
	if w.GetRole() == fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR && w.GetLicenceNumber() == "" {
		c.add("licence_number", reasonRequired, "a village doctor's licence number (乡村医生执业证书) is required")
	}
	c.text("licence_number", w.GetLicenceNumber(), false, 40)
	c.date("licence_expires_on", w.GetLicenceExpiresOn(), false, true)
	c.ref("clinic_id", w.GetClinicId(), false)
	c.timestamp("left_at", w.GetLeftAt(), false)
}

func (c *checker) householdVisit(v *fieldsyncv1.HouseholdVisit) {
	c.recordID(v.GetId())
	c.area(v.GetAreaCode(), AreaVillage)
	c.ref("household_id", v.GetHouseholdId(), true)
	c.ref("visitor_worker_id", v.GetVisitorWorkerId(), true)
	c.text("campaign", v.GetCampaign(), false, 60)
	start, okStart := c.timestamp("started_at", v.GetStartedAt(), true)
	end, okEnd := c.timestamp("ended_at", v.GetEndedAt(), false)
	if okStart && okEnd && end.Before(start) {
		c.add("ended_at", reasonConflict, "ended_at is before started_at")
	}
	c.location("location", v.GetLocation())
	if len(v.GetFindings()) == 0 {
		c.add("findings", reasonRequired, "a visit needs one finding per household member")
	}
	seen := make(map[string]int, len(v.GetFindings()))
	for i, f := range v.GetFindings() {
		path := fmt.Sprintf("findings[%d]", i)
		if j, dup := seen[f.GetPersonId()]; dup && f.GetPersonId() != "" {
			c.add(path+".person_id", reasonConflict, "%s is about the same person as findings[%d]", path, j)
		}
		seen[f.GetPersonId()] = i
		c.memberFinding(path, f)
	}
	c.text("notes", v.GetNotes(), false, 2000)
	for i, a := range v.GetPhotos() {
		c.attachment(fmt.Sprintf("photos[%d]", i), a)
	}
}

func (c *checker) memberFinding(path string, f *fieldsyncv1.MemberFinding) {
	c.ref(path+".person_id", f.GetPersonId(), true)
	c.enum(path+".presence", f.GetPresence(), true)
	c.enum(path+".absence_reason", f.GetAbsenceReason(), false)
	absent := f.GetPresence() == fieldsyncv1.Presence_PRESENCE_ABSENT
	hasReason := f.GetAbsenceReason() != fieldsyncv1.AbsenceReason_ABSENCE_REASON_UNSPECIFIED
	switch {
	case absent && !hasReason:
		c.add(path+".absence_reason", reasonRequired, "%s: an absent member needs the reason for the absence", path)
	case !absent && hasReason:
		c.add(path+".absence_reason", reasonConflict, "%s: absence_reason is set but the member is not absent", path)
	}
	c.attachment(path+".absence_certificate", f.GetAbsenceCertificate())
	c.absenceCertificate(path, f)
	c.enum(path+".satisfaction", f.GetSatisfaction(), false)
	if f.GetSatisfaction() == fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED && f.GetDissatisfactionReason() == "" {
		c.add(path+".dissatisfaction_reason", reasonRequired, "%s: say why the member is not satisfied", path)
	}
	c.text(path+".dissatisfaction_reason", f.GetDissatisfactionReason(), false, 500)
	const maxFen = 100_000_000_00 // 100 million yuan
	oop, total := f.OutOfPocketFen, f.TotalMedicalCostFen
	for _, v := range []struct {
		name string
		v    *int64
	}{{"out_of_pocket_fen", oop}, {"total_medical_cost_fen", total}} {
		if v.v != nil && (*v.v < 0 || *v.v > maxFen) {
			c.add(path+"."+v.name, reasonRange, "%s.%s is %d fen, want 0 to %d", path, v.name, *v.v, int64(maxFen))
		}
	}
	if oop != nil && total != nil && *oop > *total {
		c.add(path+".out_of_pocket_fen", reasonConflict, "%s: out-of-pocket spending exceeds the total medical cost", path)
	}
	c.text(path+".notes", f.GetNotes(), false, 2000)
	c.majorIllness(path, f)
}

// majorIllness checks the major-illness findings: the reason a member is not
// treated (大病未救治原因) is required when major_illness_treated is false and
// refused otherwise.
func (c *checker) majorIllness(path string, f *fieldsyncv1.MemberFinding) {
	untreated := f.MajorIllnessTreated != nil && !*f.MajorIllnessTreated
	hasReason := f.GetMajorIllnessUntreatedReason() != ""
	switch {
	case untreated && !hasReason:
		c.add(path+".major_illness_untreated_reason", reasonRequired, "%s: say why the member's major illness is not treated (大病未救治原因)", path)
	case !untreated && hasReason:
		c.add(path+".major_illness_untreated_reason", reasonConflict, "%s: major_illness_untreated_reason is set but major_illness_treated is not false", path)
	}
	c.text(path+".major_illness_untreated_reason", f.GetMajorIllnessUntreatedReason(), false, 500)
}

func (c *checker) clinicAudit(a *fieldsyncv1.ClinicAudit) {
	c.recordID(a.GetId())
	c.area(a.GetAreaCode(), AreaVillage)
	c.ref("clinic_id", a.GetClinicId(), true)
	c.ref("auditor_worker_id", a.GetAuditorWorkerId(), true)
	c.timestamp("audited_at", a.GetAuditedAt(), true)
	if a.FloorAreaM2 != nil && !(*a.FloorAreaM2 > 0) {
		c.add("floor_area_m2", reasonRange, "floor_area_m2 is %g, want a positive area", *a.FloorAreaM2)
	}
	c.floatRange("floor_area_m2", a.FloorAreaM2, 0, 10000, "m²")
	c.ref("doctor_worker_id", a.GetDoctorWorkerId(), false)
	c.text("doctor_licence_number", a.GetDoctorLicenceNumber(), false, 40)
	c.enum("covering_arrangement", a.GetCoveringArrangement(), false)
	if a.GetCoveringArrangement() != fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_UNSPECIFIED && a.GetCoveringDoctorName() == "" {
		c.add("covering_doctor_name", reasonRequired, "name the covering doctor of the covering arrangement")
	}
	c.intRange("essential_drug_kinds", a.EssentialDrugKinds, 0, 2000, "kinds")
	if s := a.GetStatedNumbers(); s != nil {
		for _, n := range statedItems(s) {
			c.intRange("stated_numbers."+n.field, n.value, 0, 100000, "people")
		}
	}
	for i, p := range a.GetPhotos() {
		c.attachment(fmt.Sprintf("photos[%d]", i), p)
	}
	c.location("location", a.GetLocation())
	c.text("notes", a.GetNotes(), false, 2000)
}

func (c *checker) followUp(f *fieldsyncv1.FollowUp) {
	c.recordID(f.GetId())
	c.area(f.GetAreaCode(), AreaVillage)
	c.ref("person_id", f.GetPersonId(), true)
	c.ref("doctor_worker_id", f.GetDoctorWorkerId(), true)
	c.enum("disease", f.GetDisease(), true)
	at, okAt := c.timestamp("followed_up_at", f.GetFollowedUpAt(), true)
	c.enum("method", f.GetMethod(), true)
	c.vitals(f)
	c.enum("adherence", f.GetAdherence(), true)
	c.enum("classification", f.GetClassification(), true)
	if r := f.GetReferral(); r != nil && r.GetToFacility() == "" {
		c.add("referral.to_facility", reasonRequired, "a referral needs the facility the patient is referred to")
	}
	due, okDue := c.date("next_due_on", f.GetNextDueOn(), true, true)
	if okAt && okDue && !due.After(at) {
		c.add("next_due_on", reasonConflict, "next_due_on (%s) is not after the follow-up", due.Format("2006-01-02"))
	}
	c.followUpRules(f)
	c.intRange("mental_risk_level", f.MentalRiskLevel, 0, 5, "")
	c.enum("tb_phase", f.GetTbPhase(), false)
	for i, s := range f.GetSymptoms() {
		c.text(fmt.Sprintf("symptoms[%d]", i), s, true, 200)
	}
	c.text("notes", f.GetNotes(), false, 2000)
}

// vitals checks the measured values against plausible ranges: SBP 60–300 and
// DBP 30–200 mmHg with DBP below SBP, fasting glucose 1.0–40.0 mmol/L.
func (c *checker) vitals(f *fieldsyncv1.FollowUp) {
	c.intRange("systolic_mmhg", f.SystolicMmhg, 60, 300, "mmHg")
	c.intRange("diastolic_mmhg", f.DiastolicMmhg, 30, 200, "mmHg")
	sbp, dbp := f.SystolicMmhg, f.DiastolicMmhg
	switch {
	case (sbp == nil) != (dbp == nil):
		c.add("diastolic_mmhg", reasonConflict, "record both systolic and diastolic pressure, or neither")
	case sbp != nil && *dbp >= *sbp:
		c.add("diastolic_mmhg", reasonConflict, "diastolic pressure %d is not below systolic %d: re-measure", *dbp, *sbp)
	}
	faceToFace := f.GetMethod() != fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_PHONE
	if faceToFace && f.GetDisease() == fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION && sbp == nil {
		c.add("systolic_mmhg", reasonRequired, "a face-to-face hypertension follow-up records the blood pressure")
	}
	c.floatRange("fasting_glucose_mmol_l", f.FastingGlucoseMmolL, 1.0, 40.0, "mmol/L")
	c.intRange("heart_rate_bpm", f.HeartRateBpm, 20, 250, "bpm")
	c.floatRange("weight_kg", f.WeightKg, 1, 300, "kg")
}

func (c *checker) problem(p *fieldsyncv1.Problem) {
	c.area(p.GetAreaCode(), AreaVillage)
	c.enum("source_kind", p.GetSourceKind(), false)
	c.ref("source_record_id", p.GetSourceRecordId(), false)
	c.text("item", p.GetItem(), true, 80)
	c.ref("person_id", p.GetPersonId(), false)
	c.enum("severity", p.GetSeverity(), true)
	c.text("description", p.GetDescription(), true, 1000)
	c.text("measure", p.GetMeasure(), false, 1000)
	c.text("responsible", p.GetResponsible(), false, 60)
	c.date("deadline", p.GetDeadline(), false, true)
	c.enum("status", p.GetStatus(), true)
	c.timestamp("raised_at", p.GetRaisedAt(), true)
	c.problemState(p)
}

func (c *checker) riskFlag(r *fieldsyncv1.RiskFlag) {
	c.derivedID(r.GetId(), RiskFlagID(r.GetSourceRecordId(), r.GetPersonId(), r.GetReason().String()), "survey.RiskFlagID")
	c.area(r.GetAreaCode(), AreaVillage)
	c.ref("household_id", r.GetHouseholdId(), true)
	c.ref("person_id", r.GetPersonId(), false)
	c.enum("reason", r.GetReason(), true)
	if r.GetOutOfPocketFen() < 0 || r.GetTotalMedicalCostFen() < 0 {
		c.add("out_of_pocket_fen", reasonRange, "spending cannot be negative")
	}
	if r.GetOutOfPocketFen() > r.GetTotalMedicalCostFen() {
		c.add("out_of_pocket_fen", reasonConflict, "out-of-pocket spending exceeds the total medical cost")
	}
	if bp := r.GetThresholdBp(); bp < 0 || bp > 10000 {
		c.add("threshold_bp", reasonRange, "threshold_bp is %d, want 0 to 10000 basis points", bp)
	}
	c.ref("source_record_id", r.GetSourceRecordId(), false)
	c.timestamp("flagged_at", r.GetFlaggedAt(), true)
	c.enum("status", r.GetStatus(), true)
}

// absenceCertificate requires the village committee certificate (村委会证明)
// where the rule does: a member absent because unreachable (失联) or working away
// (常年不在县域内) whose finding shows a service-111 measure missing (no
// contract, no health record or no 一人一策) must have it photographed; the
// certificate is what excuses the missing measure.
func (c *checker) absenceCertificate(path string, f *fieldsyncv1.MemberFinding) {
	if f.GetPresence() != fieldsyncv1.Presence_PRESENCE_ABSENT || f.GetAbsenceCertificate() != nil {
		return
	}
	switch f.GetAbsenceReason() {
	case fieldsyncv1.AbsenceReason_ABSENCE_REASON_UNREACHABLE, fieldsyncv1.AbsenceReason_ABSENCE_REASON_WORKING_AWAY:
	default:
		return
	}
	var missing []string
	if f.ContractSigned != nil && !*f.ContractSigned {
		missing = append(missing, "no contract (签约)")
	}
	if f.HealthRecordExists != nil && !*f.HealthRecordExists {
		missing = append(missing, "no health record (健康档案)")
	}
	if f.OnePersonPlanPresent != nil && !*f.OnePersonPlanPresent {
		missing = append(missing, "no 一人一策")
	}
	if len(missing) == 0 {
		return
	}
	c.add(path+".absence_certificate", reasonRequired,
		"%s: the member is absent (%s) with %s: photograph the village committee certificate (村委会证明) that explains it",
		path, f.GetAbsenceReason(), strings.Join(missing, ", "))
}
