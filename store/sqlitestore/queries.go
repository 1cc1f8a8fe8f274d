package sqlitestore

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
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
	q := `SELECT h.record FROM households h
		WHERE ` + cond + `
		AND NOT EXISTS (SELECT 1 FROM household_visits v WHERE v.campaign = ? AND v.household_id = h.id)
		ORDER BY h.area_code, h.head_name`
	args = append(args, campaign)
	return queryRecords(ctx, s, q, args, func() *fieldsyncv1.Household { return &fieldsyncv1.Household{} })
}

// OpenProblems returns the problems in the areas not yet verified and closed,
// critical first, then by deadline.
func (s *Store) OpenProblems(ctx context.Context, prefixes []string) ([]*fieldsyncv1.Problem, error) {
	cond, args := areaFilter("area_code", prefixes)
	q := `SELECT record FROM problems
		WHERE status IN ('PROBLEM_STATUS_OPEN', 'PROBLEM_STATUS_RECTIFIED') AND ` + cond + `
		ORDER BY severity = 'SEVERITY_CRITICAL' DESC, deadline IS NULL, deadline, id`
	return queryRecords(ctx, s, q, args, func() *fieldsyncv1.Problem { return &fieldsyncv1.Problem{} })
}

// queryRecords runs q, whose only column is an encoded record, and decodes each
// row into a new message from newMsg.
func queryRecords[M proto.Message](ctx context.Context, s *Store, q string, args []any, newMsg func() M) ([]M, error) {
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: query: %w", s.path, err)
	}
	defer rows.Close()
	var out []M
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		m := newMsg()
		if err := proto.Unmarshal(b, m); err != nil {
			return nil, fmt.Errorf("%s: decode read-model row: %w", s.path, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
