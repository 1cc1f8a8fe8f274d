package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// deviceStatusJSON is one device as 'admin status --json' prints it.
type deviceStatusJSON struct {
	ReplicaID string     `json:"replica_id"`
	Name      string     `json:"name"`
	Areas     []string   `json:"areas"`
	Revoked   bool       `json:"revoked"`
	Relay     bool       `json:"relay,omitempty"`
	LastSeen  *time.Time `json:"last_seen"`
	LastSync  *time.Time `json:"last_sync"`
	Pending   int32      `json:"pending"`
	Lag       uint64     `json:"lag"`
	LagCapped bool       `json:"lag_capped,omitempty"`
	LastError string     `json:"last_error"`
}

// runAdminStatus is 'fieldsync admin status': each device's last sync,
// pending changes, lag and last error.
func runAdminStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a adminFlags
	fs := flag.NewFlagSet("admin status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: fieldsync admin status [--json]\n\nFor each device (and each township relaying to a county): when it last synced,\nhow many changes it still has to send, how many changes of its areas it has\nnot pulled yet (lag), and its last error. A township relaying to its county\nalso shows its uplink: last sync, changes not yet at the county, last error.\n\nflags:\n")
		fs.PrintDefaults()
	}
	a.register(fs)
	asJSON := fs.Bool("json", false, "print JSON, one device a line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.SyncStatus(ctx, &fieldsyncv1.SyncStatusRequest{})
		if err != nil {
			return fmt.Errorf("admin status: %w", err)
		}
		for _, d := range resp.GetDevices() {
			j := deviceStatusJSON{
				ReplicaID: formatReplicaID(d.GetReplicaId()), Name: d.GetName(), Areas: d.GetAreaPrefixes(), Revoked: d.GetRevoked(), Relay: d.GetRelay(),
				Pending: d.GetPendingChanges(), Lag: d.GetLag(), LagCapped: d.GetLagCapped(), LastError: d.GetLastError(),
			}
			if d.GetLastSeen() != nil {
				t := d.GetLastSeen().AsTime()
				j.LastSeen = &t
			}
			if d.GetLastSync() != nil {
				t := d.GetLastSync().AsTime()
				j.LastSync = &t
			}
			if *asJSON {
				b, err := json.Marshal(j)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\n", b)
				continue
			}
			last := "never"
			if j.LastSync != nil {
				last = j.LastSync.Local().Format("2006-01-02 15:04 MST")
			}
			lag := fmt.Sprint(j.Lag)
			if j.LagCapped {
				lag += "+"
			}
			state := "active"
			if j.Relay {
				state = "relay"
			}
			if j.Revoked {
				state = "revoked"
			}
			fmt.Fprintf(stdout, "%s  %-7s  %-20s  last sync %s, %d pending, %s behind", j.ReplicaID, state, strings.Join(j.Areas, ","), last, j.Pending, lag)
			if j.LastError != "" {
				fmt.Fprintf(stdout, ", last error: %s", j.LastError)
			}
			fmt.Fprintf(stdout, "  %s\n", j.Name)
		}
		up := resp.GetUpstream()
		if *asJSON {
			if up != nil {
				b, err := json.Marshal(upstreamStatusJSON(up))
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\n", b)
			}
			return nil
		}
		fmt.Fprintf(stdout, "%d devices; server log at position %d\n", len(resp.GetDevices()), resp.GetLogEnd())
		if up != nil {
			j := upstreamStatusJSON(up)
			last := "never"
			if j.LastSync != nil {
				last = j.LastSync.Local().Format("2006-01-02 15:04 MST")
			}
			fmt.Fprintf(stdout, "upstream %s: last sync %s, %d changes not yet at the county", j.Upstream, last, j.Pending)
			if j.LastError != "" {
				fmt.Fprintf(stdout, ", last error: %s", j.LastError)
			}
			fmt.Fprintln(stdout)
		}
		return nil
	})
}

// upstreamJSON is the township's uplink as 'admin status --json' prints it,
// on its own line after the devices.
type upstreamJSON struct {
	Upstream    string     `json:"upstream"`
	LastSync    *time.Time `json:"last_sync"`
	LastAttempt *time.Time `json:"last_attempt"`
	Pending     uint64     `json:"pending"`
	LastError   string     `json:"last_error"`
}

func upstreamStatusJSON(up *fieldsyncv1.UpstreamStatus) upstreamJSON {
	j := upstreamJSON{Upstream: up.GetAddress(), Pending: up.GetPendingChanges(), LastError: up.GetLastError()}
	if up.GetLastSync() != nil {
		t := up.GetLastSync().AsTime()
		j.LastSync = &t
	}
	if up.GetLastAttempt() != nil {
		t := up.GetLastAttempt().AsTime()
		j.LastAttempt = &t
	}
	return j
}
