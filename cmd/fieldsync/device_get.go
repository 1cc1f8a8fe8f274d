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

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/wire"
)

// recordJSON is a record as 'device get --json' prints it.
type recordJSON struct {
	Kind      string          `json:"kind"`
	ID        string          `json:"id"`
	Area      string          `json:"area"`
	Record    json.RawMessage `json:"record"`
	Conflicts []conflictJSON  `json:"conflicts"`
}

func runDeviceGet(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	asJSON := fs.Bool("json", false, "print one JSON object: kind, id, area, record and conflicts")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("device get: give one record id (from 'fieldsync device list')")
	}
	id := pos[0]
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		rec, err := c.Get(ctx, id)
		if errors.Is(err, fieldsync.ErrNotFound) {
			return fmt.Errorf("device get: the replica %s holds no record %s (deleted, never saved here, or not yet synced)", *replica, id)
		}
		if err != nil {
			return fmt.Errorf("device get: %w", err)
		}
		cs, err := c.Conflicts(ctx, id)
		if err != nil {
			return fmt.Errorf("device get: %w", err)
		}
		kind := recordKind(rec)
		conflicts, err := describeConflicts(kind, cs)
		if err != nil {
			return err
		}
		body, err := marshalBody(rec)
		if err != nil {
			return err
		}
		_, area, _ := wire.Identity(rec)
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			return enc.Encode(recordJSON{kindName(kind), id, area, body, conflicts})
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, body, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		fmt.Fprintf(&buf, "%s %s in area %s: ", kindName(kind), id, area)
		if len(conflicts) == 0 {
			buf.WriteString("no open conflicts\n")
		} else {
			fmt.Fprintf(&buf, "%d open conflicts: the record shows the first value of each; check with the people who made them and save the right one with 'fieldsync device put'\n", len(conflicts))
			for _, c := range conflicts {
				vals := make([]string, len(c.Values))
				for i, v := range c.Values {
					vals[i] = string(v)
				}
				fmt.Fprintf(&buf, "  %s: %s\n", c.Field, strings.Join(vals, "  versus  "))
			}
		}
		_, err = stdout.Write(buf.Bytes())
		return err
	})
}

func runDeviceList(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	kindFlag := fs.String("kind", "", "record `kind` to list: "+kindList)
	asJSON := fs.Bool("json", false, "print a JSON array of the records, one a line, in the form 'device put' reads")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	kind, err := parseKind(*kindFlag)
	if err != nil {
		return err
	}
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		recs, err := c.List(ctx, kind)
		if err != nil {
			return fmt.Errorf("device list: %w", err)
		}
		return printRecords(stdout, recs, *asJSON, "no "+kindName(kind)+" records in the replica")
	})
}

// printRecords prints recs as a table (id, area, summary) or a JSON array.
// none, if not empty, is the table's line when there are no records.
func printRecords(w io.Writer, recs []*fieldsyncv1.Record, asJSON bool, none string) error {
	var buf bytes.Buffer
	if asJSON {
		if err := writeJSONArray(&buf, recs); err != nil {
			return err
		}
	} else {
		for _, rec := range recs {
			id, area, err := wire.Identity(rec)
			if err != nil {
				return err
			}
			fmt.Fprintf(&buf, "%s  %-12s  %s\n", id, area, summary(rec))
		}
		if len(recs) == 0 && none != "" {
			fmt.Fprintln(&buf, none)
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func runDeviceDelete(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("device delete: give one record id (from 'fieldsync device list')")
	}
	id := pos[0]
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		err := c.Delete(ctx, id)
		switch {
		case errors.Is(err, fieldsync.ErrNotFound):
			return fmt.Errorf("device delete: the replica %s holds no record %s (deleted already, never saved here, or not yet synced)", *replica, id)
		case errors.Is(err, fieldsync.ErrOutOfScope):
			return fmt.Errorf("device delete: record %s lies outside the areas this device is enrolled for: %w", id, err)
		case err != nil:
			return fmt.Errorf("device delete: %w", err)
		}
		fmt.Fprintf(stdout, "deleted record %s; the next 'fieldsync device sync --replica %s' sends the deletion\n", id, *replica)
		return nil
	})
}
