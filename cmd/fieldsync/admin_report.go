package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/internal/reportfile"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

const reportUsage = `usage: fieldsync admin report [--area CODE] [--by township|village] [--as-of YYYY-MM-DD]
                              [--campaign NAME] [--health-check-from YYYY-MM-DD]
                              [--format table|json|csv|xlsx] [--out FILE]
       fieldsync admin report list KEY [--area CODE] [--as-of YYYY-MM-DD] [--campaign NAME]
                              [--format table|json|csv] [--out FILE]

report prints the indicators (指标) of an area of the server and of the areas
below it, as of a day: contract and service rates, health records and checks,
一人一策, hypertension and diabetes standard management, follow-ups due and
overdue, visit coverage of the campaign, clinic compliance (overall and per
item), policy awareness, satisfaction, the problem ledger, people flagged for
return-to-poverty risk, devices not synced for 3 days, and the three batches
(三个一批). The README ("Indicators") defines each key.

--area is a county (6 digits), township (9) or village (12) code; the
server's own area by default. --by is the lowest level of rows (village by
default). --as-of is a day in China time (today by default; not later).
--campaign names the campaign visit_coverage counts (by default, that of the
latest visit of the area); --health-check-from the first day of
health_check_rate's period (by default 1 January of the as-of year; give the
start of a longer campaign to count checks since then).

--format table (the default) prints each area's indicators as rates with
their numerator and denominator, or counts; json the server's answer; csv the
long format, one line per area and indicator, with the columns
area_code,area_name,level,as_of,indicator,numerator,denominator,value (value a
decimal fraction for a rate, the count for a count, empty when the
denominator is 0); xlsx a workbook (needs --out) with one sheet per level
(县, 乡镇, 村), one row per area and one column per indicator, Chinese headers
with the keys beneath, rates as percentages. --out FILE writes to FILE instead
of standard output.

'report list KEY' prints the units behind an indicator's number in the area:
for a rate, those not achieving it (people without a valid contract,
households not visited in the campaign, clinics failing an item); for a
count, those counted (patients overdue, open problems, devices not synced).
Each line gives the village, the kind, the id, the name (a person's, the head
of household's, the clinic's, the problem's item or the device's), the masked
ID number of a person and why it is listed. --format csv prints the columns
area_code,area_name,kind,id,name,masked_id,detail; json an array.
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// runAdminReport is 'fieldsync admin report'.
func runAdminReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "list" {
		return runAdminReportList(ctx, args[1:], stdout, stderr)
	}
	var a adminFlags
	fs := flag.NewFlagSet("admin report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reportUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	area := fs.String("area", "", "county, township or village `code` (default: the server's area)")
	by := fs.String("by", "village", "lowest `level` of rows: county, township or village")
	asOf := fs.String("as-of", "", "the `day` (YYYY-MM-DD, China time; default today)")
	campaign := fs.String("campaign", "", "the `campaign` visit_coverage counts (default: the latest visit's)")
	checkFrom := fs.String("health-check-from", "", "first `day` of health_check_rate's period (YYYY-MM-DD; default 1 January of the as-of year)")
	format := fs.String("format", "table", "`format`: table, json, csv or xlsx")
	out := fs.String("out", "", "write to `file` instead of standard output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("admin report: unexpected argument %q: want only flags", fs.Arg(0))
	}
	if _, err := indicators.ParseLevel(*by); err != nil {
		return fmt.Errorf("admin report: --by: %w", err)
	}
	switch *format {
	case "table", "json", "csv":
	case "xlsx":
		if *out == "" {
			return errors.New("admin report: --format xlsx needs --out FILE")
		}
	default:
		return fmt.Errorf("admin report: --format %q: want table, json, csv or xlsx", *format)
	}
	req := &fieldsyncv1.IndicatorsRequest{AreaCode: *area, Depth: *by, Campaign: *campaign}
	var err error
	if req.AsOf, err = parseDay("--as-of", *asOf); err != nil {
		return fmt.Errorf("admin report: %w", err)
	}
	if req.HealthCheckFrom, err = parseDay("--health-check-from", *checkFrom); err != nil {
		return fmt.Errorf("admin report: %w", err)
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.Indicators(ctx, req)
		if err != nil {
			return fmt.Errorf("admin report: %w", err)
		}
		var buf bytes.Buffer
		switch *format {
		case "table":
			writeReportTable(&buf, resp)
		case "json":
			b, err := protojsonIndent(resp)
			if err != nil {
				return err
			}
			buf.Write(b)
		case "csv":
			if err := reportfile.IndicatorsCSV(&buf, resp, indicators.Keys()); err != nil {
				return err
			}
		case "xlsx":
			if err := reportfile.IndicatorsXLSX(&buf, resp, indicators.Keys()); err != nil {
				return fmt.Errorf("admin report: %w", err)
			}
		}
		if *out == "" {
			_, err := stdout.Write(buf.Bytes())
			return err
		}
		if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
			return fmt.Errorf("admin report: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s: %d areas as of %s\n", *out, len(resp.GetRows()), survey.FormatDate(resp.GetAsOf()))
		return nil
	})
}

// writeReportTable writes each area's indicators, one a line: the key, the
// Chinese name, and the rate with its numerator and denominator, or the count.
func writeReportTable(w *bytes.Buffer, resp *fieldsyncv1.IndicatorsResponse) {
	fmt.Fprintf(w, "indicators as of %s", survey.FormatDate(resp.GetAsOf()))
	if resp.GetCampaign() != "" {
		fmt.Fprintf(w, ", campaign %s", resp.GetCampaign())
	}
	fmt.Fprintln(w)
	for _, r := range resp.GetRows() {
		fmt.Fprintf(w, "\n%s %s %s\n", r.GetLevel(), r.GetAreaCode(), r.GetAreaName())
		for _, v := range r.GetValues() {
			def, _ := indicators.Lookup(indicators.Key(v.GetKey()))
			name := def.Name
			if strings.Contains(v.GetKey(), ".") {
				name = "  " + name
			}
			var fig string
			switch {
			case !v.GetRate():
				fig = strconv.FormatInt(v.GetNumerator(), 10)
			case v.GetDenominator() == 0:
				fig = "-"
			default:
				fig = fmt.Sprintf("%s %% (%d/%d)", indicators.Percent(v.GetNumerator(), v.GetDenominator()), v.GetNumerator(), v.GetDenominator())
			}
			fmt.Fprintf(w, "  %-46s %s\t%s\n", v.GetKey(), fig, name)
		}
	}
}

// writeFileAtomic writes b into a new file beside path, syncs it and renames
// it over path, readable by its owner only.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// protojsonIndent is the server's answer as indented JSON, every field shown
// (a zero numerator too), with the proto's field names.
func protojsonIndent(resp *fieldsyncv1.IndicatorsResponse) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(resp)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// parseDay reads flag's value, a day in China time (YYYY-MM-DD); nil for "".
func parseDay(flag, s string) (*fieldsyncv1.Date, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.ParseInLocation(time.DateOnly, s, survey.ChinaTime)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want YYYY-MM-DD", flag, s)
	}
	return survey.Today(t), nil
}

// runAdminReportList is 'fieldsync admin report list KEY'.
func runAdminReportList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a adminFlags
	fs := flag.NewFlagSet("admin report list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reportUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	area := fs.String("area", "", "county, township or village `code` (default: the server's area)")
	asOf := fs.String("as-of", "", "the `day` (YYYY-MM-DD, China time; default today)")
	campaign := fs.String("campaign", "", "the `campaign` visit_coverage counts (default: the latest visit's)")
	format := fs.String("format", "table", "`format`: table, json or csv")
	out := fs.String("out", "", "write to `file` instead of standard output")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("admin report list: give one indicator KEY (for example followups_overdue)")
	}
	if _, ok := indicators.Lookup(indicators.Key(pos[0])); !ok {
		return fmt.Errorf("admin report list: %q is not an indicator key: see 'fieldsync admin report' for the keys", pos[0])
	}
	switch *format {
	case "table", "json", "csv":
	default:
		return fmt.Errorf("admin report list: --format %q: want table, json or csv", *format)
	}
	req := &fieldsyncv1.IndicatorsRequest{AreaCode: *area, Depth: "village", Campaign: *campaign, ListKey: pos[0]}
	if req.AsOf, err = parseDay("--as-of", *asOf); err != nil {
		return fmt.Errorf("admin report list: %w", err)
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		resp, err := c.Indicators(ctx, req)
		if err != nil {
			return fmt.Errorf("admin report list: %w", err)
		}
		names := reportfile.RowNames(resp)
		var buf bytes.Buffer
		switch *format {
		case "table":
			for _, it := range resp.GetItems() {
				fmt.Fprintf(&buf, "%s %s  %-9s  %s  %s  %s  %s\n", it.GetAreaCode(), names[it.GetAreaCode()], it.GetKind(),
					orDash(it.GetName()), orDash(it.GetMaskedId()), it.GetDetail(), it.GetId())
			}
			fmt.Fprintf(&buf, "%d listed for %s as of %s\n", len(resp.GetItems()), pos[0], survey.FormatDate(resp.GetAsOf()))
		case "json":
			if err := writeJSONLines(&buf, resp.GetItems(), func(it *fieldsyncv1.IndicatorItem) ([]byte, error) {
				b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(it)
				if err != nil {
					return nil, err
				}
				var line bytes.Buffer
				err = json.Compact(&line, b)
				return line.Bytes(), err
			}); err != nil {
				return err
			}
		case "csv":
			if err := reportfile.ListCSV(&buf, resp, resp.GetItems()); err != nil {
				return err
			}
		}
		if *out == "" {
			_, err := stdout.Write(buf.Bytes())
			return err
		}
		if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
			return fmt.Errorf("admin report list: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s: %d listed\n", *out, len(resp.GetItems()))
		return nil
	})
}
