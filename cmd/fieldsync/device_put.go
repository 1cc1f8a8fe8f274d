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
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// stdin is what 'device put --json -' reads.
var stdin io.Reader = os.Stdin

func runDevicePut(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	replica := replicaFlag(fs)
	kindFlag := fs.String("kind", "", "record `kind` of every record in the input: "+kindList)
	input := fs.String("json", "", "`file` of protojson records: one object or an array of them; - reads standard input")
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
	if *input == "" {
		return errors.New("device put: --json FILE is required (- for standard input)")
	}
	name, data := *input, []byte(nil)
	if name == "-" {
		name = "standard input"
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("device put: %w", err)
	}
	items, err := decodeRecords(name, data, kind)
	if err != nil {
		return err
	}
	return withReplica(ctx, *replica, func(c *fieldsync.Client) error {
		return saveRecords(ctx, c, name, kind, items, stdout, stderr)
	})
}

// inputRecord is one record read from put's input.
type inputRecord struct {
	rec   *fieldsyncv1.Record
	label string // "record 3 (line 12)", or "the record" for a lone object
}

// saveRecords saves every item, reports each refused one on stderr and the
// counts on stdout. Each record is saved or refused on its own: a refused
// record does not stop the others. Only the end of ctx stops it early.
func saveRecords(ctx context.Context, c *fieldsync.Client, name string, kind fieldsyncv1.RecordKind, items []inputRecord, stdout, stderr io.Writer) error {
	saved, refused, problems, flags := 0, 0, 0, 0
	for _, it := range items {
		res, err := c.SaveRecord(ctx, it.rec)
		var verr *fieldsync.ValidationError
		switch {
		case err == nil:
			saved++
			problems += res.Problems
			flags += res.Flags
			continue
		case ctx.Err() != nil:
			fmt.Fprintf(stdout, "saved %d of %d %s records from %s before being stopped\n", saved, len(items), kindName(kind), name)
			return fmt.Errorf("device put: %s: %w", it.label, err)
		case errors.As(err, &verr):
			fmt.Fprintf(stderr, "%s: %s%s is invalid; it was not saved:\n", name, it.label, idNote(it.rec))
			printFieldErrors(stderr, "  ", verr.Fields)
		case errors.Is(err, fieldsync.ErrOutOfScope):
			areas, _ := c.Areas(ctx)
			_, area, _ := wire.Identity(it.rec)
			fmt.Fprintf(stderr, "%s: %s%s is in area %s, outside the areas this device is enrolled for (%s); it was not saved: correct area_code, or enrol the device for that area\n",
				name, it.label, idNote(it.rec), area, strings.Join(areas, ", "))
		default:
			fmt.Fprintf(stderr, "%s: %s%s was not saved: %v\n", name, it.label, idNote(it.rec), err)
		}
		refused++
	}
	fmt.Fprintf(stdout, "saved %d of %d %s records from %s", saved, len(items), kindName(kind), name)
	if problems+flags > 0 {
		fmt.Fprintf(stdout, "; raised %s and %s", plural(problems, "problem"), plural(flags, "risk flag"))
	}
	if refused > 0 {
		fmt.Fprintf(stdout, "; refused %d\n", refused)
		fmt.Fprintf(stderr, "fix what is named above and run 'fieldsync device put' again with the same file: saving a record again stores only what changed\n")
		return fmt.Errorf("device put: %d of %d records refused", refused, len(items))
	}
	fmt.Fprintln(stdout)
	if saved > 0 {
		fmt.Fprintln(stdout, "they are on this device only until 'fieldsync device sync'")
	}
	return nil
}

// idNote is " (id X)" for a record with an id, else "".
func idNote(rec *fieldsyncv1.Record) string {
	if id, _, err := wire.Identity(rec); err == nil {
		return " (id " + id.String() + ")"
	}
	return ""
}

// printFieldErrors lists field errors one a line: path, reason, message.
func printFieldErrors(w io.Writer, indent string, errs []survey.FieldError) {
	width := 0
	for _, e := range errs {
		width = max(width, utf8.RuneCountInString(e.Path))
	}
	for _, e := range errs {
		fmt.Fprintf(w, "%s%-*s  %-16s %s\n", indent, width, e.Path, reasonWord(e.Reason), e.Message)
	}
}

// reasonWord is a field error's reason code in short form: "required" for
// FIELD_ERROR_REASON_REQUIRED.
func reasonWord(r fieldsyncv1.FieldErrorReason) string {
	if r == 0 {
		return "invalid"
	}
	return strings.ReplaceAll(enumWord(r), " ", "_")
}

// decodeRecords reads data, named name in messages, as one protojson body of
// kind or a JSON array of them. A syntax error, or an element that is not a
// record of kind, is an error naming the file, line and column; then nothing
// is returned, so nothing is saved.
func decodeRecords(name string, data []byte, kind fieldsyncv1.RecordKind) ([]inputRecord, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a byte-order mark some editors write
	start := skipSpace(data, 0)
	if start == len(data) {
		return nil, fmt.Errorf("%s is empty: want a %s record in protojson, or an array of them", name, kindName(kind))
	}
	// Syntax first, over the whole input: encoding/json's Decoder reports
	// positions relative to its buffer, Unmarshal relative to the input.
	if err := checkJSON(name, data); err != nil {
		return nil, err
	}
	if data[start] != '[' {
		rec, err := decodeRecord(name, data, start, len(data), kind, "the input")
		if err != nil {
			return nil, err
		}
		return []inputRecord{{rec, "the record"}}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // [
		return nil, jsonError(name, data, err)
	}
	var out []inputRecord
	for dec.More() {
		from := skipSpace(data, int(dec.InputOffset()))
		if from < len(data) && data[from] == ',' {
			from = skipSpace(data, from+1)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, jsonError(name, data, err)
		}
		to := int(dec.InputOffset())
		rec, err := decodeRecord(name, data, from, to, kind, fmt.Sprintf("record %d", len(out)+1))
		if err != nil {
			return nil, err
		}
		line, _ := lineCol(data, from)
		out = append(out, inputRecord{rec, fmt.Sprintf("record %d (line %d)", len(out)+1, line)})
	}
	if _, err := dec.Token(); err != nil { // ]
		return nil, jsonError(name, data, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds an empty array: no records to save", name)
	}
	return out, nil
}

// protojsonPos finds the position protojson puts in its error messages.
var protojsonPos = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// protojsonPrefix is the "proto: " protojson starts its messages with (the
// space is sometimes a no-break space, on purpose).
var protojsonPrefix = regexp.MustCompile(`^proto:[\s\x{00a0}]*`)

// decodeRecord decodes data[from:to] as a body of kind, with errors at their
// line and column in data. label names the record in errors.
func decodeRecord(name string, data []byte, from, to int, kind fieldsyncv1.RecordKind, label string) (*fieldsyncv1.Record, error) {
	body, err := wire.NewBody(syncengine.Kind(kind))
	if err != nil {
		return nil, err
	}
	if err := jsonIn.Unmarshal(data[from:to], body); err != nil {
		line0, col0 := lineCol(data, from)
		line, col := line0, col0
		msg := protojsonPrefix.ReplaceAllString(err.Error(), "")
		if m := protojsonPos.FindStringSubmatch(msg); m != nil {
			l, _ := strconv.Atoi(m[1])
			c, _ := strconv.Atoi(m[2])
			line = line0 + l - 1
			if l == 1 {
				col = col0 + c - 1
			} else {
				col = c
			}
			msg = strings.TrimLeft(strings.Replace(msg, m[0], "", 1), ": \u00a0")
		}
		return nil, fmt.Errorf("%s:%d:%d: %s is not a %s record (a %s object): %s; nothing was saved", name, line, col,
			label, kindName(kind), body.ProtoReflect().Descriptor().Name(), msg)
	}
	return wire.Wrap(syncengine.Kind(kind), body)
}

// checkJSON reports a syntax error in data with its line and column.
func checkJSON(name string, data []byte) error {
	var v json.RawMessage
	if err := json.Unmarshal(data, &v); err != nil {
		return jsonError(name, data, err)
	}
	return nil
}

// jsonError places an encoding/json error in data.
func jsonError(name string, data []byte, err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		// Offset counts the bytes read, the offending one included; at the
		// end of the input there is none.
		off := int(syn.Offset) - 1
		if strings.HasPrefix(syn.Error(), "unexpected end") {
			off = len(data)
		}
		line, col := lineCol(data, off)
		return fmt.Errorf("%s:%d:%d: malformed JSON: %v; nothing was saved", name, line, col, syn)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		line, col := lineCol(data, len(data))
		return fmt.Errorf("%s:%d:%d: malformed JSON: the input ends inside a value (a missing ] or }?); nothing was saved", name, line, col)
	}
	return fmt.Errorf("%s: malformed JSON: %w; nothing was saved", name, err)
}

// lineCol is the 1-based line and column (in characters) of byte offset off
// in data.
func lineCol(data []byte, off int) (int, int) {
	off = min(max(off, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	lineStart := bytes.LastIndexByte(data[:off], '\n') + 1
	return line, utf8.RuneCount(data[lineStart:off]) + 1
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}
