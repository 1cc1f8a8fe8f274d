package server_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// TestPushedVerificationNeedsTheStateItVerifies: a device that verifies a
// problem without having seen its latest move (the township rectified it in
// the meantime) is refused at the first server with the reason, even by a
// worker the server knows as township staff and even when its write would
// lose the merge: an old or hostile app cannot slip a verification in as a
// concurrent value.
func TestPushedVerificationNeedsTheStateItVerifies(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	source := newID(t)
	p := &fieldsyncv1.Problem{
		Id: survey.ProblemID(source, "clinic.floor_area", ""), AreaCode: villageA, SourceRecordId: source,
		SourceKind: fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, Item: "clinic.floor_area",
		Severity: fieldsyncv1.Severity_SEVERITY_NORMAL, Description: "面积不足", Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN,
		RaisedAt: timestamppb.New(time.Now().Add(-time.Hour)),
	}
	rec := func(p *fieldsyncv1.Problem) *fieldsyncv1.Record {
		return &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: proto.Clone(p).(*fieldsyncv1.Problem)}}
	}
	d.save(t, rec(p))
	if resp, err := e.sync.Push(d.ctx(t), d.pushRequest(t, 0)); err != nil || !equal(outcomes(resp), []fieldsyncv1.ChangeOutcome{applied}) {
		t.Fatalf("push of the open problem: %v, %v", outcomes(resp), err)
	}
	staff := newID(t)
	if _, err := e.srv.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Worker{Worker: &fieldsyncv1.Worker{
		Id: staff, AreaCode: villageA, Name: "王建国", Role: fieldsyncv1.WorkerRole_WORKER_ROLE_TOWNSHIP_STAFF,
	}}}); err != nil {
		t.Fatal(err)
	}
	// The township rectifies it; the device has not pulled that.
	r := proto.Clone(p).(*fieldsyncv1.Problem)
	r.Status, r.Measure, r.RectifiedAt, r.RectifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_RECTIFIED, "扩建", timestamppb.Now(), newID(t)
	if _, err := e.srv.Save(t.Context(), rec(r)); err != nil {
		t.Fatal(err)
	}
	// The device verifies what it never saw rectified.
	v := proto.Clone(r).(*fieldsyncv1.Problem)
	v.Status, v.VerifiedAt, v.VerifiedByWorkerId = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, timestamppb.Now(), staff
	d.save(t, rec(v))
	resp, err := e.sync.Push(d.ctx(t), d.pushRequest(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{invalid}) {
		t.Fatalf("verification without the move it verifies: %v, want refused", got)
	}
	if fe := resp.GetResults()[0].GetFieldErrors(); len(fe) != 1 || fe[0].GetReason() != fieldsyncv1.FieldErrorReason_FIELD_ERROR_REASON_TRANSITION {
		t.Errorf("field errors %v, want one TRANSITION", fe)
	}
}
