package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

const userUsage = `usage: fieldsync admin user add --name NAME --area CODE [--role county|township] [--json]
       fieldsync admin user list [--json]
       fieldsync admin user remove NAME [flags]

user manages the staff who sign in to the server's read-only web page
(fieldsyncd serve --http): county staff read a county (--area of 6 digits) and
its townships and villages, township staff a township (9 digits) and its
villages. add prints a new random password once: hand it to the member; the
server keeps only its hash, and a lost password is replaced by removing the
member and adding them again. remove ends the member's sessions at once. add
and remove are recorded in the audit trail by the credential's id, not the name.
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// staffJSON is a staff member as 'admin user list --json' prints it.
type staffJSON struct {
	Name      string `json:"name"`
	Area      string `json:"area"`
	Role      string `json:"role"`
	CreatedAt string `json:"created_at,omitempty"`
	Password  string `json:"password,omitempty"`
}

// roleWord is the word of a staff role: "county", "township".
func roleWord(r fieldsyncv1.StaffRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "STAFF_ROLE_"))
}

func runAdminUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "list" && args[0] != "remove") {
		fmt.Fprint(stderr, userUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("admin user: want add, list or remove")
	}
	var a adminFlags
	fs := flag.NewFlagSet("admin user "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, userUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	switch args[0] {
	case "add":
		name := fs.String("name", "", "the `name` the member signs in with")
		area := fs.String("area", "", "the area `code` the member reads: a county's 6 digits or a township's 9")
		role := fs.String("role", "", "county or township (default: from the area's length)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *name == "" || *area == "" || fs.NArg() > 0 {
			return errors.New("admin user add: --name and --area are required, and nothing else")
		}
		r, err := parseRole(*role)
		if err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
			resp, err := c.AddStaff(ctx, &fieldsyncv1.AddStaffRequest{Name: *name, AreaCode: *area, Role: r})
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(staffJSON{Name: *name, Area: *area, Role: roleWord(resp.GetRole()), Password: resp.GetPassword()})
			}
			fmt.Fprintf(stdout, "staff %s (%s, %s) may sign in to the web page\npassword (shown once): %s\n", *name, roleWord(resp.GetRole()), *area, resp.GetPassword())
			return nil
		})
	case "list":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
			resp, err := c.ListStaff(ctx, &fieldsyncv1.ListStaffRequest{})
			if err != nil {
				return err
			}
			return printStaff(stdout, resp.GetStaff(), *asJSON)
		})
	}
	rest, name := args[1:], ""
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") { // NAME before the flags
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if name == "" || fs.NArg() > 0 {
		return errors.New("admin user remove: give one NAME")
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		if _, err := c.RemoveStaff(ctx, &fieldsyncv1.RemoveStaffRequest{Name: name}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "staff %s removed; their web sessions have ended\n", name)
		return nil
	})
}

// parseRole reads --role: county, township, or "" for the area's.
func parseRole(role string) (fieldsyncv1.StaffRole, error) {
	if role == "" {
		return fieldsyncv1.StaffRole_STAFF_ROLE_UNSPECIFIED, nil
	}
	v, ok := fieldsyncv1.StaffRole_value["STAFF_ROLE_"+strings.ToUpper(role)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("admin user add: --role %q: want county or township", role)
	}
	return fieldsyncv1.StaffRole(v), nil
}

// printStaff prints the staff list as a table, or JSON lines.
func printStaff(stdout io.Writer, staff []*fieldsyncv1.StaffInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, m := range staff {
			created := m.GetCreatedAt().AsTime().In(survey.ChinaTime).Format(time.RFC3339)
			if err := enc.Encode(staffJSON{Name: m.GetName(), Area: m.GetAreaCode(), Role: roleWord(m.GetRole()), CreatedAt: created}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tAREA\tCREATED")
	for _, m := range staff {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.GetName(), roleWord(m.GetRole()), m.GetAreaCode(), m.GetCreatedAt().AsTime().In(survey.ChinaTime).Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}
