package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

const auditUsage = `usage: fieldsync admin audit [--since DURATION|DATE] [--json]

audit lists the server's audit trail, oldest first: every admin action taken
there (device_add, device_revoke, device_replace, record_move,
conflict_resolve, problem_verify, problem_reopen, backup, and rules_change when
the server started with other survey rules) and, at a county, those its townships
relayed. Each line shows the time (China Standard Time, RFC 3339), the server
that recorded it (the first 8 hex digits of its replica id), the action, who
took it, from where (the caller's address, or local), what it acted on (a
replica, record, problem or conflict id, or the areas of a new device's code)
and a short description. No entry holds a name of a person, an ID number, a
token or an enrolment code.

--since shows only the entries of the last DURATION (24h, 168h) or from DATE on
(YYYY-MM-DD in China time, or an RFC 3339 time). --json prints a JSON array,
one entry a line, with the keys at, recorded_by, sequence, action, who,
admin_token, from, target and detail.

Each entry names the operator this CLI sends: $FIELDSYNC_OPERATOR, or else the
OS user. What authenticates the action is the admin token (admin_token).
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// auditJSON is one entry as 'admin audit --json' prints it.
type auditJSON struct {
	At         string `json:"at"` // RFC 3339, China Standard Time
	RecordedBy string `json:"recorded_by"`
	Sequence   uint64 `json:"sequence"`
	Action     string `json:"action"`
	Who        string `json:"who"`
	AdminToken bool   `json:"admin_token"`
	From       string `json:"from"`
	Target     string `json:"target"`
	Detail     string `json:"detail"`
}

func auditEntryJSON(e *fieldsyncv1.AuditEntry) auditJSON {
	return auditJSON{
		At: e.GetAt().AsTime().In(survey.ChinaTime).Format(time.RFC3339), RecordedBy: formatReplicaID(e.GetRecordedBy()),
		Sequence: e.GetSequence(), Action: auditAction(e.GetAction()), Who: e.GetWho(), AdminToken: e.GetAdminToken(),
		From: e.GetFrom(), Target: e.GetTarget(), Detail: e.GetDetail(),
	}
}

// auditAction is the stable word of an action, as the server keeps it:
// "device_add"; "action_N" for one this build does not know.
func auditAction(a fieldsyncv1.AuditAction) string {
	if name, ok := fieldsyncv1.AuditAction_name[int32(a)]; ok {
		return strings.ToLower(strings.TrimPrefix(name, "AUDIT_ACTION_"))
	}
	return "action_" + strconv.Itoa(int(a))
}

// parseSince reads --since: a duration back from now, a date (China time) or
// an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: give a positive duration", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, survey.ChinaTime); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (24h), a date (YYYY-MM-DD) or an RFC 3339 time", s)
}

// runAdminAudit is 'fieldsync admin audit'.
func runAdminAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a adminFlags
	fs := flag.NewFlagSet("admin audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	sinceFlag := fs.String("since", "", "only entries of the last `DURATION` (24h) or from DATE (YYYY-MM-DD, China time) on")
	asJSON := fs.Bool("json", false, "print a JSON array, one entry a line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("admin audit: unexpected argument %q: want only flags", fs.Arg(0))
	}
	req := &fieldsyncv1.ListAuditRequest{}
	if *sinceFlag != "" {
		since, err := parseSince(*sinceFlag, time.Now())
		if err != nil {
			return fmt.Errorf("admin audit: %w", err)
		}
		req.Since = timestamppb.New(since)
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		var entries []*fieldsyncv1.AuditEntry
		for {
			resp, err := c.ListAudit(ctx, req)
			if err != nil {
				return fmt.Errorf("admin audit: %w", err)
			}
			entries = append(entries, resp.GetEntries()...)
			if len(resp.GetNextPageToken()) == 0 {
				break
			}
			if bytes.Equal(resp.GetNextPageToken(), req.GetPageToken()) {
				return errors.New("admin audit: the server sent the same page token twice")
			}
			req.PageToken = resp.GetNextPageToken()
		}
		var buf bytes.Buffer
		if *asJSON {
			if err := writeAuditJSON(&buf, entries); err != nil {
				return err
			}
		} else {
			writeAuditTable(&buf, entries)
		}
		_, err := stdout.Write(buf.Bytes())
		return err
	})
}

// writeAuditTable writes one line per entry, then how many there are.
func writeAuditTable(w *bytes.Buffer, es []*fieldsyncv1.AuditEntry) {
	for _, e := range es {
		j := auditEntryJSON(e)
		by := j.RecordedBy
		if len(by) > 8 {
			by = by[:8]
		}
		fmt.Fprintf(w, "%s  %-8s  %-16s  %-12s  %-21s  %s  %s\n", j.At, by, j.Action, orDash(j.Who), orDash(j.From), orDash(j.Target), j.Detail)
	}
	fmt.Fprintln(w, auditCount(len(es)))
}

// auditCount is "1 entry", "2 entries".
func auditCount(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

// writeAuditJSON writes es as a JSON array, one entry a line.
func writeAuditJSON(w *bytes.Buffer, es []*fieldsyncv1.AuditEntry) error {
	return writeJSONLines(w, es, func(e *fieldsyncv1.AuditEntry) ([]byte, error) { return json.Marshal(auditEntryJSON(e)) })
}
