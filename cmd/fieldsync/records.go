package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// kindList names the record kinds the device commands take, for usage texts
// (fieldsync.ParseKind takes these, the enum names and plurals too).
const kindList = "household, person, clinic, worker, household_visit (visit), clinic_audit (audit), follow_up, problem, risk_flag"

// kindNames are the kinds' canonical names, as fieldsync.ParseKind takes them.
var kindNames = map[fieldsyncv1.RecordKind]string{
	fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD:       "household",
	fieldsyncv1.RecordKind_RECORD_KIND_PERSON:          "person",
	fieldsyncv1.RecordKind_RECORD_KIND_CLINIC:          "clinic",
	fieldsyncv1.RecordKind_RECORD_KIND_WORKER:          "worker",
	fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT: "household_visit",
	fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT:    "clinic_audit",
	fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP:       "follow_up",
	fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM:         "problem",
	fieldsyncv1.RecordKind_RECORD_KIND_RISK_FLAG:       "risk_flag",
}

// kindName is the canonical name of kind.
func kindName(kind fieldsyncv1.RecordKind) string {
	if n, ok := kindNames[kind]; ok {
		return n
	}
	return fmt.Sprintf("kind %d", kind)
}

// parseKind reads --kind.
func parseKind(s string) (fieldsyncv1.RecordKind, error) {
	if s == "" {
		return 0, fmt.Errorf("--kind is required: one of %s", kindList)
	}
	k, err := fieldsync.ParseKind(s)
	if err != nil {
		return 0, errors.New("--kind: " + strings.TrimPrefix(err.Error(), "fieldsync: "))
	}
	return k, nil
}

// recordKind returns the kind of rec.
func recordKind(rec *fieldsyncv1.Record) fieldsyncv1.RecordKind {
	return fieldsyncv1.RecordKind(wire.KindOf(rec))
}

// Records are printed with the .proto field names, the names validation
// errors use in their paths; put reads those and the JSON (lowerCamelCase)
// names alike.
var (
	jsonOut = protojson.MarshalOptions{UseProtoNames: true}
	jsonIn  = protojson.UnmarshalOptions{}
)

// marshalBody returns rec's body as compact protojson. protojson varies its
// whitespace on purpose; compacting it makes the output stable.
func marshalBody(rec *fieldsyncv1.Record) (json.RawMessage, error) {
	body := wire.Body(rec)
	if body == nil {
		return nil, errors.New("record has no body")
	}
	return marshalMessage(body)
}

func marshalMessage(m proto.Message) (json.RawMessage, error) {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeJSONArray writes the records' bodies as a JSON array, one record a
// line: the form 'device put' reads, and one a line for grep.
func writeJSONArray(w *bytes.Buffer, recs []*fieldsyncv1.Record) error {
	if len(recs) == 0 {
		w.WriteString("[]\n")
		return nil
	}
	w.WriteString("[\n")
	for i, rec := range recs {
		b, err := marshalBody(rec)
		if err != nil {
			return err
		}
		w.WriteString("  ")
		w.Write(b)
		if i < len(recs)-1 {
			w.WriteByte(',')
		}
		w.WriteByte('\n')
	}
	w.WriteString("]\n")
	return nil
}

// conflictJSON is an open conflict as 'device get' prints it.
type conflictJSON struct {
	Field string `json:"field"`
	// Values are the concurrent values of the field, the one the record
	// shows first; null is a cleared field.
	Values []json.RawMessage `json:"values"`
}

// describeConflicts turns the SDK's conflicts on a record of kind into
// field names and JSON values.
func describeConflicts(kind fieldsyncv1.RecordKind, cs []fieldsync.Conflict) ([]conflictJSON, error) {
	out := make([]conflictJSON, 0, len(cs))
	for _, c := range cs {
		empty, err := wire.NewBody(syncengine.Kind(kind))
		if err != nil {
			return nil, err
		}
		fd := empty.ProtoReflect().Descriptor().Fields().ByNumber(protoreflect.FieldNumber(c.Field))
		x := conflictJSON{Field: fmt.Sprintf("field %d", c.Field)}
		if fd != nil {
			x.Field = string(fd.Name())
		}
		for _, v := range c.Values {
			x.Values = append(x.Values, fieldValueJSON(kind, fd, v))
		}
		out = append(out, x)
	}
	return out, nil
}

// fieldValueJSON renders one field's wire encoding v as the JSON value of the
// field: null when v is empty (the field was cleared), a string describing
// the bytes when the field is unknown to this build or v does not decode.
func fieldValueJSON(kind fieldsyncv1.RecordKind, fd protoreflect.FieldDescriptor, v []byte) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage("null")
	}
	opaque := func() json.RawMessage {
		b, _ := json.Marshal(fmt.Sprintf("(%d bytes this build cannot show)", len(v)))
		return b
	}
	if fd == nil {
		return opaque()
	}
	m, err := wire.NewBody(syncengine.Kind(kind))
	if err != nil || proto.Unmarshal(v, m) != nil {
		return opaque()
	}
	// Only the one field is set; default values are shown so that a zero
	// written explicitly is not mistaken for a missing field.
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return opaque()
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil {
		return opaque()
	}
	val, ok := obj[string(fd.Name())]
	if !ok {
		return opaque()
	}
	var buf bytes.Buffer
	if json.Compact(&buf, val) != nil {
		return opaque()
	}
	return buf.Bytes()
}

// summary is a one-line description of rec for tables.
func summary(rec *fieldsyncv1.Record) string {
	var parts []string
	add := func(s ...string) {
		for _, x := range s {
			if x != "" {
				parts = append(parts, x)
			}
		}
	}
	switch b := rec.GetBody().(type) {
	case *fieldsyncv1.Record_Household:
		h := b.Household
		add(h.GetHeadName(), enumWord(h.GetStatus()))
		if h.RegisteredMembers != nil {
			add(plural(int(h.GetRegisteredMembers()), "member"))
		}
		add(h.GetAddress())
	case *fieldsyncv1.Record_Person:
		p := b.Person
		add(p.GetName(), enumWord(p.GetSex()))
		if d := p.GetBirthDate(); d != nil {
			add(fmt.Sprintf("born %d", d.GetYear()))
		}
		add(enumWord(p.GetResidency()))
		for _, c := range p.GetConditions() {
			if c.GetOtherName() != "" {
				add(c.GetOtherName())
			} else {
				add(enumWord(c.GetDisease()))
			}
		}
	case *fieldsyncv1.Record_Clinic:
		add(b.Clinic.GetName(), plural(len(b.Clinic.GetDoctorWorkerIds()), "doctor"))
	case *fieldsyncv1.Record_Worker:
		add(b.Worker.GetName(), enumWord(b.Worker.GetRole()))
	case *fieldsyncv1.Record_HouseholdVisit:
		v := b.HouseholdVisit
		add(day(v.GetStartedAt()), v.GetCampaign(), "household "+v.GetHouseholdId(), plural(len(v.GetFindings()), "finding"))
	case *fieldsyncv1.Record_ClinicAudit:
		a := b.ClinicAudit
		add(day(a.GetAuditedAt()), "clinic "+a.GetClinicId())
	case *fieldsyncv1.Record_FollowUp:
		f := b.FollowUp
		add(day(f.GetFollowedUpAt()), enumWord(f.GetDisease()), enumWord(f.GetClassification()))
		if f.SystolicMmhg != nil {
			add(fmt.Sprintf("%d/%d mmHg", f.GetSystolicMmhg(), f.GetDiastolicMmhg()))
		}
		if f.FastingGlucoseMmolL != nil {
			add(fmt.Sprintf("glucose %.1f", f.GetFastingGlucoseMmolL()))
		}
		if d := f.GetNextDueOn(); d != nil {
			add("next due " + dateString(d))
		}
	case *fieldsyncv1.Record_Problem:
		p := b.Problem
		add(enumWord(p.GetSeverity()), enumWord(p.GetStatus()))
		if d := p.GetDeadline(); d != nil {
			add("deadline " + dateString(d))
		}
		add(p.GetDescription())
	case *fieldsyncv1.Record_RiskFlag:
		r := b.RiskFlag
		add(enumWord(r.GetReason()), enumWord(r.GetStatus()))
		if r.GetTotalMedicalCostFen() > 0 {
			add(fmt.Sprintf("self-pay %.0f%%", 100*float64(r.GetOutOfPocketFen())/float64(r.GetTotalMedicalCostFen())))
		}
	}
	return strings.Join(parts, ", ")
}

// enumWord is an enum value's name without its type prefix, in lower case:
// HOUSEHOLD_STATUS_MONITORED is "monitored". Unset enums give "".
func enumWord(e protoreflect.Enum) string {
	if e.Number() == 0 {
		return ""
	}
	vals := e.Descriptor().Values()
	v := vals.ByNumber(e.Number())
	if v == nil {
		return fmt.Sprintf("%d", e.Number())
	}
	name := string(v.Name())
	if z := vals.ByNumber(0); z != nil {
		name = strings.TrimPrefix(name, strings.TrimSuffix(string(z.Name()), "UNSPECIFIED"))
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", " ")
}

func day(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().In(survey.ChinaTime).Format(time.DateOnly)
}

func dateString(d *fieldsyncv1.Date) string {
	return fmt.Sprintf("%04d-%02d-%02d", d.GetYear(), d.GetMonth(), d.GetDay())
}

// plural is "1 finding", "2 findings".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
