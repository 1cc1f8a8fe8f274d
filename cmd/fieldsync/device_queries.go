package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
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
	dayFlag := fs.String("day", "", "`date` (YYYY-MM-DD, China time) to list the patients due by (default today)")
	asJSON := fs.Bool("json", false, "print a JSON array of the patients due, one a line")
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
		due, err := c.DuePatients(ctx, day)
		if err != nil {
			return fmt.Errorf("device due: %w", err)
		}
		managed, err := c.StandardManagement(ctx, day)
		if err != nil {
			return fmt.Errorf("device due: %w", err)
		}
		var buf bytes.Buffer
		if *asJSON {
			if err := writeDueJSON(&buf, due); err != nil {
				return err
			}
		} else {
			for _, d := range due {
				fmt.Fprintln(&buf, dueLine(d))
			}
			fmt.Fprintln(&buf, dueSummary(due, day))
			fmt.Fprintln(&buf, managedSummary(managed))
		}
		_, err = stdout.Write(buf.Bytes())
		return err
	})
}

// dueLine is one patient due as 'device due' prints it: state, due day, days
// overdue, village, name, disease, why and the last follow-up's day.
func dueLine(d fieldsync.DuePatient) string {
	state, last := "due", "-"
	if d.Overdue() {
		state = "OVERDUE"
	}
	if d.LastFollowUpID != "" {
		last = d.LastFollowedUpAt.In(survey.ChinaTime).Format(time.DateOnly)
	}
	return fmt.Sprintf("%-7s %s %4d days  %-12s  %s, %s, %s, last %s", state, d.DueOn.Format(time.DateOnly), d.DaysOverdue,
		d.AreaCode, d.Name, enumWord(d.Disease), dueReasonWord(d.Reason), last)
}

// dueReasonWord is a due reason in words: "urgent referral", "never followed up".
func dueReasonWord(r fieldsync.DueReason) string {
	return strings.ReplaceAll(r.String(), "_", " ")
}

// dueSummary is the line after the patients due: how many patients (people,
// counted once however many of their diseases are due) are due by day, how
// many are overdue and how many were referred urgently.
func dueSummary(due []fieldsync.DuePatient, day time.Time) string {
	patients, overdue, urgent := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, d := range due {
		patients[d.PersonID] = true
		if d.Overdue() {
			overdue[d.PersonID] = true
		}
		if d.Reason == fieldsync.DueUrgentReferral {
			urgent[d.PersonID] = true
		}
	}
	return fmt.Sprintf("%s due by %s, %d overdue, %s", plural(len(patients), "patient"), day.Format(time.DateOnly),
		len(overdue), plural(len(urgent), "urgent referral"))
}

// managedSummary says how many patients are under standard management:
// "standard management (规范管理, ≥ 4 face-to-face follow-ups in 12 months):
// hypertension 12 of 20, type2 diabetes 5 of 9".
func managedSummary(ms []fieldsync.Managed) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s %d of %d", enumWord(m.Disease), m.Managed, m.Patients)
	}
	return "standard management (规范管理, ≥ 4 face-to-face follow-ups in 12 months): " + strings.Join(parts, ", ")
}

// dueJSON is a patient due as 'device due --json' prints it.
type dueJSON struct {
	PersonID         string  `json:"person_id"`
	Name             string  `json:"name"`
	AreaCode         string  `json:"area_code"`
	HouseholdID      string  `json:"household_id"`
	Disease          string  `json:"disease"` // the ChronicDisease enum name
	DueOn            string  `json:"due_on"`  // YYYY-MM-DD
	DaysOverdue      int     `json:"days_overdue"`
	Reason           string  `json:"reason"` // DueReason.String
	UrgentReferral   bool    `json:"urgent_referral"`
	LastFollowUpID   string  `json:"last_follow_up_id"`   // "" when never followed up
	LastFollowedUpOn *string `json:"last_followed_up_on"` // YYYY-MM-DD, null when never followed up
}

// writeDueJSON writes due as a JSON array, one patient a line.
func writeDueJSON(w *bytes.Buffer, due []fieldsync.DuePatient) error {
	if len(due) == 0 {
		w.WriteString("[]\n")
		return nil
	}
	w.WriteString("[\n")
	for i, d := range due {
		j := dueJSON{
			PersonID: d.PersonID, Name: d.Name, AreaCode: d.AreaCode, HouseholdID: d.HouseholdID,
			Disease: d.Disease.String(), DueOn: d.DueOn.Format(time.DateOnly), DaysOverdue: d.DaysOverdue,
			Reason: d.Reason.String(), UrgentReferral: d.Reason == fieldsync.DueUrgentReferral,
			LastFollowUpID: d.LastFollowUpID,
		}
		if d.LastFollowUpID != "" {
			on := d.LastFollowedUpAt.In(survey.ChinaTime).Format(time.DateOnly)
			j.LastFollowedUpOn = &on
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		w.WriteString("  ")
		w.Write(b)
		if i < len(due)-1 {
			w.WriteByte(',')
		}
		w.WriteByte('\n')
	}
	w.WriteString("]\n")
	return nil
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
	dayFlag := fs.String("day", "", "`date` (YYYY-MM-DD, China time) to judge deadlines on (default today)")
	asJSON := fs.Bool("json", false, "print a JSON array of the problems, one a line")
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
			return fmt.Errorf("device problems: --day %q: want YYYY-MM-DD", *dayFlag)
		}
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
		if *asJSON {
			return printRecords(stdout, recs, true, "")
		}
		var buf bytes.Buffer
		critical, overdue := 0, 0
		for i, p := range ps {
			if p.GetSeverity() == fieldsyncv1.Severity_SEVERITY_CRITICAL {
				critical++
			}
			marker := ""
			if days, late := survey.ProblemOverdue(p, survey.Today(day)); late {
				overdue++
				marker = fmt.Sprintf("OVERDUE %4d days", days)
			}
			fmt.Fprintf(&buf, "%-17s  %s  %-12s  %s\n", marker, p.GetId(), p.GetAreaCode(), summary(recs[i]))
		}
		fmt.Fprintf(&buf, "%s, %d critical, %d overdue on %s\n", plural(len(ps), "open problem"), critical, overdue, day.Format(time.DateOnly))
		_, err = stdout.Write(buf.Bytes())
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
