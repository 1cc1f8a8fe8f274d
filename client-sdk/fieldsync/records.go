package fieldsync

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// kindNames are the names ParseKind accepts, canonical name first.
var kindNames = []struct {
	kind  fieldsyncv1.RecordKind
	names []string
}{
	{fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD, []string{"household"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_PERSON, []string{"person", "people"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_CLINIC, []string{"clinic"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_WORKER, []string{"worker"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT, []string{"household_visit", "visit"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, []string{"clinic_audit", "audit"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP, []string{"follow_up", "followup"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM, []string{"problem"}},
	{fieldsyncv1.RecordKind_RECORD_KIND_RISK_FLAG, []string{"risk_flag", "flag"}},
}

// ParseKind returns the record kind named s: "household", "person",
// "clinic", "worker", "household_visit" (or "visit"), "clinic_audit" (or
// "audit"), "follow_up" (or "followup"), "problem" or "risk_flag" (or
// "flag"). Case, surrounding space, "-" or " " for "_", a plural "s" and the
// enum's "RECORD_KIND_" prefix are accepted too, so "Households",
// "follow-ups" and "RECORD_KIND_PERSON" parse. For any other s it returns an
// error listing the valid names.
func ParseKind(s string) (fieldsyncv1.RecordKind, error) {
	n := strings.ToLower(strings.TrimSpace(s))
	n = strings.NewReplacer("-", "_", " ", "_").Replace(n)
	n = strings.TrimPrefix(n, "record_kind_")
	for _, k := range kindNames {
		for _, name := range k.names {
			if n == name || n == name+"s" {
				return k.kind, nil
			}
		}
	}
	return 0, fmt.Errorf("fieldsync: unknown record kind %q: use one of %s", s, kindList())
}

// kindList is the valid kind names for error messages.
func kindList() string {
	var out []string
	for _, k := range kindNames {
		name := k.names[0]
		if len(k.names) > 1 {
			name += " (" + strings.Join(k.names[1:], ", ") + ")"
		}
		out = append(out, name)
	}
	return strings.Join(out, ", ")
}

// kindName returns the canonical ParseKind name of kind, or its number.
func kindName(kind fieldsyncv1.RecordKind) string {
	for _, k := range kindNames {
		if k.kind == kind {
			return k.names[0]
		}
	}
	return fmt.Sprintf("kind %d", int32(kind))
}

// listPage is how many records List decodes per read transaction (a
// variable for tests).
var listPage = 500

// List returns every live (not deleted) record of kind in the replica,
// whatever its area, ordered by record id. The records belong to the caller.
// It returns an error for a kind this build has no record message for.
//
// List reads the replica page by page (each page one consistent snapshot), so
// a record saved or received while List runs may or may not be included.
func (c *Client) List(ctx context.Context, kind fieldsyncv1.RecordKind) ([]*fieldsyncv1.Record, error) {
	if _, err := wire.NewBody(syncengine.Kind(kind)); err != nil || kind == fieldsyncv1.RecordKind_RECORD_KIND_UNSPECIFIED {
		return nil, fmt.Errorf("fieldsync: list: record kind %d is not one this build knows: use one of %s (ParseKind)", int32(kind), kindList())
	}
	var out []*fieldsyncv1.Record
	var after syncengine.RecordID
	for {
		page, err := c.store.Records(ctx, syncengine.Kind(kind), after, listPage)
		if err != nil {
			return nil, fmt.Errorf("fieldsync: list %s: %w", kindName(kind), err)
		}
		for _, r := range page {
			rec, err := wire.FromState(r)
			if err != nil {
				return nil, fmt.Errorf("fieldsync: list %s: record %v: %w", kindName(kind), r.ID(), err)
			}
			out = append(out, rec)
			after = r.ID()
		}
		if len(page) < listPage {
			break
		}
	}
	return out, nil
}

// listOf is List with each record's body as T, the body message of kind.
func listOf[T proto.Message](ctx context.Context, c *Client, kind fieldsyncv1.RecordKind) ([]T, error) {
	recs, err := c.List(ctx, kind)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		b, ok := wire.Body(r).(T)
		if !ok {
			return nil, fmt.Errorf("fieldsync: list %s: record of another kind in the list", kindName(kind))
		}
		out = append(out, b)
	}
	return out, nil
}

// getOf is Get for a record of kind, with its body as T. A live record of
// another kind with that id is reported as not found, naming its kind.
func getOf[T proto.Message](ctx context.Context, c *Client, kind fieldsyncv1.RecordKind, id string) (T, error) {
	var zero T
	rec, err := c.Get(ctx, id)
	if err != nil {
		return zero, err
	}
	b, ok := wire.Body(rec).(T)
	if !ok {
		got := kindName(fieldsyncv1.RecordKind(wire.KindOf(rec)))
		return zero, fmt.Errorf("fieldsync: get %s %s: the record is a %s: %w", kindName(kind), id, got, ErrNotFound)
	}
	return b, nil
}

// saveOf is Save for body, the body message of kind.
func saveOf[T interface {
	proto.Message
	comparable
}](ctx context.Context, c *Client, kind fieldsyncv1.RecordKind, body T) error {
	var zero T
	if body == zero {
		return fmt.Errorf("fieldsync: save %s: nil record", kindName(kind))
	}
	rec, err := wire.Wrap(syncengine.Kind(kind), body)
	if err != nil {
		return fmt.Errorf("fieldsync: save %s: %w", kindName(kind), err)
	}
	return c.Save(ctx, rec)
}

// Typed reads and writes. Each list returns every live record of its kind in
// the replica ordered by id (List); each get returns the record with the id or
// an error wrapping ErrNotFound (Get); each save is Save of the record in its
// envelope. Records passed in are not modified or retained; records returned
// belong to the caller.

// Households returns every household in the replica, by id.
func (c *Client) Households(ctx context.Context) ([]*fieldsyncv1.Household, error) {
	return listOf[*fieldsyncv1.Household](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD)
}

// Household returns the household with id.
func (c *Client) Household(ctx context.Context, id string) (*fieldsyncv1.Household, error) {
	return getOf[*fieldsyncv1.Household](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD, id)
}

// SaveHousehold saves h (Save).
func (c *Client) SaveHousehold(ctx context.Context, h *fieldsyncv1.Household) error {
	return saveOf(ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD, h)
}

// Persons returns every person in the replica, by id.
func (c *Client) Persons(ctx context.Context) ([]*fieldsyncv1.Person, error) {
	return listOf[*fieldsyncv1.Person](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_PERSON)
}

// Person returns the person with id.
func (c *Client) Person(ctx context.Context, id string) (*fieldsyncv1.Person, error) {
	return getOf[*fieldsyncv1.Person](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_PERSON, id)
}

// SavePerson saves p (Save).
func (c *Client) SavePerson(ctx context.Context, p *fieldsyncv1.Person) error {
	return saveOf(ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_PERSON, p)
}

// HouseholdVisits returns every household visit in the replica, by id.
func (c *Client) HouseholdVisits(ctx context.Context) ([]*fieldsyncv1.HouseholdVisit, error) {
	return listOf[*fieldsyncv1.HouseholdVisit](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT)
}

// HouseholdVisit returns the household visit with id.
func (c *Client) HouseholdVisit(ctx context.Context, id string) (*fieldsyncv1.HouseholdVisit, error) {
	return getOf[*fieldsyncv1.HouseholdVisit](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT, id)
}

// SaveHouseholdVisit saves v (Save).
func (c *Client) SaveHouseholdVisit(ctx context.Context, v *fieldsyncv1.HouseholdVisit) error {
	return saveOf(ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT, v)
}

// ClinicAudits returns every clinic audit in the replica, by id.
func (c *Client) ClinicAudits(ctx context.Context) ([]*fieldsyncv1.ClinicAudit, error) {
	return listOf[*fieldsyncv1.ClinicAudit](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT)
}

// ClinicAudit returns the clinic audit with id.
func (c *Client) ClinicAudit(ctx context.Context, id string) (*fieldsyncv1.ClinicAudit, error) {
	return getOf[*fieldsyncv1.ClinicAudit](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, id)
}

// SaveClinicAudit saves a (Save).
func (c *Client) SaveClinicAudit(ctx context.Context, a *fieldsyncv1.ClinicAudit) error {
	return saveOf(ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_CLINIC_AUDIT, a)
}

// FollowUps returns every follow-up in the replica, by id. DuePatients
// returns who is due.
func (c *Client) FollowUps(ctx context.Context) ([]*fieldsyncv1.FollowUp, error) {
	return listOf[*fieldsyncv1.FollowUp](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP)
}

// FollowUp returns the follow-up with id.
func (c *Client) FollowUp(ctx context.Context, id string) (*fieldsyncv1.FollowUp, error) {
	return getOf[*fieldsyncv1.FollowUp](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP, id)
}

// SaveFollowUp saves f (Save).
func (c *Client) SaveFollowUp(ctx context.Context, f *fieldsyncv1.FollowUp) error {
	return saveOf(ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP, f)
}

// Problems returns every problem in the replica, closed ones included, by
// id. OpenProblems returns the open ones.
func (c *Client) Problems(ctx context.Context) ([]*fieldsyncv1.Problem, error) {
	return listOf[*fieldsyncv1.Problem](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM)
}

// Problem returns the problem with id.
func (c *Client) Problem(ctx context.Context, id string) (*fieldsyncv1.Problem, error) {
	return getOf[*fieldsyncv1.Problem](ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM, id)
}

// SaveProblem saves p (Save).
func (c *Client) SaveProblem(ctx context.Context, p *fieldsyncv1.Problem) error {
	return saveOf(ctx, c, fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM, p)
}
