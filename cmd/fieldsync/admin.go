package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

const adminUsage = `usage: fieldsync admin device add --area CODE [--area CODE...] --name NAME [--relay]
       fieldsync admin device list [--json]
       fieldsync admin device replace [--area CODE...] [--ttl D] REPLICA_ID
       fieldsync admin device revoke [flags] REPLICA_ID
       fieldsync admin device rebind [flags] REPLICA_ID --to TOWNSHIP_REPLICA_ID
       fieldsync admin status [--json]
       fieldsync admin conflicts list [--area PREFIX] [--json]
       fieldsync admin conflicts resolve [flags] ID (--keep N | --value JSON [--kind KIND])
       fieldsync admin move [flags] RECORD_ID --to VILLAGE [--json]
       fieldsync admin problems [--area PREFIX] [--overdue] [--severity critical|normal] [--all] [--as-of DATE] [--json | --csv]
       fieldsync admin problems verify|reopen [flags] ID --worker WORKER_ID [--reason TEXT]
       fieldsync admin audit [--since DURATION|DATE] [--json]
       fieldsync admin report [--area CODE] [--by township|village] [--as-of DATE] [--format table|json|csv|xlsx] [--out FILE]
       fieldsync admin report list KEY [--area CODE] [--as-of DATE] [--format table|json|csv]
       fieldsync admin areas import [--replace] FILE
       fieldsync admin backup --out FILE
       fieldsync admin user add --name NAME --area CODE [--role county|township] | list [--json] | remove NAME

Every admin command takes --server ADDR (default 127.0.0.1:7443), --token-file FILE
(default data/admin.token, written by fieldsyncd) and --ca FILE (the CA certificate
of the server's TLS certificate; without it a loopback server is reached in plaintext
and any other with the system's roots). Every call names its operator to the server,
for the audit trail ('admin audit'): $FIELDSYNC_OPERATOR, or else the OS user.

At a county, 'device add --relay --area TOWNSHIP' issues the code a township server
enrols with ('fieldsyncd enroll-upstream'), so that it relays its phones' changes.
A phone's changes are taken from the township that first relayed one of them;
'device rebind REPLICA_ID --to TOWNSHIP_REPLICA_ID' hands the phone to another
township (one re-enrolled there), and is recorded in the audit trail.

A replica that is enrolled (or revoked) cannot be enrolled again with a new code:
'device replace REPLICA_ID' issues the code that does it, with the device's name and
areas. The same phone (restored from a backup, or after a revocation) keeps its
history and pushes its unsent work; a new phone takes the device's place and the old
one is revoked.
`

// adminFlags are the connection flags of every admin command.
type adminFlags struct {
	server, tokenFile, ca string
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", "127.0.0.1:7443", "server `address`")
	fs.StringVar(&a.tokenFile, "token-file", "data/admin.token", "admin token `file` written by fieldsyncd")
	fs.StringVar(&a.ca, "ca", "", "CA certificate `file` for a TLS server (system roots if empty)")
}

// dial connects to the server: plaintext on loopback, TLS elsewhere. It
// returns the connection and a context carrying the admin token.
func (a *adminFlags) dial(ctx context.Context) (*grpc.ClientConn, context.Context, error) {
	token, err := os.ReadFile(a.tokenFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read admin token: %w (on the server machine it is in fieldsyncd's data directory)", err)
	}
	creds, err := transport(a.server, a.ca)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(a.server, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, err
	}
	return conn, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(token)),
		"fieldsync-operator", url.PathEscape(operator())), nil
}

// operator is who the admin commands say takes the action, for the server's
// audit trail: $FIELDSYNC_OPERATOR, or else the OS user, or "" if neither is
// known. It travels percent-encoded, since metadata values are ASCII.
func operator() string {
	if name := strings.TrimSpace(os.Getenv("FIELDSYNC_OPERATOR")); name != "" {
		return name
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// transport is TLS, except for a loopback address without a CA file, which
// is plaintext (development). The device commands use the same rule.
func transport(addr, caFile string) (credentials.TransportCredentials, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); caFile == "" && (host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	return credentials.NewTLS(cfg), nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if run, ok := adminCommands[args[0]]; ok {
			return run(ctx, args[1:], stdout, stderr)
		}
	}
	if len(args) < 2 || args[0] != "device" {
		fmt.Fprint(stderr, adminUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("admin: want 'device add', 'device list', 'device replace', 'device revoke', 'device rebind', 'status', 'conflicts list', 'conflicts resolve', 'move', 'problems' or 'audit'")
	}
	var a adminFlags
	fs := flag.NewFlagSet("admin device "+args[1], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	run, ok := adminDeviceCommands[args[1]]
	if !ok {
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("admin device: unknown command %q", args[1])
	}
	return run(ctx, adminDeviceCmd{a: &a, fs: fs, args: args[2:]}, stdout)
}

// adminCommands are the admin commands other than device's, by name.
var adminCommands map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error

func init() {
	adminCommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
		"conflicts": runAdminConflicts, "status": runAdminStatus, "move": runAdminMove,
		"problems": runAdminProblems, "audit": runAdminAudit, "areas": runAdminAreas,
		"report": runAdminReport, "backup": runAdminBackup, "user": runAdminUser,
	}
}

// adminDeviceCmd is an admin device command's flags and arguments.
type adminDeviceCmd struct {
	a    *adminFlags // registered on fs: read after the parse
	fs   *flag.FlagSet
	args []string
}

// adminDeviceCommands are admin device's commands, by name.
var adminDeviceCommands = map[string]func(ctx context.Context, d adminDeviceCmd, stdout io.Writer) error{
	"add": adminDeviceAdd, "list": adminDeviceList, "replace": adminDeviceReplace, "revoke": adminDeviceRevoke, "rebind": adminDeviceRebind,
}

// adminDeviceAdd issues an enrolment code for a new phone or township.
func adminDeviceAdd(ctx context.Context, d adminDeviceCmd, stdout io.Writer) error {
	var areas stringList
	d.fs.Var(&areas, "area", "area `code` prefix the device may sync (repeatable)")
	name := d.fs.String("name", "", "device or doctor `name`")
	ttl := d.fs.Duration("ttl", 24*time.Hour, "how long the enrolment code stays valid")
	relay := d.fs.Bool("relay", false, "the code enrols a township server relaying to this county (fieldsyncd enroll-upstream), not a phone; --area is then the township's 9 digits")
	if err := d.fs.Parse(d.args); err != nil {
		return err
	}
	if len(areas) == 0 || *name == "" {
		return errors.New("admin device add: --area and --name are required")
	}
	return adminCall(ctx, *d.a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		secs := int64(ttl.Seconds())
		resp, err := c.AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{Name: *name, AreaPrefixes: areas, TtlSeconds: &secs, Relay: *relay})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enrolment code: %s\nvalid until:    %s\n", resp.GetCode(), resp.GetExpiresAt().AsTime().Local().Format("2006-01-02 15:04 MST"))
		return nil
	})
}

// adminDeviceList lists the devices enrolled here.
func adminDeviceList(ctx context.Context, d adminDeviceCmd, stdout io.Writer) error {
	asJSON := d.fs.Bool("json", false, "print JSON")
	if err := d.fs.Parse(d.args); err != nil {
		return err
	}
	return adminCall(ctx, *d.a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.ListDevices(ctx, &fieldsyncv1.ListDevicesRequest{})
		if err != nil {
			return err
		}
		return printDevices(stdout, resp.GetDevices(), *asJSON)
	})
}

// adminDeviceReplace issues a code that re-enrols a replaced phone.
func adminDeviceReplace(ctx context.Context, d adminDeviceCmd, stdout io.Writer) error {
	var areas stringList
	d.fs.Var(&areas, "area", "area `code` prefix the phone syncs from now on (repeatable; default the replaced device's)")
	ttl := d.fs.Duration("ttl", 24*time.Hour, "how long the enrolment code stays valid")
	if err := d.fs.Parse(d.args); err != nil {
		return err
	}
	if d.fs.NArg() != 1 {
		return errors.New("admin device replace: give the replica id of the device to replace (from 'admin device list')")
	}
	id, err := parseReplicaID(d.fs.Arg(0))
	if err != nil {
		return err
	}
	return adminCall(ctx, *d.a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		secs := int64(ttl.Seconds())
		resp, err := c.AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{ReplacesReplicaId: id, AreaPrefixes: areas, TtlSeconds: &secs})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enrolment code: %s\nvalid until:    %s\nreplaces:       %s (the same phone enrolling again keeps its history; a new one revokes it)\n",
			resp.GetCode(), resp.GetExpiresAt().AsTime().Local().Format("2006-01-02 15:04 MST"), d.fs.Arg(0))
		return nil
	})
}

// adminDeviceRevoke revokes a device.
func adminDeviceRevoke(ctx context.Context, d adminDeviceCmd, stdout io.Writer) error {
	if err := d.fs.Parse(d.args); err != nil {
		return err
	}
	if d.fs.NArg() != 1 {
		return errors.New("admin device revoke: give the device's replica id (from 'admin device list')")
	}
	id, err := parseReplicaID(d.fs.Arg(0))
	if err != nil {
		return err
	}
	return adminCall(ctx, *d.a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		if _, err := c.RevokeDevice(ctx, &fieldsyncv1.RevokeDeviceRequest{ReplicaId: id}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", d.fs.Arg(0))
		return nil
	})
}

// adminDeviceRebind hands a phone over to another township's relay.
func adminDeviceRebind(ctx context.Context, d adminDeviceCmd, stdout io.Writer) error {
	to := d.fs.String("to", "", "replica id of the township server (a relay enrolled here) that speaks for the phone from now on")
	pos, err := parseArgs(d.fs, d.args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *to == "" {
		return errors.New("admin device rebind: give the phone's replica id and --to TOWNSHIP_REPLICA_ID (from 'admin device list')")
	}
	id, err := parseReplicaID(pos[0])
	if err != nil {
		return err
	}
	relay, err := parseReplicaID(*to)
	if err != nil {
		return err
	}
	return adminCall(ctx, *d.a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.RebindDevice(ctx, &fieldsyncv1.RebindDeviceRequest{ReplicaId: id, RelayReplicaId: relay})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "township %s now speaks for %s", *to, pos[0])
		if prev := resp.GetPreviousRelayReplicaId(); len(prev) > 0 {
			fmt.Fprintf(stdout, " (before: %s)", formatReplicaID(prev))
		}
		fmt.Fprintln(stdout)
		return nil
	})
}

func adminCall(ctx context.Context, a adminFlags, fn func(context.Context, fieldsyncv1.AdminServiceClient) error) error {
	conn, ctx, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return fn(ctx, fieldsyncv1.NewAdminServiceClient(conn))
}

// parseReplicaID accepts a replica id as a UUID or 32 hex digits.
func parseReplicaID(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("replica id %q is not a UUID", s)
	}
	return b, nil
}

func formatReplicaID(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) != 32 {
		return h
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

type deviceJSON struct {
	ReplicaID  string    `json:"replica_id"`
	Name       string    `json:"name"`
	Areas      []string  `json:"areas"`
	EnrolledAt time.Time `json:"enrolled_at"`
	Revoked    bool      `json:"revoked"`
}

func printDevices(w io.Writer, ds []*fieldsyncv1.DeviceInfo, asJSON bool) error {
	out := make([]deviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceJSON{formatReplicaID(d.GetReplicaId()), d.GetName(), d.GetAreaPrefixes(), d.GetEnrolledAt().AsTime(), d.GetRevoked()})
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, d := range out {
		state := "active"
		if d.Revoked {
			state = "revoked"
		}
		fmt.Fprintf(w, "%s  %-8s %-20s %s  %s\n", d.ReplicaID, state, strings.Join(d.Areas, ","), d.EnrolledAt.Local().Format(time.DateOnly), d.Name)
	}
	if len(out) == 0 {
		fmt.Fprintln(w, "no devices enrolled")
	}
	return nil
}
