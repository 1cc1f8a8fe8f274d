package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// The daily questions a village doctor asks the phone, over the records in
// the device's areas.

func runDeviceDue(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	dayFlag := fs.String("day", "", "`date` (YYYY-MM-DD, China time) to list follow-ups due by (default today)")
	asJSON := fs.Bool("json", false, "print a JSON array of the follow-ups, one a line")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	day := time.Now().In(survey.ChinaTime)
	if *dayFlag != "" {
		if day, err = time.ParseInLocation(time.DateOnly, *dayFlag, survey.ChinaTime); err != nil {
			return fmt.Errorf("device due: --day %q: want YYYY-MM-DD", *dayFlag)
		}
	}
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		due, err := c.DueFollowUps(ctx, day)
		if err != nil {
			return fmt.Errorf("device due: %w", err)
		}
		recs, err := wrapAll(fieldsyncv1.RecordKind_RECORD_KIND_FOLLOW_UP, due)
		if err != nil {
			return err
		}
		if *asJSON {
			return printRecords(stdout, recs, true, "")
		}
		var buf bytes.Buffer
		overdue := 0
		for _, f := range due {
			state := "due"
			if survey.Overdue(f.GetNextDueOn(), day) {
				state = "OVERDUE"
				overdue++
			}
			fmt.Fprintf(&buf, "%-7s %s  %-12s  person %s, %s, last %s\n", state, dateString(f.GetNextDueOn()), f.GetAreaCode(),
				f.GetPersonId(), enumWord(f.GetDisease()), lastFollowUp(f))
		}
		fmt.Fprintf(&buf, "%s due by %s, %d overdue\n", plural(len(due), "follow-up"), day.Format(time.DateOnly), overdue)
		_, err = stdout.Write(buf.Bytes())
		return err
	})
}

// lastFollowUp is the day and outcome of follow-up f.
func lastFollowUp(f *fieldsyncv1.FollowUp) string {
	s := day(f.GetFollowedUpAt())
	if c := enumWord(f.GetClassification()); c != "" {
		s += " " + c
	}
	return s
}

func runDeviceUnvisited(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	campaign := fs.String("campaign", "", "visit campaign `name`, as the visits record it (e.g. 2026-回头看)")
	asJSON := fs.Bool("json", false, "print a JSON array of the households, one a line")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	if *campaign == "" {
		return errors.New("device unvisited: --campaign is required")
	}
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		hs, err := c.UnvisitedHouseholds(ctx, *campaign)
		if err != nil {
			return fmt.Errorf("device unvisited: %w", err)
		}
		recs, err := wrapAll(fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD, hs)
		if err != nil {
			return err
		}
		if err := printRecords(stdout, recs, *asJSON, ""); err != nil || *asJSON {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s not yet visited in campaign %s\n", plural(len(hs), "household"), *campaign)
		return err
	})
}

func runDeviceProblems(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	asJSON := fs.Bool("json", false, "print a JSON array of the problems, one a line")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		ps, err := c.OpenProblems(ctx)
		if err != nil {
			return fmt.Errorf("device problems: %w", err)
		}
		recs, err := wrapAll(fieldsyncv1.RecordKind_RECORD_KIND_PROBLEM, ps)
		if err != nil {
			return err
		}
		if err := printRecords(stdout, recs, *asJSON, ""); err != nil || *asJSON {
			return err
		}
		critical := 0
		for _, p := range ps {
			if p.GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL {
				critical++
			}
		}
		_, err = fmt.Fprintf(stdout, "%s, %d critical\n", plural(len(ps), "open problem"), critical)
		return err
	})
}

// wrapAll puts bodies of kind into Record envelopes.
func wrapAll[T proto.Message](kind fieldsyncv1.RecordKind, bodies []T) ([]*fieldsyncv1.Record, error) {
	out := make([]*fieldsyncv1.Record, 0, len(bodies))
	for _, b := range bodies {
		rec, err := wire.Wrap(syncengine.Kind(kind), b)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}
