package save_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
	"github.com/fieldsync/fieldsync/wire"
)

const village = "532523100201"

func newID() string { return uuid.Must(uuid.NewV7()).String() }

type saver struct {
	t      *testing.T
	st     *memstore.Store
	author save.Author
}

func newSaver(t *testing.T, server bool) *saver {
	st := memstore.New()
	r := syncengine.ReplicaID(uuid.Must(uuid.NewV7()))
	return &saver{t: t, st: st, author: save.Author{
		Clock: syncengine.NewClock(r, 0), Now: time.Now(), Rules: survey.DefaultRules(), Server: server,
	}}
}

func (s *saver) save(rec *fieldsyncv1.Record) (save.Result, error) {
	var res save.Result
	err := s.st.Update(s.t.Context(), func(tx syncengine.Tx) error {
		var err error
		res, err = save.Record(s.t.Context(), tx, s.author, rec)
		return err
	})
	return res, err
}

func (s *saver) mustSave(rec *fieldsyncv1.Record) save.Result {
	s.t.Helper()
	res, err := s.save(rec)
	if err != nil {
		s.t.Fatalf("save: %v", err)
	}
	return res
}

func (s *saver) get(id string) *fieldsyncv1.Record {
	s.t.Helper()
	rid, err := wire.RecordID(id)
	if err != nil {
		s.t.Fatal(err)
	}
	var st syncengine.Record
	if err := s.st.View(s.t.Context(), func(tx syncengine.ReadTx) error {
		st, err = tx.Record(s.t.Context(), rid)
		return err
	}); err != nil {
		s.t.Fatal(err)
	}
	if !st.Exists() {
		return nil
	}
	rec, err := wire.FromState(st)
	if err != nil {
		s.t.Fatal(err)
	}
	return rec
}

func visitRecord(v *fieldsyncv1.HouseholdVisit) *fieldsyncv1.Record {
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}}
}

func problemRecord(p *fieldsyncv1.Problem) *fieldsyncv1.Record {
	return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: p}}
}

// TestRaisedOnceAndKept: a visit's finding raises its problem with its derived
// id in the same save; saving the visit again raises nothing; moving the
// problem on and then saving the visit once more does not reset it; a later
// save that fixes the finding leaves the problem for rectification.
func TestRaisedOnceAndKept(t *testing.T) {
	s := newSaver(t, false)
	person := newID()
	v := &fieldsyncv1.HouseholdVisit{
		Id: newID(), AreaCode: village, HouseholdId: newID(), VisitorWorkerId: newID(),
		StartedAt: timestamppb.New(time.Now().Add(-time.Hour)),
		Findings: []*fieldsyncv1.MemberFinding{{
			PersonId: person, Presence: fieldsyncv1.Presence_PRESENCE_PRESENT,
			Satisfaction: fieldsyncv1.Satisfaction_SATISFACTION_DISSATISFIED, DissatisfactionReason: "随访不及时",
			OutOfPocketFen: proto.Int64(30000), TotalMedicalCostFen: proto.Int64(100000),
		}},
	}
	res := s.mustSave(visitRecord(v))
	if !res.Saved || res.Problems != 1 || res.Flags != 1 || len(res.Changes) != 3 {
		t.Fatalf("first save: %+v, want the visit, 1 problem and 1 flag", res)
	}
	id := survey.ProblemID(v.GetId(), "member.dissatisfied", person)
	p := s.get(id).GetProblem()
	if p.GetStatus() != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN || p.GetSourceRecordId() != v.GetId() {
		t.Fatalf("raised problem: %v", p)
	}
	if flag := s.get(survey.RiskFlagID(v.GetId(), person, fieldsyncv1.RiskReason_RISK_REASON_SELF_PAY_SHARE.String())); flag == nil {
		t.Fatal("no risk flag for a 30 % self-pay share")
	}
	if res := s.mustSave(visitRecord(v)); res.Saved || res.Problems != 0 || len(res.Changes) != 0 {
		t.Errorf("saving the same visit again: %+v, want nothing written", res)
	}
	p.Status, p.Measure, p.RectifiedAt, p.RectifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, "回访", timestamppb.Now(), newID()
	s.mustSave(problemRecord(p))
	v.Notes = "复查"
	if res := s.mustSave(visitRecord(v)); !res.Saved || res.Problems != 0 {
		t.Errorf("editing the visit: %+v, want the visit only", res)
	}
	if got := s.get(id).GetProblem().GetStatus(); got != fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED {
		t.Errorf("after the visit was saved again the problem is %v, want RECTIFIED", got)
	}
	v.Findings[0].Satisfaction, v.Findings[0].DissatisfactionReason = fieldsyncv1.Satisfaction_SATISFACTION_SATISFIED, ""
	s.mustSave(visitRecord(v))
	if s.get(id) == nil {
		t.Error("fixing the finding deleted the problem")
	}
}

// TestFollowUpDerivedBeforeValidation: the save derives the schedule, so a
// follow-up typed laxly is stored strict; a record the rules refuse stores
// nothing.
func TestFollowUpDerivedBeforeValidation(t *testing.T) {
	s := newSaver(t, false)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, survey.ChinaTime)
	s.author.Now = at.Add(time.Hour)
	f := &fieldsyncv1.FollowUp{
		Id: newID(), AreaCode: village, PersonId: newID(), DoctorWorkerId: newID(),
		Disease: fieldsyncv1.ChronicDisease_CHRONIC_DISEASE_HYPERTENSION, FollowedUpAt: timestamppb.New(at),
		Method: fieldsyncv1.FollowUpMethod_FOLLOW_UP_METHOD_CLINIC, SystolicMmhg: proto.Int32(128), DiastolicMmhg: proto.Int32(80),
		Adherence: fieldsyncv1.Adherence_ADHERENCE_REGULAR, Classification: fieldsyncv1.Classification_CLASSIFICATION_CONTROLLED,
		NextDueOn: &fieldsyncv1.Date{Year: 2027, Month: 5, Day: 30},
	}
	s.mustSave(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: f}})
	if got := s.get(f.GetId()).GetFollowUp().GetNextDueOn(); survey.FormatDate(got) != "2027-02-28" {
		t.Errorf("next due %s, want 2027-02-28 (3 months from 30 November)", survey.FormatDate(got))
	}
	bad := proto.Clone(f).(*fieldsyncv1.FollowUp)
	bad.Id, bad.SystolicMmhg = newID(), nil
	var invalid *save.InvalidError
	if _, err := s.save(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_FollowUp{FollowUp: bad}}); !errors.As(err, &invalid) {
		t.Fatalf("save of a follow-up without blood pressure: %v, want an InvalidError", err)
	}
	if s.get(bad.GetId()) != nil {
		t.Error("the refused follow-up was stored")
	}
}

// TestVerification: a phone's save verifies only with a worker who may;
// a server's save may verify with any worker other than who rectified it.
func TestVerification(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server bool
		role   fieldsyncv1.WorkerRole // of the verifier; 0: not in the store
		want   bool
	}{
		{"phone, township staff", false, fieldsyncv1.WorkerRole_WORKER_ROLE_TOWNSHIP_STAFF, true},
		{"phone, county inspector", false, fieldsyncv1.WorkerRole_WORKER_ROLE_COUNTY_INSPECTOR, true},
		{"phone, village doctor", false, fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR, false},
		{"phone, unknown worker", false, 0, false},
		{"server, unknown worker", true, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSaver(t, tc.server)
			verifier := newID()
			if tc.role != 0 {
				w := &fieldsyncv1.Worker{Id: verifier, AreaCode: village, Name: "核查人", Role: tc.role, LicenceNumber: "L-1"}
				s.mustSave(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Worker{Worker: w}})
			}
			source := newID()
			p := &fieldsyncv1.Problem{
				Id: survey.ProblemID(source, "clinic.floor_area", ""), AreaCode: village, SourceRecordId: source,
				SourceKind: fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, Item: "clinic.floor_area",
				Severity: fieldsyncv1.Severity_SEVERITY_NORMAL, Description: "面积不足", Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN,
				RaisedAt: timestamppb.New(time.Now().Add(-time.Hour)),
			}
			s.mustSave(problemRecord(p))
			p.Status, p.Measure, p.RectifiedAt, p.RectifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, "扩建", timestamppb.Now(), newID()
			s.mustSave(problemRecord(p))
			p.Status, p.VerifiedAt, p.VerifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, timestamppb.Now(), verifier
			_, err := s.save(problemRecord(p))
			var invalid *save.InvalidError
			switch {
			case tc.want && err != nil:
				t.Errorf("verify: %v, want allowed", err)
			case !tc.want && (!errors.As(err, &invalid) || invalid.Fields[0].Reason != fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_NOT_ALLOWED):
				t.Errorf("verify: %v, want NOT_ALLOWED", err)
			}
		})
	}
}

// Change ids are UUIDv7s, as the engine documents, and never repeat.
func TestNewChangeID(t *testing.T) {
	seen := map[syncengine.ChangeID]bool{}
	for range 1000 {
		id := save.NewChangeID()
		u := uuid.UUID(id)
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%v: version %d, variant %v; want a UUIDv7", u, u.Version(), u.Variant())
		}
		if seen[id] {
			t.Fatalf("%v made twice", u)
		}
		seen[id] = true
	}
}

// A device saves only in its areas: a record elsewhere, even an invalid one,
// is refused with ErrOutOfScope before anything is written; one of its areas
// saves; and Delete deletes a live record and refuses one there is none of.
func TestAreasAndDelete(t *testing.T) {
	s := newSaver(t, false)
	s.author.Areas = []string{village}
	h := func(area string) *fieldsyncv1.Record {
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Household{Household: &fieldsyncv1.Household{
			Id: newID(), AreaCode: area, HeadName: "王", Status: fieldsyncv1.HouseholdStatus_HOUSEHOLD_STATUS_ORDINARY,
		}}}
	}
	elsewhere := h("532523100202")
	if _, err := s.save(elsewhere); !errors.Is(err, save.ErrOutOfScope) {
		t.Errorf("save in another village: %v, want ErrOutOfScope", err)
	}
	invalid := h("532523100202")
	invalid.GetHousehold().HeadName = ""
	if _, err := s.save(invalid); !errors.Is(err, save.ErrOutOfScope) {
		t.Errorf("save of an invalid record in another village: %v, want ErrOutOfScope first", err)
	}
	if s.get(elsewhere.GetHousehold().GetId()) != nil {
		t.Error("the record of another village was stored")
	}
	mine := h(village)
	s.mustSave(mine)
	id, _, err := wire.Identity(mine)
	if err != nil {
		t.Fatal(err)
	}
	del := func() error {
		return s.st.Update(t.Context(), func(tx syncengine.Tx) error {
			_, err := save.Delete(t.Context(), tx, s.author, id, syncengine.VersionVector{})
			return err
		})
	}
	if err := del(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if s.get(mine.GetHousehold().GetId()) != nil {
		t.Error("the deleted household is still shown")
	}
	if err := del(); !errors.Is(err, save.ErrNoRecord) {
		t.Errorf("Delete again: %v, want ErrNoRecord", err)
	}
}
