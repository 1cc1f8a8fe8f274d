package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
)

const deviceUsage = `usage: fieldsync device enroll --replica FILE --server ADDR --code CODE [--ca FILE]
       fieldsync device put --replica FILE --kind KIND --json FILE|-
       fieldsync device get --replica FILE [--json] ID
       fieldsync device delete --replica FILE ID
       fieldsync device list --replica FILE --kind KIND [--json]
       fieldsync device sync --replica FILE [--ca FILE]
       fieldsync device status --replica FILE [--json]
       fieldsync device export --replica FILE [--out FILE]
       fieldsync device due --replica FILE [--day DATE] [--json]
       fieldsync device unvisited --replica FILE --campaign NAME [--json]
       fieldsync device problems --replica FILE [--json]

The device commands do on a computer what a village doctor's phone does: keep a
replica of the village's records in one SQLite file (--replica), record survey
work in it offline, and sync it with the township server.

KIND is one of: household, person, clinic, worker, household_visit (visit),
clinic_audit (audit), follow_up, problem, risk_flag (also plural, with - for _,
or the RECORD_KIND_ enum name).

Records are read and printed as protojson: the JSON form of the kind's message
(e.g. a HouseholdVisit object), as 'device get --json' and 'device list --json'
print them.
`

// deviceCommand is one 'fieldsync device' subcommand.
type deviceCommand struct {
	usage string // the first line(s) of its --help, after "usage: "
	what  string // one sentence on what it does
	run   func(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error
}

var deviceCommands = map[string]deviceCommand{
	"enroll": {
		"fieldsync device enroll --replica FILE --server ADDR --code CODE [--ca FILE]",
		"Create the replica file (and its directory) if needed and enrol it with the\nserver, using the one-time code from 'fieldsync admin device add'. Enrolling\nagain with a new code replaces the device's areas and credentials. With\n" + envPassphraseFile + " (or " + envPassphrase + ") set, the replica's token, keys and\npeople's records are encrypted with that passphrase, and every device command\nneeds it.",
		runDeviceEnroll,
	},
	"put": {
		"fieldsync device put --replica FILE --kind KIND --json FILE|-",
		"Validate and save records of KIND read as protojson: one object of the kind's\nmessage, or an array of them. Each refused record is reported with every field\nerror and the command exits non-zero; the valid ones are saved all the same.\nMalformed JSON saves nothing.",
		runDevicePut,
	},
	"get": {
		"fieldsync device get --replica FILE [--json] ID",
		"Print the record with ID as the replica holds it (protojson), and any open\nconflicts on its fields.",
		runDeviceGet,
	},
	"delete": {
		"fieldsync device delete --replica FILE ID",
		"Delete the record with ID on the replica; the next sync sends the deletion.\nA deletion made while someone else edited the record keeps the record with\na conflict the operator settles ('fieldsync admin conflicts resolve').",
		runDeviceDelete,
	},
	"list": {
		"fieldsync device list --replica FILE --kind KIND [--json]",
		"List the replica's records of KIND: a table of id, area and summary, or with\n--json an array of the records in the form 'device put' reads.",
		runDeviceList,
	},
	"sync": {
		"fieldsync device sync --replica FILE [--ca FILE]",
		"Sync the replica with its server: push the changes made here, pull those made\nelsewhere in the device's areas. Transient failures are retried with backoff;\nprogress goes to standard error, a summary to standard output.",
		runDeviceSync,
	},
	"status": {
		"fieldsync device status --replica FILE [--json]",
		"Print the replica's sync state: its areas, the changes not yet on the server,\nthe changes the server refused with their reasons and field errors, and the\nlast sync's outcome.",
		runDeviceStatus,
	},
	"export": deviceExport,
	"due": {
		"fieldsync device due --replica FILE [--day DATE] [--json]",
		"List every hypertension and type 2 diabetes patient of the device's villages\nwhose follow-up is due on or before DATE (default today), patients never\nfollowed up included: one line per patient and disease with the due date,\ndays overdue, village, name, disease, why and the last follow-up's date;\nurgent referrals first, then the most overdue. --json prints an array of\nobjects (person_id, name, area_code, household_id, disease, due_on,\ndays_overdue, reason, urgent_referral, last_follow_up_id,\nlast_followed_up_on).",
		runDeviceDue,
	},
	"unvisited": {
		"fieldsync device unvisited --replica FILE --campaign NAME [--json]",
		"List the households not yet visited in the campaign.",
		runDeviceUnvisited,
	},
	"problems": {
		"fieldsync device problems --replica FILE [--day DATE] [--json]",
		"List the problems of the rectification ledger not yet verified, critical\nfirst, then by deadline. An OPEN problem whose deadline is before DATE\n(default today, China time) is marked OVERDUE with the days past its deadline;\na RECTIFIED one awaits verification and is not overdue. --json prints the\nproblem records, as 'device put' reads them.",
		runDeviceProblems,
	},
}

func runDevice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, deviceUsage)
		if len(args) == 0 {
			return errors.New("device: no command given")
		}
		return nil
	}
	cmd, ok := deviceCommands[args[0]]
	if !ok {
		fmt.Fprint(stderr, deviceUsage)
		return fmt.Errorf("device: unknown command %q", args[0])
	}
	fs := flag.NewFlagSet("device "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\n%s\n\nflags:\n", cmd.usage, cmd.what)
		fs.PrintDefaults()
	}
	return cmd.run(ctx, fs, args[1:], stdout, stderr)
}

// replicaFlag registers --replica on fs.
func replicaFlag(fs *flag.FlagSet) *string {
	return fs.String("replica", "data/replica.db", "device replica `file`")
}

// parseArgs parses args with fs, allowing flags after positional arguments
// (fieldsync device get ID --replica FILE), and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// openReplica opens an existing replica. It refuses to create one: only
// enroll does, so a mistyped --replica does not make an empty replica.
func openReplica(ctx context.Context, path string, opts ...fieldsync.Option) (*fieldsync.Client, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no replica at %s: give --replica, or create one with 'fieldsync device enroll'", path)
	} else if err != nil {
		return nil, err
	}
	secret, err := passphraseOptions()
	if err != nil {
		return nil, err
	}
	c, err := fieldsync.Open(ctx, path, append(secret, opts...)...)
	if errors.Is(err, fieldsync.ErrSecretsLocked) {
		return nil, fmt.Errorf("open replica %s: %w: set %s to the file holding its passphrase (or %s to the passphrase)", path, err, envPassphraseFile, envPassphrase)
	}
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", path, err)
	}
	return c, nil
}

// Environment variables that give the passphrase of the replica (its device
// token, ID-hash key and people's records): the file holding it (preferred: a
// file only its owner reads), or the passphrase itself.
const (
	envPassphraseFile = "FIELDSYNC_PASSPHRASE_FILE"
	envPassphrase     = "FIELDSYNC_PASSPHRASE"
)

// passphraseOptions returns the SDK option that encrypts the replica with the
// passphrase the environment gives, or none.
func passphraseOptions() ([]fieldsync.Option, error) {
	p := os.Getenv(envPassphrase)
	if f := os.Getenv(envPassphraseFile); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envPassphraseFile, err)
		}
		p = strings.TrimRight(string(b), "\r\n")
	}
	if p == "" {
		return nil, nil
	}
	return []fieldsync.Option{fieldsync.WithPassphrase(p)}, nil
}

// withReplica opens the replica at path, calls fn and closes the replica.
func withReplica(ctx context.Context, path string, fn func(*fieldsync.Client) error) error {
	c, err := openReplica(ctx, path)
	if err != nil {
		return err
	}
	err = fn(c)
	if cerr := c.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close replica %s: %w", path, cerr)
	}
	return err
}

// noArgs is the error for stray positional arguments.
func noArgs(fs *flag.FlagSet, pos []string) error {
	if len(pos) > 0 {
		return fmt.Errorf("%s: unexpected argument %q (flags are --name value)", fs.Name(), strings.Join(pos, " "))
	}
	return nil
}
