package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	replica := fs.String("replica", "data/demo-replica.db", "device replica `file` to create (must not exist)")
	people := fs.Int("people", 300, "people in the generated village or county")
	seed := fs.Uint64("seed", 1, "generator seed: the same seed gives the same village")
	server := fs.String("server", "", "server `address`: enrol the replica there with --code first, record what lies in its areas, and sync it")
	code := fs.String("code", "", "one-time enrolment `code` from 'fieldsync admin device add' (with --server)")
	areasOut := fs.String("areas", "", "write the generated areas' codes and names to this CSV `file`, for 'fieldsync admin areas import'")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fieldsync demo [flags]\n\nGenerate a village, record it on a new device replica and print the day's questions.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*server == "") != (*code == "") {
		return errors.New("demo: --server and --code go together: the code comes from 'fieldsync admin device add' at that server")
	}
	if _, err := os.Stat(*replica); err == nil {
		return fmt.Errorf("replica %s already exists: remove it or choose another --replica", *replica)
	}
	if err := os.MkdirAll(filepath.Dir(*replica), 0o700); err != nil {
		return err
	}
	g, err := countygen.New(countygen.Config{People: *people, Seed: *seed})
	if err != nil {
		return err
	}
	start := time.Now()
	rec, err := recordDemo(ctx, g, *replica, *server, *code)
	if err != nil {
		return err
	}
	n, changes, problems, flags, areas := rec.records, rec.changes, rec.problems, rec.flags, rec.areas
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "recorded %d records of %d villages on replica %s in %v (%.0f saves/s, each one transaction)\n",
		n, len(areas), *replica, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Fprintf(stdout, "%s in the log: the visits and audits raised %s and %s, the ledger's problems moved on step by step, and the follow-ups got the schedule their readings call for\n",
		plural(changes, "change"), plural(problems, "problem"), plural(flags, "return-to-poverty risk flag"))
	if *areasOut != "" {
		if err := writeDemoAreas(*areasOut, g.County); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote the areas' names to %s: give them to the server with 'fieldsync admin areas import %s'\n", *areasOut, *areasOut)
	}
	if *server != "" {
		if err := demoSync(ctx, *replica, *server, stdout); err != nil {
			return err
		}
	}
	s, err := sqlitestore.Open(ctx, *replica)
	if err != nil {
		return err
	}
	defer s.Close()
	return printQuestions(ctx, s, areas, g.Config().AsOf, g.Config().Campaign, stdout)
}

// demoSync syncs the demo's enrolled replica with its server.
func demoSync(ctx context.Context, replica, server string, stdout io.Writer) error {
	c, err := fieldsync.Open(ctx, replica)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	if err := c.Sync(ctx); err != nil {
		return fmt.Errorf("demo: sync with %s: %w", server, err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "synced with %s in %v: %d changes pending, %d refused\n", server, time.Since(start).Round(time.Millisecond), st.Pending, len(st.Rejected))
	for i, r := range st.Rejected {
		if i == 3 {
			fmt.Fprintf(stdout, "    ... and %d more ('fieldsync device status --replica %s')\n", len(st.Rejected)-3, replica)
			break
		}
		fmt.Fprintf(stdout, "    refused %s: %s\n", r.RecordID, r.Message)
	}
	return nil
}

// writeDemoAreas writes the generated county's, townships' and villages'
// codes and names as CSV.
func writeDemoAreas(path string, county *countygen.County) error {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write([]string{"code", "name"})
	w.Write([]string{county.Code, county.Name})
	for _, t := range county.Townships {
		w.Write([]string{t.Code, t.Name})
		for _, v := range t.Villages {
			w.Write([]string{v.Code, v.Name})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func printQuestions(ctx context.Context, s *sqlitestore.Store, areas []string, asOf time.Time, campaign string, stdout io.Writer) error {
	due, err := s.DuePatients(ctx, areas, asOf)
	if err != nil {
		return err
	}
	overdue, urgent := 0, 0
	for _, d := range due {
		if d.Overdue() {
			overdue++
		}
		if d.Reason == sqlitestore.DueUrgentReferral {
			urgent++
		}
	}
	unvisited, err := s.UnvisitedHouseholds(ctx, areas, campaign)
	if err != nil {
		return err
	}
	problems, err := s.OpenProblems(ctx, areas)
	if err != nil {
		return err
	}
	critical := 0
	for _, p := range problems {
		if p.GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL {
			critical++
		}
	}
	fmt.Fprintf(stdout, "on %s:\n", asOf.Format(time.DateOnly))
	fmt.Fprintf(stdout, "  follow-ups due: %d (%d overdue, %d urgent referrals)\n", len(due), overdue, urgent)
	for i, d := range due {
		if i == 5 {
			fmt.Fprintf(stdout, "    ... and %d more\n", len(due)-5)
			break
		}
		fmt.Fprintf(stdout, "    [%s] %s %s, %s, due %s\n", dueState(d), d.Name, enumWord(d.Disease),
			dueReasonWord(d.Reason), d.DueOn.Format(time.DateOnly))
	}
	fmt.Fprintf(stdout, "  households not yet visited in campaign %s: %d\n", campaign, len(unvisited))
	fmt.Fprintf(stdout, "  open problems: %d (%d critical)\n", len(problems), critical)
	for i, p := range problems {
		if i == 5 {
			fmt.Fprintf(stdout, "    ... and %d more\n", len(problems)-5)
			break
		}
		fmt.Fprintf(stdout, "    [%s] %s\n", p.GetSeverity().String()[len("SEVERITY_"):], p.GetDescription())
	}
	fmt.Fprintf(stdout, "read it with: sqlite3 %s 'SELECT name, residency, chronic FROM persons LIMIT 5'\n", s.Path())
	if len(areas) == 0 {
		return errors.New("the generated village has no households")
	}
	return nil
}

// dueState is "OVERDUE 3 days" or "due today".
func dueState(d sqlitestore.DuePatient) string {
	if d.Overdue() {
		return "OVERDUE " + plural(d.DaysOverdue, "day")
	}
	return "due today"
}

// demoRecorded is what recordDemo saved: records, changes in the log (the
// problems and flags raised among them), and the villages recorded.
type demoRecorded struct {
	records, changes, problems, flags int
	areas                             []string
}

// recordDemo saves g's records on a new replica, enrolled at server with
// code first when server is given (then only what lies in its areas).
func recordDemo(ctx context.Context, g *countygen.Generator, replica, server, code string) (demoRecorded, error) {
	// Every record goes through the device SDK's save path, as a doctor's
	// phone saves it: follow-ups get their derived schedule, visits and
	// audits raise their problems and risk flags, and the generated ledger's
	// problems are moved through its workflow step by step.
	c, err := fieldsync.Open(ctx, replica)
	if err != nil {
		return demoRecorded{}, err
	}
	// Enrolled first, the phone records only what lies in its areas (not
	// the county's own records, its inspectors).
	var scope []string
	if server != "" {
		if err := c.Enroll(ctx, server, code); err != nil {
			c.Close()
			return demoRecorded{}, fmt.Errorf("demo: enrol with %s: %w", server, err)
		}
		if scope, err = c.Areas(ctx); err != nil {
			c.Close()
			return demoRecorded{}, err
		}
	}
	inScope := func(rec *fieldsyncv1.Record) bool {
		_, area, err := wire.Identity(rec)
		if err != nil || len(scope) == 0 {
			return true
		}
		return syncengine.InAreas(area, scope)
	}
	var r demoRecorded
	seen := map[string]bool{}
	save := func(rec *fieldsyncv1.Record) error {
		res, err := c.SaveRecord(ctx, rec)
		if err != nil {
			id, _, _ := wire.Identity(rec)
			return fmt.Errorf("generated record %v: %w", id, err)
		}
		r.problems += res.Problems
		r.flags += res.Flags
		r.changes += res.Problems + res.Flags
		if res.Changed {
			r.changes++
		}
		return nil
	}
	err = g.Each(func(rec *fieldsyncv1.Record) error {
		if !inScope(rec) {
			return nil
		}
		if p := rec.GetProblem(); p != nil {
			for _, step := range countygen.LedgerSteps(p) {
				if err := save(&fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: step}}); err != nil {
					return err
				}
			}
		} else if err := save(rec); err != nil {
			return err
		}
		if _, area, err := wire.Identity(rec); err == nil && rec.GetHousehold() != nil && !seen[area] {
			seen[area] = true
			r.areas = append(r.areas, area)
		}
		r.records++
		return nil
	})
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return r, err
}
