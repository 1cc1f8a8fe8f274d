package countygen

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// geo returns a GeoPoint, with an accuracy when accuracy is positive.
func geo(lat, lng, accuracy float64) *fieldsyncv1.GeoPoint {
	p := &fieldsyncv1.GeoPoint{Latitude: lat, Longitude: lng}
	if accuracy > 0 {
		p.AccuracyM = proto.Float64(accuracy)
	}
	return p
}

func workerRecord(w *Worker) *fieldsyncv1.Record {
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Worker{Worker: &fieldsyncv1.Worker{
		Id:               w.ID,
		AreaCode:         w.AreaCode,
		Name:             w.Name,
		Role:             w.Role,
		LicenceNumber:    w.Licence,
		LicenceExpiresOn: protoDate(w.LicenceExpires),
		ClinicId:         w.ClinicID,
	}}}
}

func clinicRecord(v *Village) *fieldsyncv1.Record {
	c := &fieldsyncv1.Clinic{
		Id:       v.Clinic.ID,
		AreaCode: v.Code,
		Name:     v.Clinic.Name,
		Address:  v.Clinic.Address,
		Location: geo(v.Clinic.Latitude, v.Clinic.Longitude, 0),
	}
	for _, w := range v.Doctors {
		c.DoctorWorkerIds = append(c.DoctorWorkerIds, w.ID)
	}
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Clinic{Clinic: c}}
}

func householdRecord(h *Household) *fieldsyncv1.Record {
	head := h.Members[0]
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{
		Id:                h.ID,
		AreaCode:          h.AreaCode,
		HeadPersonId:      head.ID,
		HeadName:          head.Name,
		Address:           h.Address,
		Status:            h.Status,
		Location:          geo(h.Latitude, h.Longitude, 0),
		RegisteredMembers: proto.Int32(int32(len(h.Members))),
	}}}
}

// personRecord returns the record of p, whose ID number it carries masked and
// hashed under key.
func personRecord(p *Person, key []byte) (*fieldsyncv1.Record, error) {
	id, err := survey.CaptureIDNumber(key, p.IDNumber)
	if err != nil {
		return nil, fmt.Errorf("countygen: person %s: %w", p.ID, err)
	}
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Person{Person: personProto(p, id)}}, nil
}

// personProto returns p as a Person message carrying id as its ID number.
func personProto(p *Person, id *fieldsyncv1.IdNumber) *fieldsyncv1.Person {
	rec := &fieldsyncv1.Person{
		Id:              p.ID,
		AreaCode:        p.AreaCode,
		HouseholdId:     p.HouseholdID,
		Name:            p.Name,
		IdNumber:        id,
		Sex:             p.Sex,
		BirthDate:       protoDate(p.BirthDate),
		Residency:       p.Residency,
		Disabled:        proto.Bool(p.Disabled),
		HasHealthRecord: proto.Bool(p.HealthRecord),
	}
	for _, c := range p.Conditions {
		rec.Conditions = append(rec.Conditions, &fieldsyncv1.Condition{
			Disease:       c.Disease,
			OtherName:     c.OtherName,
			MajorIllness:  c.MajorIllness,
			DiagnosedOn:   protoDate(c.DiagnosedOn),
			SevereIllness: c.SevereIllness,
		})
	}
	if p.Contract {
		rec.Contract = &fieldsyncv1.Contract{
			DoctorWorkerId: p.ContractDoctorID,
			SignedOn:       protoDate(p.ContractSignedOn),
			Document:       attachment(p.ID+"/contract", "application/pdf", "家庭医生签约服务协议书"),
		}
	}
	if p.Chronic() {
		rec.HasOnePersonPlan = proto.Bool(p.OnePersonPlan)
		rec.HasChronicHandbook = proto.Bool(p.ChronicHandbook)
	}
	if p.Certificate {
		rec.VillageCertificate = photo(p.ID+"/certificate", "村委会证明")
	}
	rec.LastHealthCheckOn = protoDate(p.LastHealthCheckOn)
	return rec
}
