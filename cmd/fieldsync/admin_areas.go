package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

const areasUsage = `usage: fieldsync admin areas import [--replace] FILE

areas import gives the server the names of its areas (the county, its
townships and villages), which 'admin report' and the web page show beside the
codes. FILE is CSV with two columns, the code (6, 9 or 12 digits: the
statistics bureau's codes) and the name, for example
  532523,屏边苗族自治县
  532523100,玉屏镇
  532523100201,新华村
A first line whose code is not digits is taken as a header. Names given
before for other codes are kept; --replace forgets them.
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// runAdminAreas is 'fieldsync admin areas'.
func runAdminAreas(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprint(stderr, areasUsage)
		return errors.New("admin areas: want 'import FILE'")
	}
	var a adminFlags
	fs := flag.NewFlagSet("admin areas import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, areasUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	replace := fs.Bool("replace", false, "forget the names not in FILE")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("admin areas import: give one CSV FILE")
	}
	names, err := readAreaNames(pos[0])
	if err != nil {
		return fmt.Errorf("admin areas import: %w", err)
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.SetAreaNames(ctx, &fieldsyncv1.SetAreaNamesRequest{Names: names, Replace: *replace})
		if err != nil {
			return fmt.Errorf("admin areas import: %w", err)
		}
		fmt.Fprintf(stdout, "imported %d names; the server names %d areas\n", len(names), resp.GetNames())
		return nil
	})
}

// readAreaNames reads a CSV file of codes and names.
func readAreaNames(path string) ([]*fieldsyncv1.AreaName, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 2
	r.TrimLeadingSpace = true
	var out []*fieldsyncv1.AreaName
	for line := 1; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		code := strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff") // a byte-order mark Excel writes
		if line == 1 && strings.Trim(code, "0123456789") != "" {
			continue // a header
		}
		out = append(out, &fieldsyncv1.AreaName{AreaCode: code, Name: strings.TrimSpace(rec[1])})
	}
}
