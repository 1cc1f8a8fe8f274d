package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

const conflictsUsage = `usage: fieldsync admin conflicts list [--area PREFIX] [--json]
       fieldsync admin conflicts resolve [flags] ID (--keep N | --value JSON [--kind KIND])

list shows the open conflicts of the server's records in an area (default: the
server's whole area). Each has an ID, RECORD_ID/FIELD_NUMBER, and numbered values,
the shown one first.

resolve closes conflict ID with a change made by the server, which syncs to every
replica like any other: --keep N keeps value N as list numbered it (for a deletion
against an edit, field "existence": the deletion, or the record); --value gives a
new value as a JSON object of the record kind's message holding just that field,
e.g. --value '{"systolic_mmhg": 150}' (--kind names the record's kind, by default
the one the server lists).
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// adminConflictJSON is one conflict as 'admin conflicts list --json' prints it.
type adminConflictJSON struct {
	ID     string            `json:"id"`
	Kind   string            `json:"kind"`
	Area   string            `json:"area"`
	Field  string            `json:"field"`
	Values []json.RawMessage `json:"values"`
	By     []string          `json:"by"`
}

func runAdminConflicts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "resolve") {
		fmt.Fprint(stderr, conflictsUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("admin conflicts: want 'list' or 'resolve'")
	}
	var a adminFlags
	fs := flag.NewFlagSet("admin conflicts "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, conflictsUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	if args[0] == "list" {
		area := fs.String("area", "", "area-code `prefix` (default: the server's area)")
		asJSON := fs.Bool("json", false, "print JSON, one conflict a line")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
			resp, err := c.ListConflicts(ctx, &fieldsyncv1.ListConflictsRequest{AreaPrefix: *area})
			if err != nil {
				return fmt.Errorf("admin conflicts list: %w", err)
			}
			return printConflicts(stdout, resp, *asJSON)
		})
	}
	keep := fs.Int("keep", -1, "keep value `N` as 'conflicts list' numbers it")
	kindFlag := fs.String("kind", "", "record `kind`, with --value (default: the record's, as the server lists it)")
	value := fs.String("value", "", "new value: a JSON `object` of the kind's message with just the field")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("admin conflicts resolve: give one conflict ID (RECORD_ID/FIELD, from 'conflicts list')")
	}
	recID, field, err := parseConflictID(pos[0])
	if err != nil {
		return err
	}
	req := &fieldsyncv1.ResolveConflictRequest{RecordId: recID[:], FieldNumber: field}
	switch {
	case (*keep >= 0) == (*value != ""):
		return errors.New("admin conflicts resolve: give exactly one of --keep N and --value JSON")
	case *keep >= 0:
		req.Choice = &fieldsyncv1.ResolveConflictRequest_Keep{Keep: int32(*keep)}
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		if *value != "" {
			kind, err := conflictKind(ctx, c, recID, *kindFlag)
			if err != nil {
				return fmt.Errorf("admin conflicts resolve --value: %w", err)
			}
			v, err := fieldValueFromJSON(kind, field, *value)
			if err != nil {
				return fmt.Errorf("admin conflicts resolve --value: %w", err)
			}
			req.Choice = &fieldsyncv1.ResolveConflictRequest_Value{Value: v}
		}
		resp, err := c.ResolveConflict(ctx, req)
		if err != nil {
			return fmt.Errorf("admin conflicts resolve: %w", err)
		}
		fmt.Fprintf(stdout, "resolved %s with change %s; it reaches the devices at their next sync\n", pos[0], formatReplicaID(resp.GetChangeId()))
		return nil
	})
}

// conflictKind returns the kind named by flag, or, when flag is empty, the
// kind of record id as the server lists its conflicts.
func conflictKind(ctx context.Context, c fieldsyncv1.AdminServiceClient, id syncengine.RecordID, flag string) (fieldsyncv1.RecordKind, error) {
	if flag != "" {
		return parseKind(flag)
	}
	resp, err := c.ListConflicts(ctx, &fieldsyncv1.ListConflictsRequest{})
	if err != nil {
		return 0, err
	}
	for _, rc := range resp.GetRecords() {
		if syncengine.RecordID(rc.GetRecordId()) == id {
			return rc.GetKind(), nil
		}
	}
	return 0, fmt.Errorf("record %v has no open conflict on this server: list them with 'fieldsync admin conflicts list'", id)
}

// parseConflictID reads RECORD_ID/FIELD.
func parseConflictID(s string) (syncengine.RecordID, int32, error) {
	rec, f, ok := strings.Cut(s, "/")
	n, err := strconv.ParseInt(f, 10, 32)
	if !ok || err != nil {
		return syncengine.RecordID{}, 0, fmt.Errorf("conflict ID %q is not RECORD_ID/FIELD_NUMBER as 'conflicts list' prints it", s)
	}
	id, err := wire.RecordID(rec)
	if err != nil {
		return syncengine.RecordID{}, 0, fmt.Errorf("conflict ID %q: %w", s, err)
	}
	return id, int32(n), nil
}

// fieldValueFromJSON returns the encoding of field of kind's message read
// from a protojson object holding it.
func fieldValueFromJSON(kind fieldsyncv1.RecordKind, field int32, js string) ([]byte, error) {
	body, err := wire.NewBody(syncengine.Kind(kind))
	if err != nil {
		return nil, err
	}
	if err := protojson.Unmarshal([]byte(js), body); err != nil {
		return nil, fmt.Errorf("not a %s object: %w", kindName(kind), err)
	}
	fields, err := wire.Fields(body)
	if err != nil {
		return nil, err
	}
	if len(fields) > 1 || (len(fields) == 1 && fields[field] == nil) {
		return nil, fmt.Errorf("the object must hold field %d alone (or nothing, to clear it)", field)
	}
	return fields[field], nil
}

func printConflicts(w io.Writer, resp *fieldsyncv1.ListConflictsResponse, asJSON bool) error {
	n := 0
	for _, rc := range resp.GetRecords() {
		var id syncengine.RecordID
		copy(id[:], rc.GetRecordId())
		for _, fc := range rc.GetConflicts() {
			n++
			sc := fieldsync.Conflict{RecordID: id.String(), Field: fc.GetNumber()}
			c := adminConflictJSON{ID: fmt.Sprintf("%v/%d", id, fc.GetNumber()), Kind: kindName(rc.GetKind()), Area: rc.GetAreaCode()}
			for _, v := range fc.GetValues() {
				sc.Values = append(sc.Values, v.GetValue())
				c.By = append(c.By, formatReplicaID(v.GetDot().GetReplicaId()))
			}
			described, err := describeConflicts(rc.GetKind(), []fieldsync.Conflict{sc})
			if err != nil {
				return err
			}
			c.Field, c.Values = described[0].Field, described[0].Values
			if fc.GetNumber() == syncengine.ExistenceField {
				// A deletion against an edit: --keep the deletion or the record.
				c.Field = "existence"
				for i, v := range fc.GetValues() {
					what := "kept"
					if v.GetDeleted() {
						what = "deleted"
					}
					c.Values[i], _ = json.Marshal(fmt.Sprintf("%s (in area %s)", what, v.GetValue()))
				}
			}
			if asJSON {
				b, err := json.Marshal(c)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s\n", b)
				continue
			}
			fmt.Fprintf(w, "%s  %s  %s  %s\n", c.ID, c.Kind, c.Area, c.Field)
			for i, v := range c.Values {
				fmt.Fprintf(w, "  [%d] %s  (by %s)\n", i, v, c.By[i])
			}
		}
	}
	if !asJSON {
		fmt.Fprintf(w, "%d open conflicts\n", n)
	}
	return nil
}
