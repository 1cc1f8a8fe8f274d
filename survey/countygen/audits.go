package countygen

import (
	"math"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// checkItem is one yes/no item of the clinic checklist: how often a clinic
// passes it, and how an audit records it.
type checkItem struct {
	pass float64
	set  func(a *fieldsyncv1.ClinicAudit, ok bool)
}

// checklist holds the lasting yes/no items: rooms (四室分开), equipment and
// running conditions.
var checklist = []checkItem{
	{0.93, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.ConsultationRoomSeparate = proto.Bool(ok) }},
	{0.93, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.TreatmentRoomSeparate = proto.Bool(ok) }},
	{0.93, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.PublicHealthRoomSeparate = proto.Bool(ok) }},
	{0.93, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.PharmacySeparate = proto.Bool(ok) }},
	{0.97, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasStethoscope = proto.Bool(ok) }},
	{0.97, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasThermometer = proto.Bool(ok) }},
	{0.97, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasSphygmomanometer = proto.Bool(ok) }},
	{0.97, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasExaminationBed = proto.Bool(ok) }},
	{0.95, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasWater = proto.Bool(ok) }},
	{0.99, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasElectricity = proto.Bool(ok) }},
	{0.85, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasHeating = proto.Bool(ok) }},
	{0.92, func(a *fieldsyncv1.ClinicAudit, ok bool) { a.HasOperatingFunds = proto.Bool(ok) }},
}

// clinicState is what an auditor finds that lasts from one audit to the next.
type clinicState struct {
	area  float64 // floor area in m²
	drugs int     // essential drug kinds in stock, about
	pass  []bool  // checklist items passed
}

// auditClinic audits the clinic twice in the year by township staff (乡级自查),
// in the first half of the year and in the campaign, and in 30 % of villages
// once more by a county inspector (县级复查) after that. Between audits half of
// the failed checklist items are put right.
func (s *villageSurveys) auditClinic() {
	x := s.x
	st := &clinicState{area: math.Round(x.uniform(60, 150)*10) / 10, drugs: x.between(82, 160)}
	if x.chance(0.15) {
		st.area = math.Round(x.uniform(35, 59.5)*10) / 10
	}
	if x.chance(0.12) {
		st.drugs = x.between(50, 79)
	}
	for _, c := range checklist {
		st.pass = append(st.pass, x.chance(c.pass))
	}
	staff := s.v.Township.Staff
	first := x.workTime(x.timeBetween(s.yearStart, s.yearStart.Add(days(180))))
	s.audit(st, pick(x, staff), first)
	second := x.workTime(x.timeBetween(s.campStart, dayOf(s.asOf)))
	s.audit(st, pick(x, staff), second)
	if x.chance(0.3) {
		if lo, hi := dayOf(second).Add(days(1)), dayOf(s.asOf); lo.Before(hi) {
			s.audit(st, pick(x, s.g.County.Inspectors), x.workTime(x.timeBetween(lo, hi)))
		}
	}
}

// audit makes one audit of the clinic at at and raises the problems survey's
// rules find in it.
func (s *villageSurveys) audit(st *clinicState, by *Worker, at time.Time) {
	x := s.x
	a := &fieldsyncv1.ClinicAudit{
		Id:                     x.uuid7(at),
		AreaCode:               s.v.Code,
		ClinicId:               s.v.Clinic.ID,
		AuditorWorkerId:        by.ID,
		AuditedAt:              timestamppb.New(at),
		FloorAreaM2:            proto.Float64(st.area),
		EssentialDrugKinds:     proto.Int32(int32(max(0, st.drugs+x.between(-3, 3)))),
		ExpiredDrugsFound:      proto.Bool(x.chance(0.06)),
		HealthSupplementsFound: proto.Bool(x.chance(0.03)),
		OffListDrugsFound:      proto.Bool(x.chance(0.04)),
		StatedNumbers:          s.stated(),
		Location:               geo(s.v.Clinic.Latitude+x.uniform(-5e-5, 5e-5), s.v.Clinic.Longitude+x.uniform(-5e-5, 5e-5), float64(x.between(5, 20))),
	}
	for i, c := range checklist {
		c.set(a, st.pass[i])
	}
	s.doctorFound(a)
	a.Photos = []*fieldsyncv1.Attachment{photo(a.Id+"/photo/1", "卫生室外景"), photo(a.Id+"/photo/2", "药房")}
	s.audits = append(s.audits, a)
	for _, p := range s.g.rules.ClinicAuditProblems(a, s.v.Numbers().StatedNumbers()) {
		s.track(p)
	}
	for i := range st.pass {
		if !st.pass[i] && x.chance(0.5) {
			st.pass[i] = true
		}
	}
}

// doctorFound records the licensed doctor found at the clinic (97 % of audits
// of a staffed clinic), or the covering arrangement of a vacant post.
func (s *villageSurveys) doctorFound(a *fieldsyncv1.ClinicAudit) {
	if len(s.v.Doctors) == 0 {
		a.LicensedDoctorPresent = proto.Bool(false)
		a.CoveringArrangement = fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_TOWNSHIP_SENT
		if s.v.Cover.Role == fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR {
			a.CoveringArrangement = fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_SHARED_WITH_NEIGHBOUR
		}
		a.CoveringDoctorName = s.v.Cover.Name
		return
	}
	present := s.x.chance(0.97)
	a.LicensedDoctorPresent = proto.Bool(present)
	if present {
		d := pick(s.x, s.v.Doctors)
		a.DoctorWorkerId, a.DoctorLicenceNumber = d.ID, d.Licence
	}
}

// stated returns the doctor's 一口清 numbers: each exact 90 % of the time, off
// by one or two 8 %, not given 2 %.
func (s *villageSurveys) stated() *fieldsyncv1.StatedNumbers {
	n := s.v.Numbers()
	say := func(v int) *int32 {
		switch s.x.weighted([]float64{90, 8, 2}) {
		case 1:
			d := s.x.between(1, 2)
			if s.x.chance(0.5) && v >= d {
				d = -d
			}
			return proto.Int32(int32(v + d))
		case 2:
			return nil
		}
		return proto.Int32(int32(v))
	}
	return &fieldsyncv1.StatedNumbers{
		RegisteredPoorPeople:   say(n.RegisteredPoorPeople),
		SickPeople:             say(n.SickPeople),
		ChronicHandbooksIssued: say(n.ChronicHandbooksIssued),
		OnePersonPlansHeld:     say(n.OnePersonPlansHeld),
		MajorIllnessTreated:    say(n.MajorIllnessTreated),
	}
}
