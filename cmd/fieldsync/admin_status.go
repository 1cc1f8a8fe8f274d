package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

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
	// ReportedBy and ReportedAt: for a device of a township relaying to
	// this server, the township's replica id and when it reported.
	ReportedBy string     `json:"reported_by,omitempty"`
	ReportedAt *time.Time `json:"reported_at,omitempty"`
}

func deviceStatusOf(d *fieldsyncv1.DeviceSyncStatus) deviceStatusJSON {
	j := deviceStatusJSON{
		ReplicaID: formatReplicaID(d.GetReplicaId()), Name: d.GetName(), Areas: d.GetAreaPrefixes(), Revoked: d.GetRevoked(), Relay: d.GetRelay(),
		Pending: d.GetPendingChanges(), Lag: d.GetLag(), LagCapped: d.GetLagCapped(), LastError: d.GetLastError(),
	}
	at := func(ts *timestamppb.Timestamp) *time.Time {
		if ts == nil {
			return nil
		}
		t := ts.AsTime()
		return &t
	}
	j.LastSeen, j.LastSync, j.ReportedAt = at(d.GetLastSeen()), at(d.GetLastSync()), at(d.GetReportedAt())
	if len(d.GetReportedBy()) > 0 {
		j.ReportedBy = formatReplicaID(d.GetReportedBy())
	}
	return j
}

// byTownship orders devices for 'admin status': each device of this server,
// each township followed by the devices it reported, then any reported by a
// township the list lacks. It returns how many were reported.
func byTownship(ds []*fieldsyncv1.DeviceSyncStatus) ([]deviceStatusJSON, int) {
	var own []deviceStatusJSON
	reported := map[string][]deviceStatusJSON{}
	var order []string
	n := 0
	for _, d := range ds {
		j := deviceStatusOf(d)
		if j.ReportedBy == "" {
			own = append(own, j)
			continue
		}
		if _, ok := reported[j.ReportedBy]; !ok {
			order = append(order, j.ReportedBy)
		}
		reported[j.ReportedBy] = append(reported[j.ReportedBy], j)
		n++
	}
	out := make([]deviceStatusJSON, 0, len(ds))
	for _, j := range own {
		out = append(out, j)
		out = append(out, reported[j.ReplicaID]...)
		delete(reported, j.ReplicaID)
	}
	for _, by := range order {
		out = append(out, reported[by]...)
	}
	return out, n
}

// runAdminStatus is 'fieldsync admin status': each device's last sync,
// pending changes, lag and last error.
func runAdminStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a adminFlags
	fs := flag.NewFlagSet("admin status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: fieldsync admin status [--json]\n\nFor each device (and each township relaying to a county): when it last synced,\nhow many changes it still has to send, how many changes of its areas it has\nnot pulled yet (lag), and its last error. At a county, each township's phones\nfollow it, indented, as the township last reported them: their last sync with\nthe township, pending changes and last error. A township relaying to its\ncounty also shows its uplink: last sync, changes not yet at the county, last\nerror.\n\nflags:\n")
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
		devices, reported := byTownship(resp.GetDevices())
		for _, j := range devices {
			if *asJSON {
				b, err := json.Marshal(j)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\n", b)
				continue
			}
			printDeviceStatus(stdout, j)
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
		if reported > 0 {
			fmt.Fprintf(stdout, "%d devices, and %d devices its townships reported; server log at position %d\n", len(devices)-reported, reported, resp.GetLogEnd())
		} else {
			fmt.Fprintf(stdout, "%d devices; server log at position %d\n", len(devices), resp.GetLogEnd())
		}
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

// printDeviceStatus prints a device's line of admin status (a township's
// phone indented under the township).
func printDeviceStatus(stdout io.Writer, j deviceStatusJSON) {
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
	if j.ReportedBy != "" {
		// A township's device, under the township: its syncs with
		// the township, as the township last reported them.
		fmt.Fprintf(stdout, "  %s  %-7s  %-18s  last sync %s, %d pending", j.ReplicaID, state, strings.Join(j.Areas, ","), last, j.Pending)
		if j.LastError != "" {
			fmt.Fprintf(stdout, ", last error: %s", j.LastError)
		}
		when := "at an unknown time"
		if j.ReportedAt != nil {
			when = j.ReportedAt.Local().Format("2006-01-02 15:04 MST")
		}
		fmt.Fprintf(stdout, "  (reported %s)\n", when)
		return
	}
	fmt.Fprintf(stdout, "%s  %-7s  %-20s  last sync %s, %d pending, %s behind", j.ReplicaID, state, strings.Join(j.Areas, ","), last, j.Pending, lag)
	if j.LastError != "" {
		fmt.Fprintf(stdout, ", last error: %s", j.LastError)
	}
	fmt.Fprintf(stdout, "  %s\n", j.Name)
}
