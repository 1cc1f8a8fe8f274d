package survey_test

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// A village of 屏边苗族自治县 (532523), 白河乡 (101), 新寨村 (201), and the
// records a village doctor there would make on 2026-11-20.
const village = "532523101201"

var (
	now       = time.Date(2026, 11, 20, 16, 0, 0, 0, survey.ChinaTime)
	idHashKey = []byte("county 532523 id-hash key, test only")
)

// Ids are UUIDv7 values as a phone makes them.
const (
	householdID = "019a9f3c-1b2e-7c41-8a5e-2f1d0c9b8a71"
	personID    = "019a9f3c-1b2f-7d02-9b6f-3e2a1d0c9b82"
	person2ID   = "019a9f3c-1b30-7e13-a07a-4f3b2e1d0c93"
	clinicID    = "019a9f3c-1b31-7f24-b18b-504c3f2e1da4"
	doctorID    = "019a9f3c-1b32-7035-8c9c-615d403f2eb5"
	recordID    = "019a9f3d-0a10-7146-9dad-726e5140304c"
)

// zhangID is a made-up ID number of the county with a correct GB 11643 check
// character: born 1958-03-14, male (odd sequence 031).
const zhangID = "532523195803140315"

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func mustCapture(clear string) *fieldsyncv1.IdNumber {
	id, err := survey.CaptureIDNumber(idHashKey, clear)
	if err != nil {
		panic(err)
	}
	return id
}

func exampleHousehold() *fieldsyncv1.Household {
	return &fieldsyncv1.Household{
		Id: householdID, AreaCode: village, HeadPersonId: personID, HeadName: "张德明",
		Address: "新寨村三组12号", Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_REGISTERED_OUT_OF_POVERTY,
		Location:          &fieldsyncv1.GeoPoint{Latitude: 22.98, Longitude: 103.69},
		RegisteredMembers: proto.Int32(4),
	}
}

func examplePerson() *fieldsyncv1.Person {
	return &fieldsyncv1.Person{
		Id: personID, AreaCode: village, HouseholdId: householdID, Name: "张德明",
		IdNumber:  mustCapture(zhangID),
		Sex:       fieldsyncv1.Sex_SEX_MALE,
		BirthDate: &fieldsyncv1.Date{Year: 1958, Month: 3, Day: 14},
		Residency: fieldsyncv1.Residency_RESIDENCY_AT_HOME,
		Conditions: []*fieldsyncv1.Condition{
			{Disease: fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION, DiagnosedOn: &fieldsyncv1.Date{Year: 2019, Month: 6, Day: 2}},
		},
		Contract:         &fieldsyncv1.Contract{DoctorWorkerId: doctorID, SignedOn: &fieldsyncv1.Date{Year: 2026, Month: 1, Day: 8}},
		HasHealthRecord:  proto.Bool(true),
		HasOnePersonPlan: proto.Bool(true),
	}
}

func exampleClinic() *fieldsyncv1.Clinic {
	return &fieldsyncv1.Clinic{Id: clinicID, AreaCode: village, Name: "新寨村卫生室", DoctorWorkerIds: []string{doctorID}}
}

func exampleWorker() *fieldsyncv1.Worker {
	return &fieldsyncv1.Worker{
		Id: doctorID, AreaCode: village, Name: "李春兰", Role: fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR,
		LicenceNumber: "云乡医5325230012", ClinicId: clinicID,
	}
}

func exampleVisit() *fieldsyncv1.HouseholdVisit {
	return &fieldsyncv1.HouseholdVisit{
		Id: recordID, AreaCode: village, HouseholdId: householdID, VisitorWorkerId: doctorID,
		Campaign: "2026-回头看", StartedAt: ts(now.Add(-2 * time.Hour)), EndedAt: ts(now.Add(-90 * time.Minute)),
		Findings: []*fieldsyncv1.MemberFinding{
			{
				PersonId: personID, Presence: fieldsyncv1.Presence_PRESENCE_PRESENT,
				ContractSigned: proto.Bool(true), ContractServedOnTime: proto.Bool(true),
				HealthRecordExists: proto.Bool(true), HealthRecordUpToDate: proto.Bool(true),
				OnePersonPlanPresent: proto.Bool(true), ChronicHandbookIssued: proto.Bool(true),
				PolicyMaterialsComplete: proto.Bool(true), KnowsContractedDoctor: proto.Bool(true),
				CanExplainKanbing_120: proto.Bool(true), CanExplainFuwu_111: proto.Bool(false),
				Satisfaction:   fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED,
				OutOfPocketFen: proto.Int64(45000), TotalMedicalCostFen: proto.Int64(600000),
			},
			{
				PersonId: person2ID, Presence: fieldsyncv1.Presence_PRESENCE_ABSENT,
				AbsenceReason:  fieldsyncv1.AbsenceReason_ABSENCE_REASON_WORKING_AWAY,
				ContractSigned: proto.Bool(true), HealthRecordExists: proto.Bool(true),
			},
		},
	}
}

func exampleAudit() *fieldsyncv1.ClinicAudit {
	yes, no := proto.Bool(true), proto.Bool(false)
	return &fieldsyncv1.ClinicAudit{
		Id: recordID, AreaCode: village, ClinicId: clinicID, AuditorWorkerId: doctorID, AuditedAt: ts(now.Add(-time.Hour)),
		ConsultationRoomSeparate: yes, TreatmentRoomSeparate: yes, PublicHealthRoomSeparate: yes, PharmacySeparate: yes,
		FloorAreaM2: proto.Float64(72.5), LicensedDoctorPresent: yes, DoctorWorkerId: doctorID, DoctorLicenceNumber: "云乡医5325230012",
		HasStethoscope: yes, HasThermometer: yes, HasSphygmomanometer: yes, HasExaminationBed: yes,
		EssentialDrugKinds: proto.Int32(86), ExpiredDrugsFound: no, HealthSupplementsFound: no, OffListDrugsFound: no,
		HasWater: yes, HasElectricity: yes, HasHeating: yes, HasOperatingFunds: yes,
		StatedNumbers: &fieldsyncv1.StatedNumbers{
			RegisteredPoorPeople: proto.Int32(312), SickPeople: proto.Int32(58), ChronicHandbooksIssued: proto.Int32(41),
			OnePersonPlansHeld: proto.Int32(41), MajorIllnessTreated: proto.Int32(3),
		},
	}
}

func exampleFollowUp() *fieldsyncv1.FollowUp {
	return &fieldsyncv1.FollowUp{
		Id: recordID, AreaCode: village, PersonId: personID, DoctorWorkerId: doctorID,
		Disease:      fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION,
		FollowedUpAt: ts(now.Add(-3 * time.Hour)), Method: fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_HOME,
		SystolicMmhg: proto.Int32(132), DiastolicMmhg: proto.Int32(84), HeartRateBpm: proto.Int32(76), WeightKg: proto.Float64(61.5),
		Adherence:      fieldsyncv1.Adherence_ADHERENCE_REGULAR,
		Classification: fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED,
		NextDueOn:      &fieldsyncv1.Date{Year: 2027, Month: 2, Day: 20},
	}
}

func exampleProblem() *fieldsyncv1.Problem {
	return &fieldsyncv1.Problem{
		Id: recordID, AreaCode: village, SourceKind: fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, SourceRecordId: recordID,
		Item: "clinic.floor_area", Severity: fieldsyncv1.Severity_SEVERITY_NORMAL, Description: "业务用房面积不足60平方米",
		Measure: "乡镇卫生院协调扩建", Responsible: "王建国", Deadline: &fieldsyncv1.Date{Year: 2026, Month: 12, Day: 20},
		Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, RaisedAt: ts(now.Add(-time.Hour)),
	}
}

func exampleRiskFlag() *fieldsyncv1.RiskFlag {
	return &fieldsyncv1.RiskFlag{
		Id: recordID, AreaCode: village, HouseholdId: householdID, PersonId: personID,
		Reason: fieldsyncv1.RiskReason_RISK_REASON_SELF_PAY_SHARE, OutOfPocketFen: 90000, TotalMedicalCostFen: 600000,
		ThresholdBp: 1000, SourceRecordId: recordID, FlaggedAt: ts(now.Add(-time.Hour)),
		Status: fieldsyncv1.RiskFlagStatus_RISK_FLAG_STATUS_OPEN,
	}
}
