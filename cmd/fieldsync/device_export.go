package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
)

// deviceExport is 'fieldsync device export'.
var deviceExport = deviceCommand{
	"fieldsync device export --replica FILE [--out FILE]",
	"Write the replica's work the server does not hold as one JSON document\n" +
		"(" + fieldsync.ExportFormat + "): every change not yet acknowledged by the server and\n" +
		"every change it refused, with the fields each sets, and the current state of the\n" +
		"records they touch. It reads only the replica: it works without a network, on a\n" +
		"device the server refuses (revoked) or that never synced, and changes nothing.\n" +
		"The document goes to standard output, or with --out to a new file (mode 0600;\n" +
		"an existing file is never replaced); a summary goes to standard error. It holds\n" +
		"personal data (ID numbers only masked): keep it as carefully as the phone.",
	runDeviceExport,
}

func runDeviceExport(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	out := fs.String("out", "", "write the export to `file`, which must not exist (default: standard output)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		var sum fieldsync.ExportSummary
		dest := "standard output"
		if *out == "" {
			sum, err = c.Export(ctx, stdout)
		} else {
			dest = *out
			sum, err = exportToFile(ctx, c, *out)
		}
		if err != nil {
			return fmt.Errorf("device export: %w", err)
		}
		fmt.Fprintf(stderr, "exported %s the server does not hold (%d pending, %d refused) and %s of replica %s to %s\n",
			plural(sum.Pending+sum.Rejected, "change"), sum.Pending, sum.Rejected, plural(sum.Records, "record"), *replica, dest)
		return nil
	})
}

// exportToFile writes c's export to a new file at path: to a temporary file
// beside it first, synced, then linked into place, so that path is either
// absent or complete, and an existing file is never replaced.
func exportToFile(ctx context.Context, c *fieldsync.Client, path string) (fieldsync.ExportSummary, error) {
	if _, err := os.Lstat(path); err == nil {
		return fieldsync.ExportSummary{}, fmt.Errorf("%s already exists: give another --out, or move it away first", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fieldsync.ExportSummary{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return fieldsync.ExportSummary{}, err
	}
	defer os.Remove(tmp.Name())
	sum, err := c.Export(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fieldsync.ExportSummary{}, err
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return fieldsync.ExportSummary{}, fmt.Errorf("%s already exists: give another --out, or move it away first", path)
	} else if err != nil {
		return fieldsync.ExportSummary{}, err
	}
	return sum, nil
}
