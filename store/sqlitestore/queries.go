package sqlitestore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// The device's daily questions, answered from the read model. Each takes the
// area-code prefixes the device serves ("my villages") and returns typed
// records; an empty prefix list matches nothing.

// areaFilter returns an SQL condition matching column against any of prefixes,
// as index-friendly ranges, and its arguments.
func areaFilter(column string, prefixes []string) (string, []any) {
	if len(prefixes) == 0 {
		return "0", nil
	}
	var conds []string
	var args []any
	for _, p := range prefixes {
		conds = append(conds, fmt.Sprintf("(%s >= ? AND %s < ?)", column, column))
		args = append(args, p, p+"~")
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}

// UnvisitedHouseholds returns the households in the areas that have no visit
// in campaign yet, by area and head's name.
func (s *Store) UnvisitedHouseholds(ctx context.Context, prefixes []string, campaign string) ([]*fieldsyncv1.Household, error) {
	cond, args := areaFilter("h.area_code", prefixes)
	q := `SELECT h.id, h.record FROM households h
		WHERE ` + cond + `
		AND NOT EXISTS (SELECT 1 FROM household_visits v WHERE v.campaign = ? AND v.household_id = h.id)
		ORDER BY h.id`
	args = append(args, campaign)
	out, err := queryRecords(ctx, s, "households", q, args, func() *fieldsyncv1.Household { return &fieldsyncv1.Household{} })
	// Sorted here: on a sealed replica the head's name is in the sealed record only.
	slices.SortStableFunc(out, func(a, b *fieldsyncv1.Household) int {
		return cmp.Or(cmp.Compare(a.GetAreaCode(), b.GetAreaCode()), cmp.Compare(a.GetHeadName(), b.GetHeadName()))
	})
	return out, err
}

// OpenProblems returns the problems in the areas not yet verified and closed,
// critical first, then by deadline.
func (s *Store) OpenProblems(ctx context.Context, prefixes []string) ([]*fieldsyncv1.Problem, error) {
	cond, args := areaFilter("area_code", prefixes)
	q := `SELECT id, record FROM problems
		WHERE status IN ('PROBLEM_STATUS_OPEN', 'PROBLEM_STATUS_RECTIFIED') AND ` + cond + `
		ORDER BY severity = 'SEVERITY_CRITICAL' DESC, deadline IS NULL, deadline, id`
	return queryRecords(ctx, s, "problems", q, args, func() *fieldsyncv1.Problem { return &fieldsyncv1.Problem{} })
}

// queryRecords runs q, whose columns are the id and encoded record of rows
// of table, and decodes each record into a new message from newMsg.
func queryRecords[M proto.Message](ctx context.Context, s *Store, table, q string, args []any, newMsg func() M) ([]M, error) {
	var out []M
	err := s.View(ctx, func(rt syncengine.ReadTx) error {
		t := rt.(*readTx)
		rows, err := t.query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var b []byte
			if err := rows.Scan(&id, &b); err != nil {
				return err
			}
			m := newMsg()
			if err := t.rowRecord(table, id, b, m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: query %s: %w", s.path, table, err)
	}
	return out, nil
}
