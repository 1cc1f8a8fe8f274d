package sqlitestore

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// readModelTables maps each record kind to its read-model table.
var readModelTables = map[fieldsyncv1.RecordKind]string{
	fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD:       "households",
	fieldsyncv1.RecordKind_RECORD_KIND_PERSON:          "persons",
	fieldsyncv1.RecordKind_RECORD_KIND_CLINIC:          "clinics",
	fieldsyncv1.RecordKind_RECORD_KIND_WORKER:          "workers",
	fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT: "household_visits",
	fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT:    "clinic_audits",
	fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP:       "follow_ups",
	fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM:         "problems",
	fieldsyncv1.RecordKind_RECORD_KIND_RISK_FLAG:       "risk_flags",
}

// project rewrites the read-model row of r from its merged state: removed when
// the record is deleted, replaced otherwise. A record whose fields do not
// decode as its kind (which the server's validation prevents) keeps its engine
// state but has no read-model row; a kind this build does not know has no
// table. Neither fails the transaction: one bad record must not stop a sync.
// A fresh record has no row to remove first.
func project(ctx context.Context, t *tx, r syncengine.Record, fresh bool) error {
	table, ok := readModelTables[fieldsyncv1.RecordKind(r.Kind())]
	if !ok {
		return nil
	}
	id := r.ID().String()
	if !fresh {
		if _, err := t.exec(ctx, "DELETE FROM "+table+" WHERE id = ?", id); err != nil {
			return fmt.Errorf("project %v: %w", id, err)
		}
	}
	if !r.Exists() {
		return nil
	}
	// The body's encoding is the state's shown fields joined, as they came
	// (a newer build's fields too), not the decoded body encoded again.
	rec, raw, err := wire.Shown(r)
	if err != nil {
		return nil
	}
	if raw == nil {
		raw = []byte{} // a record of no field: an empty body, not NULL
	}
	q, args := row(id, r.Area(), rec, t.seal)
	if q == "" {
		return nil
	}
	if raw, err = t.seal.seal(raw, []byte(table+".record:"+id)); err != nil {
		return fmt.Errorf("project %v: %w", id, err)
	}
	if _, err := t.exec(ctx, q, append(args, raw)...); err != nil {
		return fmt.Errorf("project %v: %w", id, err)
	}
	return nil
}

// row returns the INSERT for rec's read-model row and its arguments but the
// last (the encoded record), or "" for a body without a table. On a sealed
// replica (sl not nil) the columns that identify a person are left empty.
func row(id, area string, rec *fieldsyncv1.Record, sl *sealer) (string, []any) {
	switch b := rec.GetBody().(type) {
	case *fieldsyncv1.Record_Household:
		h := b.Household
		return `INSERT INTO households (id, area_code, head_name, address, status, record) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{id, area, sl.personal(h.GetHeadName()), sl.personal(h.GetAddress()), h.GetStatus().String()}
	case *fieldsyncv1.Record_Person:
		p := b.Person
		return `INSERT INTO persons (id, area_code, household_id, name, id_masked, sex, birth_date, residency, chronic, record)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			[]any{id, area, p.GetHouseholdId(), sl.personal(p.GetName()), sl.personal(p.GetIdNumber().GetMasked()), p.GetSex().String(),
				sl.personalDate(dateText(p.GetBirthDate())), p.GetResidency().String(), survey.ChronicPatient(p)}
	case *fieldsyncv1.Record_Clinic:
		return `INSERT INTO clinics (id, area_code, name, record) VALUES (?, ?, ?, ?)`, []any{id, area, b.Clinic.GetName()}
	case *fieldsyncv1.Record_Worker:
		w := b.Worker
		return `INSERT INTO workers (id, area_code, name, role, licence_number, record) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{id, area, sl.personal(w.GetName()), w.GetRole().String(), sl.personal(w.GetLicenceNumber())}
	case *fieldsyncv1.Record_HouseholdVisit:
		v := b.HouseholdVisit
		return `INSERT INTO household_visits (id, area_code, household_id, visitor_worker_id, campaign, started_at, record)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			[]any{id, area, v.GetHouseholdId(), v.GetVisitorWorkerId(), v.GetCampaign(), timeText(v.GetStartedAt())}
	case *fieldsyncv1.Record_ClinicAudit:
		a := b.ClinicAudit
		return `INSERT INTO clinic_audits (id, area_code, clinic_id, auditor_worker_id, audited_at, record) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{id, area, a.GetClinicId(), a.GetAuditorWorkerId(), timeText(a.GetAuditedAt())}
	case *fieldsyncv1.Record_FollowUp:
		f := b.FollowUp
		return `INSERT INTO follow_ups (id, area_code, person_id, disease, followed_up_at, classification, next_due_on, record)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			[]any{id, area, f.GetPersonId(), f.GetDisease().String(), timeText(f.GetFollowedUpAt()),
				f.GetClassification().String(), dateText(f.GetNextDueOn())}
	case *fieldsyncv1.Record_Problem:
		p := b.Problem
		return `INSERT INTO problems (id, area_code, item, person_id, source_record_id, severity, status, responsible, deadline, record)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			[]any{id, area, p.GetItem(), p.GetPersonId(), p.GetSourceRecordId(), p.GetSeverity().String(),
				p.GetStatus().String(), sl.personal(p.GetResponsible()), dateText(p.GetDeadline())}
	case *fieldsyncv1.Record_RiskFlag:
		f := b.RiskFlag
		return `INSERT INTO risk_flags (id, area_code, household_id, person_id, status, flagged_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			[]any{id, area, f.GetHouseholdId(), f.GetPersonId(), f.GetStatus().String(), timeText(f.GetFlaggedAt())}
	}
	return "", nil
}

// dateText is a date as ISO text, or NULL.
func dateText(d *fieldsyncv1.Date) any {
	t, err := survey.DateTime(d)
	if d == nil || err != nil {
		return nil
	}
	return t.Format(time.DateOnly)
}

// timeText is a time as RFC 3339 text in China Standard Time, or NULL.
func timeText(ts *timestamppb.Timestamp) any {
	if ts == nil || ts.CheckValid() != nil {
		return nil
	}
	return ts.AsTime().In(survey.ChinaTime).Format(time.RFC3339)
}
