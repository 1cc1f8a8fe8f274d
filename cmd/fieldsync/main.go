// Command fieldsync is the operator and device command line of fieldsync.
//
//	fieldsync demo [--replica FILE] [--people N] [--seed N]
//	fieldsync admin device add|list|revoke [flags]
//	fieldsync admin problems [verify|reopen] [flags]
//	fieldsync admin audit [--since DURATION|DATE] [--json]
//	fieldsync admin user add|list|remove [flags]
//	fieldsync device enroll|put|get|list|sync|status|due|unvisited|problems [flags]
//
// demo generates a realistic village (survey/countygen), records it on a
// device replica exactly as a village doctor's phone would (one local change
// per record, through the sync engine, into SQLite), and prints the questions
// the doctor asks the phone each morning. The replica can then be read with
// the stock sqlite3 tool.
//
// admin manages a server with the admin token fieldsyncd writes: device add
// issues a one-time enrolment code for an area (with --relay, for a township
// server relaying to this county), device list and revoke; status shows each
// device's and township's syncs and the township's uplink; conflicts list
// and resolve settle concurrent edits; move moves a household to another
// village; problems lists the problem ledger (with --overdue, the daily
// overdue list) and verifies or reopens a problem; audit lists the audit trail
// of the admin actions taken at the server and, at a county, its townships;
// user makes, lists and removes the staff credentials of the server's web
// page (fieldsyncd serve --http).
//
// device does on a computer what a village doctor's phone does, through the
// device SDK (client-sdk/fieldsync), on a replica in one SQLite file:
//
//	fieldsync device enroll --replica FILE --server ADDR --code CODE [--ca FILE]
//	fieldsync device put --replica FILE --kind KIND --json FILE|-
//	fieldsync device get --replica FILE [--json] ID
//	fieldsync device list --replica FILE --kind KIND [--json]
//	fieldsync device sync --replica FILE [--ca FILE]
//	fieldsync device status --replica FILE [--json]
//	fieldsync device export --replica FILE [--out FILE]
//	fieldsync device due|unvisited|problems --replica FILE [--json]
//
// enroll creates the replica and enrols it with a code from 'admin device
// add'. put validates records given as protojson (one object of the kind's
// message, or an array) and saves the valid ones; each refused record is
// reported with every field error, and the command then exits non-zero.
// get and list print records in the same protojson form, so list --json
// output can be put again. sync pushes the device's changes and pulls its
// areas' changes, retrying transient failures, with progress on standard
// error. status shows the changes not yet on the server and those it
// refused, with their field errors, and how far the accepted ones have
// travelled (township, county). export writes the changes not yet on the
// server, and the records they touch, to a JSON file for an operator: the
// way out for a revoked device's work. due, unvisited and problems answer
// the doctor's daily questions.
//
// Output meant for scripts (--json) goes to standard output, diagnostics to
// standard error. Exit status is 0 on success and 2 on any error, a refused
// record included. No command prints a device token, an enrolment code it
// was given, or an ID number (records carry only its masked form and hash).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			// The device SDK's errors start with "fieldsync: " too.
			fmt.Fprintln(os.Stderr, "fieldsync:", strings.TrimPrefix(err.Error(), "fieldsync: "))
		}
		os.Exit(2)
	}
}

const usage = `usage: fieldsync COMMAND [flags]

commands:
  demo    generate a village, record it on a device replica and print the day's questions
  admin   manage a server: admin device add|list|revoke, admin status, admin conflicts list|resolve, admin move, admin problems, admin audit, admin user add|list|remove
  device  a device replica: device enroll|put|get|list|sync|status|export|due|unvisited|problems

Run 'fieldsync COMMAND --help' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "admin":
		return runAdmin(ctx, args[1:], stdout, stderr)
	case "device":
		return runDevice(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
