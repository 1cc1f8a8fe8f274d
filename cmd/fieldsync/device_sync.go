package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	"github.com/fieldsync/fieldsync/wire"
)

// tlsFlags is the --ca flag of the commands that connect to the server.
type tlsFlags struct{ ca string }

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.ca, "ca", "", "CA certificate `file` of the server's TLS certificate (the county's CA); without it only a server on this machine (loopback, plaintext) is reachable")
}

// options returns the client options --ca asks for: TLS trusting only the
// CA in the file, or none (plaintext to loopback only).
func (f *tlsFlags) options() ([]fieldsync.Option, error) {
	if f.ca == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, fmt.Errorf("read --ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s holds no PEM certificate", f.ca)
	}
	return []fieldsync.Option{fieldsync.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})}, nil
}

// hint adds what to do to an error of connecting without the right TLS
// settings.
func (f *tlsFlags) hint(err error) error {
	switch {
	case errors.Is(err, fieldsync.ErrTLSRequired):
		return fmt.Errorf("%w (give the server's CA certificate with --ca FILE)", err)
	case f.ca == "" && strings.Contains(err.Error(), "server preface"):
		// A plaintext client gets no HTTP/2 preface from a TLS server.
		return fmt.Errorf("%w (if the server uses TLS, give its CA certificate with --ca FILE)", err)
	case f.ca != "" && strings.Contains(err.Error(), "x509:"):
		return fmt.Errorf("%w (the server's certificate is not signed by the CA in %s)", err, f.ca)
	}
	return err
}

func runDeviceEnroll(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	server := fs.String("server", "127.0.0.1:7443", "server `address` (host:port)")
	code := fs.String("code", "", "one-time enrolment `code` from 'fieldsync admin device add'")
	asJSON := fs.Bool("json", false, "print JSON: replica id, server and areas")
	var tf tlsFlags
	tf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	if strings.TrimSpace(*code) == "" {
		return errors.New("device enroll: --code is required: the server's operator issues one with 'fieldsync admin device add'")
	}
	opts, err := tf.options()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*replica), 0o700); err != nil {
		return fmt.Errorf("device enroll: %w", err)
	}
	secret, err := passphraseOptions()
	if err != nil {
		return err
	}
	if len(secret) == 0 {
		fmt.Fprintf(stderr, "fieldsync: warning: %s keeps its token and people's records in clear (a file only you can read); set %s to encrypt them\n", *replica, envPassphraseFile)
	}
	c, err := fieldsync.Open(ctx, *replica, append(secret, opts...)...)
	if err != nil {
		return fmt.Errorf("device enroll: open replica %s: %w", *replica, err)
	}
	defer c.Close()
	if err := c.Enroll(ctx, *server, strings.TrimSpace(*code)); err != nil {
		return enrolHint(tf.hint(err))
	}
	areas, err := c.Areas(ctx)
	if err != nil {
		return fmt.Errorf("device enroll: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Replica   string   `json:"replica"`
			ReplicaID string   `json:"replica_id"`
			Server    string   `json:"server"`
			Areas     []string `json:"areas"`
		}{*replica, c.Replica().String(), *server, areas})
	}
	fmt.Fprintf(stdout, "enrolled replica %s with %s for areas %s\n", *replica, *server, strings.Join(areas, ", "))
	fmt.Fprintf(stdout, "next: fieldsync device sync --replica %s\n", *replica)
	return nil
}

// enrolHint adds what to do to a refused enrolment, by the server's reason.
func enrolHint(err error) error {
	switch wire.ReasonOf(err) {
	case fieldsyncv1.Reason_REASON_INVALID_ENROLMENT_CODE:
		return fmt.Errorf("%w (the code is unknown, expired or used: ask the operator for a new one, made with 'fieldsync admin device add')", err)
	case fieldsyncv1.Reason_REASON_REPLICA_ALREADY_ENROLLED:
		return fmt.Errorf("%w (this replica is enrolled already: only the operator's replace code enrols it again, made with 'fieldsync admin device replace')", err)
	case fieldsyncv1.Reason_REASON_RATE_LIMITED:
		return fmt.Errorf("%w (too many refused codes from this address: wait, then try the right code)", err)
	}
	return err
}

func runDeviceSync(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	attempts := fs.Int("attempts", 5, "attempts in all before giving up on an unreachable server or a cut connection")
	quiet := fs.Bool("quiet", false, "print no progress lines, only the summary")
	var tf tlsFlags
	tf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	opts, err := tf.options()
	if err != nil {
		return err
	}
	opts = append(opts, fieldsync.WithRetry(fieldsync.RetryPolicy{MaxAttempts: max(*attempts, 1)}))
	c, err := openReplica(ctx, *replica, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	pp := &progressPrinter{w: stderr, every: time.Second, now: time.Now}
	var last fieldsync.Progress
	sawSnapshot := false
	err = c.Sync(ctx, fieldsync.OnProgress(func(p fieldsync.Progress) {
		last = p
		sawSnapshot = sawSnapshot || p.Snapshot
		if !*quiet {
			pp.report(p)
		}
	}))
	if errors.Is(err, fieldsync.ErrNotEnrolled) {
		return fmt.Errorf("device sync: replica %s is not enrolled: run 'fieldsync device enroll' with a code from the server's operator", *replica)
	}
	if err != nil {
		return tf.hint(fmt.Errorf("%w; what was sent or received before the error is kept, and the next sync resumes from there", err))
	}
	st, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("device sync: %w", err)
	}
	snapshot := ""
	if sawSnapshot {
		snapshot = ", starting from a snapshot of the device's areas"
	}
	fmt.Fprintf(stdout, "synced: pushed %s, %d refused; pulled %d%s; %d pending\n", plural(last.Pushed, "change"), last.Rejected, last.Pulled, snapshot, st.Pending)
	if last.Dropped > 0 {
		fmt.Fprintf(stdout, "dropped %s the server no longer has in this device's villages (moved away while it was offline)\n", plural(last.Dropped, "record"))
	}
	if len(st.Rejected) > 0 {
		fmt.Fprintf(stdout, "the server refused %s of this device: see 'fieldsync device status --replica %s'\n", plural(len(st.Rejected), "change"), *replica)
	}
	return nil
}

// progressPrinter prints a sync's progress: a line when an attempt starts
// (with a retry noted) or the phase changes, and within a phase at most one
// line every interval, so a long transfer shows its counts and a short one
// prints few lines.
type progressPrinter struct {
	w     io.Writer
	every time.Duration
	now   func() time.Time

	last    fieldsync.Progress
	printed time.Time
	started bool
}

func (pp *progressPrinter) report(p fieldsync.Progress) {
	t := pp.now()
	changed := !pp.started || p.Attempt != pp.last.Attempt || p.Phase != pp.last.Phase || p.Snapshot != pp.last.Snapshot
	if p.Phase == fieldsync.PhaseDone || (!changed && t.Sub(pp.printed) < pp.every) {
		pp.last = p
		return
	}
	pp.started, pp.last, pp.printed = true, p, t
	switch p.Phase {
	case fieldsync.PhaseConnect:
		if p.Attempt > 1 {
			fmt.Fprintf(pp.w, "sync: attempt %d: connecting again (pushed %d, pulled %d so far)\n", p.Attempt, p.Pushed, p.Pulled)
		} else {
			fmt.Fprintf(pp.w, "sync: attempt %d: connecting\n", p.Attempt)
		}
	case fieldsync.PhasePush:
		fmt.Fprintf(pp.w, "sync: attempt %d: push: %d changes sent, %d refused\n", p.Attempt, p.Pushed, p.Rejected)
	case fieldsync.PhasePull:
		what := "changes"
		if p.Snapshot {
			what = "records and changes (snapshot)"
		}
		fmt.Fprintf(pp.w, "sync: attempt %d: pull: %d %s received\n", p.Attempt, p.Pulled, what)
	default:
		fmt.Fprintf(pp.w, "sync: attempt %d: %s: pushed %d, pulled %d\n", p.Attempt, p.Phase, p.Pushed, p.Pulled)
	}
}

// statusJSON is 'device status --json'.
type statusJSON struct {
	Replica     string          `json:"replica"`
	ReplicaID   string          `json:"replica_id"`
	Enrolled    bool            `json:"enrolled"`
	Server      string          `json:"server"`
	Areas       []string        `json:"areas"`
	Pending     int             `json:"pending"`
	PendingList []pendingJSON   `json:"pending_changes"`
	Rejected    []rejectionJSON `json:"rejected"`
	LastSuccess *time.Time      `json:"last_success"`
	LastError   string          `json:"last_error"`
	// Receipts: how far the device's accepted changes have travelled.
	Upstream   bool `json:"server_has_upstream"`
	AtServer   int  `json:"accepted_by_server"`
	AtUpstream int  `json:"accepted_by_upstream"`
	// The survey rules in force on the device, and where they come from.
	Rules rulesJSON `json:"rules"`
}

type rulesJSON struct {
	Source                string  `json:"source"`
	SelfPayThresholdBP    int32   `json:"self_pay_threshold_bp"`
	MinEssentialDrugKinds int32   `json:"min_essential_drug_kinds"`
	MinFloorAreaM2        float64 `json:"min_floor_area_m2"`
	RectifyDays           int     `json:"rectify_days"`
	text                  string
}

type pendingJSON struct {
	ChangeID string `json:"change_id"`
	RecordID string `json:"record_id"`
	Kind     string `json:"kind"`
}

type rejectionJSON struct {
	ChangeID string           `json:"change_id"`
	RecordID string           `json:"record_id"`
	Outcome  string           `json:"outcome"`
	Reason   string           `json:"reason"`
	Message  string           `json:"message"`
	Fields   []fieldErrorJSON `json:"fields"`
}

type fieldErrorJSON struct {
	Path    string `json:"path"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func runDeviceStatus(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		st, err := c.Status(ctx)
		if err != nil {
			return fmt.Errorf("device status: %w", err)
		}
		areas, err := c.Areas(ctx)
		if err != nil {
			return fmt.Errorf("device status: %w", err)
		}
		rules, err := c.Rules(ctx)
		if err != nil {
			return fmt.Errorf("device status: %w", err)
		}
		source, err := c.RulesSource(ctx)
		if err != nil {
			return fmt.Errorf("device status: %w", err)
		}
		out := statusJSON{
			Replica: *replica, ReplicaID: c.Replica().String(), Enrolled: len(areas) > 0, Server: st.Server, Areas: areas,
			Pending: st.Pending, PendingList: []pendingJSON{}, Rejected: []rejectionJSON{}, LastError: st.LastError,
			Upstream: st.Upstream, AtServer: st.AtServer, AtUpstream: st.AtUpstream,
			Rules: rulesJSON{Source: source, SelfPayThresholdBP: rules.SelfPayThresholdBP, MinEssentialDrugKinds: rules.MinEssentialDrugKinds,
				MinFloorAreaM2: rules.MinFloorAreaM2, RectifyDays: rules.RectifyDays, text: rules.String()},
		}
		if out.Areas == nil {
			out.Areas = []string{}
		}
		if !st.LastSuccess.IsZero() {
			out.LastSuccess = &st.LastSuccess
		}
		for _, p := range st.PendingChanges {
			out.PendingList = append(out.PendingList, pendingJSON{p.ChangeID, p.RecordID, p.Kind})
		}
		for _, r := range st.Rejected {
			rj := rejectionJSON{ChangeID: r.ChangeID, RecordID: r.RecordID, Outcome: r.Outcome, Reason: r.Reason, Message: r.Message, Fields: []fieldErrorJSON{}}
			for _, f := range r.Fields {
				rj.Fields = append(rj.Fields, fieldErrorJSON{f.Path, f.Reason.String(), f.Message})
			}
			out.Rejected = append(out.Rejected, rj)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			return enc.Encode(out)
		}
		printStatus(stdout, out, st)
		return nil
	})
}

// printStatus prints the status for a person.
func printStatus(w io.Writer, s statusJSON, st fieldsync.Status) {
	fmt.Fprintf(w, "replica:    %s (%s)\n", s.Replica, s.ReplicaID)
	defer fmt.Fprintf(w, "rules:      %s (%s)\n", s.Rules.text, s.Rules.Source)
	if s.Enrolled {
		fmt.Fprintf(w, "server:     %s\n", s.Server)
		fmt.Fprintf(w, "areas:      %s\n", strings.Join(s.Areas, ", "))
	} else {
		fmt.Fprintf(w, "areas:      none: not enrolled; run 'fieldsync device enroll'\n")
	}
	fmt.Fprintf(w, "pending:    %s not yet acknowledged by the server\n", plural(s.Pending, "change"))
	const show = 10
	for i, p := range s.PendingList {
		if i == show {
			fmt.Fprintf(w, "            ... and %d more\n", len(s.PendingList)-show)
			break
		}
		fmt.Fprintf(w, "            %s %s\n", p.Kind, p.RecordID)
	}
	if s.Upstream {
		fmt.Fprintf(w, "accepted:   %s by the county; %s by the township only, on their way to the county\n",
			plural(s.AtUpstream, "change"), plural(s.AtServer, "change"))
	} else {
		fmt.Fprintf(w, "accepted:   %s by the server\n", plural(s.AtServer, "change"))
	}
	if s.LastSuccess != nil {
		fmt.Fprintf(w, "last sync:  %s\n", s.LastSuccess.Local().Format(time.DateTime))
	} else {
		fmt.Fprintf(w, "last sync:  never\n")
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", s.LastError)
		if st.DeviceRefused() {
			fmt.Fprintf(w, "            the server refuses this device (revoked or unknown): syncing again will not help; its unsent work stays here:\n            export it for the operator with 'fieldsync device export --replica %s --out FILE'\n", s.Replica)
		}
	}
	if len(st.Rejected) == 0 {
		fmt.Fprintf(w, "rejected:   none\n")
		return
	}
	fmt.Fprintf(w, "rejected:   %s refused by the server; the records stay on this device as they are:\n", plural(len(st.Rejected), "change"))
	for _, r := range st.Rejected {
		why := r.Outcome
		if r.Reason != "" {
			why += " (" + r.Reason + ")"
		}
		fmt.Fprintf(w, "  record %s (change %s): %s: %s\n", r.RecordID, r.ChangeID, why, r.Message)
		printFieldErrors(w, "    ", r.Fields)
	}
	fmt.Fprintf(w, "to fix one: 'fieldsync device get ID' shows the record; correct what is named above and save it again with 'fieldsync device put', and the next sync sends it\n")
}
