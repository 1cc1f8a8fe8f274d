package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/internal/csvcell"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/wire"
)

const problemsUsage = `usage: fieldsync admin problems [--area PREFIX] [--overdue] [--severity critical|normal] [--all] [--as-of YYYY-MM-DD] [--json | --csv]
       fieldsync admin problems verify [flags] ID --worker WORKER_ID
       fieldsync admin problems reopen [flags] ID --worker WORKER_ID --reason TEXT

problems lists the problem ledger (问题台账) of the server's records in an area
(default: the server's whole area): the problems not yet verified, critical
first, then overdue, then by deadline. A problem is overdue when it is still
OPEN after its deadline day (China time; --as-of judges another day); a
RECTIFIED problem awaits verification and is not overdue. --overdue lists the
overdue ones only: the daily overdue list (日通报). --all adds the verified
(closed) problems. Each line shows the days overdue, the deadline, the
village, severity, status, item, the person concerned, the description, who
is responsible and the problem's ID; a summary line follows. --json prints a
JSON array, --csv a CSV table with a header line, with the same columns:
id, area_code, item, severity, status, deadline, days_overdue, overdue,
person_id, person_name, description, measure, responsible, source_record_id.

verify closes (销号) rectified problem ID, verified by the worker WORKER_ID (a
Worker's id), with a change made by the server. The worker who rectified a
problem cannot verify it, and an open problem must be rectified first.

reopen sends a rectified or verified problem ID back to OPEN, with the reason
and the worker who reopens it.

Both print the problem's new status; a move the ledger's rules refuse exits
non-zero with the rule's message. The change reaches the devices at their
next sync.
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// problemJSON is one problem as 'admin problems --json' prints it; --csv
// prints the same columns in the same order.
type problemJSON struct {
	ID             string  `json:"id"`
	AreaCode       string  `json:"area_code"`
	Item           string  `json:"item"`
	Severity       string  `json:"severity"` // critical, normal
	Status         string  `json:"status"`   // open, rectified, verified
	Deadline       *string `json:"deadline"` // YYYY-MM-DD, null when none
	DaysOverdue    int32   `json:"days_overdue"`
	Overdue        bool    `json:"overdue"`
	PersonID       string  `json:"person_id"`
	PersonName     string  `json:"person_name"`
	Description    string  `json:"description"`
	Measure        string  `json:"measure"`
	Responsible    string  `json:"responsible"`
	SourceRecordID string  `json:"source_record_id"`
}

// problemColumns are the CSV header, the JSON keys in order.
var problemColumns = []string{"id", "area_code", "item", "severity", "status", "deadline", "days_overdue", "overdue",
	"person_id", "person_name", "description", "measure", "responsible", "source_record_id"}

func (p problemJSON) row() []string {
	deadline := ""
	if p.Deadline != nil {
		deadline = *p.Deadline
	}
	return []string{p.ID, p.AreaCode, p.Item, p.Severity, p.Status, deadline, strconv.Itoa(int(p.DaysOverdue)), strconv.FormatBool(p.Overdue),
		p.PersonID, csvcell.Text(p.PersonName), csvcell.Text(p.Description), csvcell.Text(p.Measure), csvcell.Text(p.Responsible), p.SourceRecordID}
}

func listedProblemJSON(lp *fieldsyncv1.ListedProblem) problemJSON {
	p := lp.GetProblem()
	j := problemJSON{
		ID: p.GetId(), AreaCode: p.GetAreaCode(), Item: p.GetItem(), Severity: enumWord(p.GetSeverity()), Status: enumWord(p.GetStatus()),
		DaysOverdue: lp.GetDaysOverdue(), Overdue: lp.GetOverdue(), PersonID: p.GetPersonId(), PersonName: lp.GetPersonName(),
		Description: p.GetDescription(), Measure: p.GetMeasure(), Responsible: p.GetResponsible(), SourceRecordID: p.GetSourceRecordId(),
	}
	if d := p.GetDeadline(); d != nil {
		s := dateString(d)
		j.Deadline = &s
	}
	return j
}

// runAdminProblems is 'fieldsync admin problems'.
func runAdminProblems(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "verify" || args[0] == "reopen") {
		return runAdminProblemUpdate(ctx, args[0], args[1:], stdout, stderr)
	}
	var a adminFlags
	fs := flag.NewFlagSet("admin problems", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, problemsUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	area := fs.String("area", "", "area-code `prefix` (default: the server's area)")
	overdue := fs.Bool("overdue", false, "only the problems still open after their deadline: the daily overdue list (日通报)")
	severity := fs.String("severity", "", "only problems of this `severity`: critical or normal")
	all := fs.Bool("all", false, "also list verified (closed) problems")
	asOf := fs.String("as-of", "", "judge deadlines on this `date` (YYYY-MM-DD, China time; default today)")
	asJSON := fs.Bool("json", false, "print a JSON array, one problem a line")
	asCSV := fs.Bool("csv", false, "print CSV with a header line")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("admin problems: unexpected argument %q: want 'verify', 'reopen' or only flags", pos[0])
	}
	if *asJSON && *asCSV {
		return errors.New("admin problems: give --json or --csv, not both")
	}
	req := &fieldsyncv1.ListProblemsRequest{AreaPrefix: *area, OverdueOnly: *overdue, IncludeVerified: *all}
	switch strings.ToLower(*severity) {
	case "":
	case "critical":
		req.Severity = fieldsyncv1.Severity_SEVERITY_CRITICAL
	case "normal":
		req.Severity = fieldsyncv1.Severity_SEVERITY_NORMAL
	default:
		return fmt.Errorf("admin problems: --severity %q: want critical or normal", *severity)
	}
	if req.AsOf, err = parseDay("--as-of", *asOf); err != nil {
		return fmt.Errorf("admin problems: %w", err)
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.ListProblems(ctx, req)
		if err != nil {
			return fmt.Errorf("admin problems: %w", err)
		}
		var buf bytes.Buffer
		switch {
		case *asJSON:
			err = writeProblemsJSON(&buf, resp.GetProblems())
		case *asCSV:
			err = writeProblemsCSV(&buf, resp.GetProblems())
		default:
			writeProblemsTable(&buf, resp.GetProblems())
		}
		if err != nil {
			return err
		}
		_, err = stdout.Write(buf.Bytes())
		return err
	})
}

// writeProblemsTable writes one line per problem, then the summary line.
func writeProblemsTable(w *bytes.Buffer, ps []*fieldsyncv1.ListedProblem) {
	overdue, critical := 0, 0
	for _, lp := range ps {
		fmt.Fprintln(w, problemLine(lp))
		if lp.GetOverdue() {
			overdue++
		}
		if lp.GetProblem().GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL {
			critical++
		}
	}
	fmt.Fprintf(w, "%s, %d overdue, %d critical\n", plural(len(ps), "problem"), overdue, critical)
}

// problemLine is one problem as 'admin problems' prints it: the OVERDUE
// marker and days, deadline, village, severity, status, item, person,
// description, who is responsible and the problem's id (for verify and
// reopen).
func problemLine(lp *fieldsyncv1.ListedProblem) string {
	p := lp.GetProblem()
	marker := ""
	if lp.GetOverdue() {
		marker = fmt.Sprintf("OVERDUE %4d days", lp.GetDaysOverdue())
	}
	deadline := "-"
	if d := p.GetDeadline(); d != nil {
		deadline = dateString(d)
	}
	return fmt.Sprintf("%-17s  %-10s  %-12s  %-8s  %-9s  %s  %s  %s  responsible %s  %s", marker, deadline, p.GetAreaCode(),
		enumWord(p.GetSeverity()), enumWord(p.GetStatus()), p.GetItem(), orDash(lp.GetPersonName()), p.GetDescription(),
		orDash(p.GetResponsible()), p.GetId())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeProblemsJSON writes ps as a JSON array, one problem a line.
func writeProblemsJSON(w *bytes.Buffer, ps []*fieldsyncv1.ListedProblem) error {
	return writeJSONLines(w, ps, func(lp *fieldsyncv1.ListedProblem) ([]byte, error) { return json.Marshal(listedProblemJSON(lp)) })
}

// writeJSONLines writes items as a JSON array, one item a line, each encoded
// by enc: what the admin commands print with --json.
func writeJSONLines[T any](w *bytes.Buffer, items []T, enc func(T) ([]byte, error)) error {
	if len(items) == 0 {
		w.WriteString("[]\n")
		return nil
	}
	w.WriteString("[\n")
	for i, it := range items {
		b, err := enc(it)
		if err != nil {
			return err
		}
		w.WriteString("  ")
		w.Write(b)
		if i < len(items)-1 {
			w.WriteByte(',')
		}
		w.WriteByte('\n')
	}
	w.WriteString("]\n")
	return nil
}

// writeProblemsCSV writes ps as RFC 4180 CSV with a header line.
func writeProblemsCSV(w *bytes.Buffer, ps []*fieldsyncv1.ListedProblem) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(problemColumns); err != nil {
		return err
	}
	for _, lp := range ps {
		if err := cw.Write(listedProblemJSON(lp).row()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// runAdminProblemUpdate is 'fieldsync admin problems verify|reopen'.
func runAdminProblemUpdate(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	var a adminFlags
	fs := flag.NewFlagSet("admin problems "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, problemsUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	worker := fs.String("worker", "", "id of the `Worker` who "+map[string]string{"verify": "verifies", "reopen": "reopens"}[cmd]+" the problem")
	var reason *string
	if cmd == "reopen" {
		reason = fs.String("reason", "", "why the problem is reopened (`text`)")
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("admin problems %s: give one problem ID (from 'admin problems')", cmd)
	}
	id, err := wire.RecordID(pos[0])
	if err != nil {
		return fmt.Errorf("admin problems %s: problem %w", cmd, err)
	}
	if *worker == "" {
		return fmt.Errorf("admin problems %s: --worker WORKER_ID is required: the Worker who %s the problem", cmd, map[string]string{"verify": "verifies", "reopen": "reopens"}[cmd])
	}
	req := &fieldsyncv1.UpdateProblemRequest{ProblemId: id.String(), Status: fieldsyncv1.ProblemStatus_PROBLEM_STATUS_VERIFIED, WorkerId: *worker}
	if cmd == "reopen" {
		if strings.TrimSpace(*reason) == "" {
			return errors.New("admin problems reopen: reopening needs --reason: why the problem goes back to OPEN")
		}
		req.Status, req.Reason = fieldsyncv1.ProblemStatus_PROBLEM_STATUS_OPEN, *reason
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.UpdateProblem(ctx, req)
		if err != nil {
			return fmt.Errorf("admin problems %s: %w", cmd, err)
		}
		p := resp.GetProblem()
		what := fmt.Sprintf("verified by worker %s", p.GetVerifiedByWorkerId())
		if cmd == "reopen" {
			what = fmt.Sprintf("reopened by worker %s: %s", p.GetReopenedByWorkerId(), p.GetReopenReason())
		}
		_, err = fmt.Fprintf(stdout, "problem %s is now %s (%s); the change reaches the devices at their next sync\n",
			p.GetId(), strings.TrimPrefix(p.GetStatus().String(), "PROBLEM_STATUS_"), what)
		return err
	})
}
