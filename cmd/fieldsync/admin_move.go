package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

const moveUsage = `usage: fieldsync admin move [flags] RECORD_ID --to VILLAGE [--json]

move moves household RECORD_ID, with its people, to village VILLAGE (its
12-digit code, within the server's area): one change per record, made by the
server and kept in its log like any other. The new village's devices receive
the household and its people whole at their next sync; the old village's
devices let them go at theirs.
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// adminMoveJSON is what 'admin move --json' prints.
type adminMoveJSON struct {
	Household string   `json:"household"`
	To        string   `json:"to"`
	Records   []string `json:"records"`
	Changes   []string `json:"changes"`
}

// runAdminMove is 'fieldsync admin move'.
func runAdminMove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a adminFlags
	fs := flag.NewFlagSet("admin move", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, moveUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	to := fs.String("to", "", "12-digit code of the `village` to move the household to")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *to == "" {
		fs.Usage()
		return errors.New("admin move: give one household RECORD_ID and --to VILLAGE")
	}
	id, err := wire.RecordID(pos[0])
	if err != nil {
		return fmt.Errorf("admin move: %w", err)
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.MoveRecord(ctx, &fieldsyncv1.MoveRecordRequest{RecordId: id[:], AreaCode: *to})
		if err != nil {
			return fmt.Errorf("admin move: %w", err)
		}
		out := adminMoveJSON{Household: id.String(), To: *to, Records: []string{}, Changes: []string{}}
		for _, r := range resp.GetRecordIds() {
			out.Records = append(out.Records, uuidText(r))
		}
		for _, ch := range resp.GetChangeIds() {
			out.Changes = append(out.Changes, uuidText(ch))
		}
		if *asJSON {
			b, err := json.Marshal(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", b)
			return nil
		}
		fmt.Fprintf(stdout, "moved household %s and %d people to village %s; they reach the devices at their next sync\n", out.Household, max(0, len(out.Records)-1), out.To)
		for i, r := range out.Records {
			what := "person"
			if i == 0 {
				what = "household"
			}
			change := ""
			if i < len(out.Changes) {
				change = out.Changes[i]
			}
			fmt.Fprintf(stdout, "  %-9s %s  change %s\n", what, r, change)
		}
		return nil
	})
}

// uuidText is a 16-byte id as a UUID, or its hex if it has another length.
func uuidText(b []byte) string {
	if len(b) != len(syncengine.RecordID{}) {
		return formatReplicaID(b)
	}
	return syncengine.RecordID(b).String()
}
