package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey"
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
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fieldsync demo [flags]\n\nGenerate a village, record it on a new device replica and print the day's questions.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
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
	s, err := sqlitestore.Open(ctx, *replica)
	if err != nil {
		return err
	}
	defer s.Close()
	clock := syncengine.NewClock(s.Replica(), 0)
	asOf := g.Config().AsOf
	var areas []string
	seen := map[string]bool{}
	n, start := 0, time.Now()
	err = g.Each(func(rec *fieldsyncv1.Record) error {
		id, area, err := wire.Identity(rec)
		if err != nil {
			return err
		}
		if errs := survey.Validate(rec, asOf); errs != nil {
			return fmt.Errorf("generated record %v is invalid: %v", id, errs)
		}
		fields, err := wire.Fields(wire.Body(rec))
		if err != nil {
			return err
		}
		e := syncengine.Edit{Record: id, Kind: wire.KindOf(rec), Area: area, Fields: fields}
		if _, err := rand.Read(e.ID[:]); err != nil {
			return err
		}
		if _, err := syncengine.WriteLocal(ctx, s, clock, asOf.UnixMilli(), e); err != nil {
			return err
		}
		if rec.GetHousehold() != nil && !seen[area] {
			seen[area] = true
			areas = append(areas, area)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "recorded %d records of %d villages on replica %s in %v (%.0f saves/s, each one transaction)\n",
		n, len(areas), *replica, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	return printQuestions(ctx, s, areas, asOf, g.Config().Campaign, stdout)
}

func printQuestions(ctx context.Context, s *sqlitestore.Store, areas []string, asOf time.Time, campaign string, stdout io.Writer) error {
	due, err := s.DueFollowUps(ctx, areas, asOf)
	if err != nil {
		return err
	}
	overdue := 0
	for _, f := range due {
		if survey.Overdue(f.GetNextDueOn(), asOf) {
			overdue++
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
	fmt.Fprintf(stdout, "  follow-ups due: %d (%d overdue)\n", len(due), overdue)
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
