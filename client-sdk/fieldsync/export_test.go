package fieldsync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// exportVillage is one generated village's households, people (with their
// clear ID numbers, which must never be exported) and visits.
type exportVillage struct {
	code       string
	households []*fieldsyncv1.Record
	persons    []*fieldsyncv1.Record
	visits     []*fieldsyncv1.Record
	clearIDs   []string
}

func newExportVillage(t *testing.T) exportVillage {
	t.Helper()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 1, HouseholdsPerVillage: 6, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	v := g.County.Villages()[0]
	out := exportVillage{code: v.Code}
	err = g.EachInVillage(v, func(r *fieldsyncv1.Record) error {
		switch {
		case r.GetHousehold() != nil:
			out.households = append(out.households, r)
		case r.GetPerson() != nil:
			out.persons = append(out.persons, r)
		case r.GetHouseholdVisit() != nil:
			out.visits = append(out.visits, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range v.Households {
		for _, p := range h.Members {
			out.clearIDs = append(out.clearIDs, p.IDNumber)
		}
	}
	if len(out.households) < 4 || len(out.persons) < 6 || len(out.visits) < 2 || len(out.clearIDs) == 0 {
		t.Fatalf("village too small: %d households, %d people, %d visits", len(out.households), len(out.persons), len(out.visits))
	}
	return out
}

// exported is Export's document as a reader sees it.
type exported struct {
	Format     string    `json:"format"`
	ReplicaID  string    `json:"replica_id"`
	ExportedAt time.Time `json:"exported_at"`
	Server     string    `json:"server"`
	Areas      []string  `json:"areas"`
	LastError  string    `json:"last_error"`
	Changes    []struct {
		ChangeID  string                     `json:"change_id"`
		RecordID  string                     `json:"record_id"`
		Kind      string                     `json:"kind"`
		Area      string                     `json:"area"`
		State     string                     `json:"state"`
		Number    uint64                     `json:"number"`
		Fields    map[string]json.RawMessage `json:"fields"`
		Rejection *struct {
			Outcome     string `json:"outcome"`
			Message     string `json:"message"`
			FieldErrors []struct {
				Path string `json:"path"`
			} `json:"field_errors"`
		} `json:"rejection"`
	} `json:"changes"`
	Records []struct {
		RecordID  string          `json:"record_id"`
		Kind      string          `json:"kind"`
		Area      string          `json:"area"`
		Deleted   bool            `json:"deleted"`
		Record    json.RawMessage `json:"record"`
		Conflicts []struct {
			Field string `json:"field"`
		} `json:"conflicts"`
	} `json:"records"`
}

func export(t *testing.T, c *Client) (exported, ExportSummary, []byte) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := c.Export(t.Context(), &buf)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	var doc exported
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, buf.String())
	}
	if doc.Format != ExportFormat || doc.ReplicaID != c.Replica().String() || doc.ExportedAt.IsZero() {
		t.Errorf("export header: format %q, replica %q, at %v", doc.Format, doc.ReplicaID, doc.ExportedAt)
	}
	return doc, sum, buf.Bytes()
}

// localData is everything a replica holds that Export must leave alone.
type localData struct {
	log     [][]byte
	digests map[syncengine.RecordID][32]byte
	status  Status
}

func readLocal(t *testing.T, c *Client) localData {
	t.Helper()
	d := localData{digests: make(map[syncengine.RecordID][32]byte)}
	for _, e := range logEntries(t, c) {
		b, err := e.Change.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		d.log = append(d.log, append(fmt.Appendf(nil, "%d:", e.Pos), b...))
		r := record(t, c, e.Change.RecordID)
		d.digests[e.Change.RecordID] = r.Digest()
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d.status = st
	return d
}

func record(t *testing.T, c *Client, id syncengine.RecordID) syncengine.Record {
	t.Helper()
	r, err := c.record(t.Context(), id.String())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestExportRevokedDevice: a phone enrols, records and syncs, records more
// offline (one household edited), holds a change the server refused, and is
// revoked. Its sync is refused for good and its status says so; the export,
// made with the server gone, holds exactly the changes the server lacks with
// the records they touch, never a clear ID number, and leaves the replica as
// it was.
func TestExportRevokedDevice(t *testing.T) {
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"))
	v := newExportVillage(t)
	a := s.enrol(t, v.code, fastRetry)

	// Synced: two households with their people; one invalid household the
	// server refuses (stored bypassing validation, as an older app might).
	h0, h1, h2, h3 := v.households[0], v.households[1], v.households[2], v.households[3]
	synced := []*fieldsyncv1.Record{h0, h1, v.persons[0], v.persons[1]}
	for _, r := range synced {
		mustSave(t, a, r)
	}
	bad := proto.Clone(h2).(*fieldsyncv1.Record)
	bad.GetHousehold().HeadName = ""
	if err := a.write(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	st, err := a.Status(t.Context())
	if err != nil || st.Pending != 0 || len(st.Rejected) != 1 {
		t.Fatalf("Status after the first sync = %+v, %v; want nothing pending, one rejected", st, err)
	}

	// Offline: a new household, two people, two visits, and an edit of a
	// synced household.
	offline := []*fieldsyncv1.Record{h3, v.persons[2], v.persons[3], v.visits[0], v.visits[1]}
	for _, r := range offline {
		mustSave(t, a, r)
	}
	edited := proto.Clone(h0).(*fieldsyncv1.Record)
	edited.GetHousehold().Notes = "复查: 门牌已更换"
	mustSave(t, a, edited)

	if err := s.srv.Store().Registry().RevokeDevice(t.Context(), a.Replica()); err != nil {
		t.Fatal(err)
	}
	var log progressLog
	syncErr := a.Sync(t.Context(), log.option())
	if c := status.Code(syncErr); c != codes.Unauthenticated && c != codes.PermissionDenied {
		t.Fatalf("Sync of a revoked device = %v, want Unauthenticated or PermissionDenied", syncErr)
	}
	if got := log.maxAttempt(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
	if text := describeSyncError(syncErr); !strings.Contains(text, "revoked") || !strings.Contains(text, "exported") || !strings.HasPrefix(text, syncErr.Error()) {
		t.Errorf("describeSyncError = %q, want the error, that the device was revoked and that its work can be exported", text)
	}
	st, err = a.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !st.DeviceRefused() {
		t.Errorf("Status.DeviceRefused() = false after a refused sync; LastError %q", st.LastError)
	}
	if want := len(offline) + 1; st.Pending != want {
		t.Fatalf("Pending = %d, want %d", st.Pending, want)
	}

	// No network from here on.
	s.stop()
	before := readLocal(t, a)
	doc, sum, raw := export(t, a)
	if after := readLocal(t, a); !reflect.DeepEqual(after, before) {
		t.Errorf("Export changed the replica:\nbefore %+v\nafter  %+v", before, after)
	}

	if doc.Server != s.addr || !slices.Equal(doc.Areas, []string{v.code}) || !strings.Contains(doc.LastError, "Unauthenticated") && !strings.Contains(doc.LastError, "PermissionDenied") {
		t.Errorf("export: server %q, areas %v, last error %q", doc.Server, doc.Areas, doc.LastError)
	}
	if sum != (ExportSummary{Pending: st.Pending, Rejected: 1, Records: len(offline) + 2}) {
		t.Errorf("summary = %+v, want %d pending, 1 rejected, %d records", sum, st.Pending, len(offline)+2)
	}

	// Exactly the changes the server lacks, in log order (the refused one
	// first, then the pending ones), each as the log holds it.
	pending := make(map[string]bool)
	for _, p := range st.PendingChanges {
		pending[p.ChangeID] = true
	}
	rejected := st.Rejected[0]
	entries := make(map[string]syncengine.Entry)
	var gotIDs, wantIDs []string
	for _, e := range logEntries(t, a) {
		id := e.Change.ID.String()
		entries[id] = e
		if pending[id] || id == rejected.ChangeID {
			wantIDs = append(wantIDs, id)
		}
	}
	touched := make(map[string]bool)
	for _, ch := range doc.Changes {
		gotIDs = append(gotIDs, ch.ChangeID)
		touched[ch.RecordID] = true
		e, ok := entries[ch.ChangeID]
		if !ok {
			t.Errorf("change %s is not in the device's log", ch.ChangeID)
			continue
		}
		c := e.Change
		if ch.RecordID != c.RecordID.String() || ch.Area != c.Area || ch.Kind != kindName(fieldsyncv1.RecordKind(c.Kind)) || ch.Number != c.Dot.Counter {
			t.Errorf("change %s = %+v, want record %v, area %s, kind %d, number %d", ch.ChangeID, ch, c.RecordID, c.Area, c.Kind, c.Dot.Counter)
		}
		if len(ch.Fields) != len(c.Fields) {
			t.Errorf("change %s lists %d fields, the change sets %d", ch.ChangeID, len(ch.Fields), len(c.Fields))
		}
		switch {
		case pending[ch.ChangeID]:
			if ch.State != "pending" || ch.Rejection != nil {
				t.Errorf("pending change %s exported as %q, rejection %+v", ch.ChangeID, ch.State, ch.Rejection)
			}
		case ch.ChangeID == rejected.ChangeID:
			if ch.State != "rejected" || ch.Rejection == nil || ch.Rejection.Outcome != rejected.Outcome || ch.Rejection.Message != rejected.Message ||
				len(ch.Rejection.FieldErrors) == 0 || ch.RecordID != recordID(t, bad) {
				t.Errorf("rejected change exported as %+v, want the invalid household with its field errors", ch)
			}
		}
	}
	if !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("exported changes\n got %v\nwant %v", gotIDs, wantIDs)
	}
	// The edit, the last change, carries only what it changed, readable.
	last := doc.Changes[len(doc.Changes)-1]
	if last.RecordID != recordID(t, h0) || len(last.Fields) != 1 || string(last.Fields["notes"]) != `"复查: 门牌已更换"` {
		t.Errorf("the edit of household %s exported as %+v, want only its notes", recordID(t, h0), last)
	}

	// Each record touched, once, in its current state, in the form put reads.
	want := append(append([]*fieldsyncv1.Record{}, offline...), edited, bad)
	wantRecs := make(map[string]*fieldsyncv1.Record)
	for _, r := range want {
		wantRecs[recordID(t, r)] = r
	}
	if len(doc.Records) != len(wantRecs) || len(touched) != len(wantRecs) {
		t.Errorf("%d records exported (%d touched), want %d", len(doc.Records), len(touched), len(wantRecs))
	}
	for _, r := range doc.Records {
		w, ok := wantRecs[r.RecordID]
		if !ok {
			t.Errorf("record %s exported, which no unsent change touches", r.RecordID)
			continue
		}
		delete(wantRecs, r.RecordID)
		body, err := wire.NewBody(wire.KindOf(w))
		if err != nil {
			t.Fatal(err)
		}
		if err := protojson.Unmarshal(r.Record, body); err != nil {
			t.Errorf("record %s: %v\n%s", r.RecordID, err, r.Record)
			continue
		}
		got, err := wire.Wrap(wire.KindOf(w), body)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, w) || r.Deleted || r.Area != v.code || len(r.Conflicts) != 0 {
			t.Errorf("record %s exported as %s (deleted %v, area %s), want %v", r.RecordID, r.Record, r.Deleted, r.Area, w)
		}
	}
	for id := range wantRecs {
		t.Errorf("record %s missing from the export", id)
	}
	checkNoClearIDs(t, raw, v.clearIDs)
	if !bytes.Contains(raw, []byte("**********")) {
		t.Error("the export holds no masked ID number; the test exports no person")
	}
}

func checkNoClearIDs(t *testing.T, raw []byte, clear []string) {
	t.Helper()
	for _, id := range clear {
		if bytes.Contains(raw, []byte(id)) || bytes.Contains(raw, []byte(id[6:14])) {
			t.Errorf("the export holds the clear ID number %s…", id[:6])
		}
	}
}

// TestExportNeverSynced: a replica never enrolled exports all its work as
// pending, with no server.
func TestExportNeverSynced(t *testing.T) {
	v := newExportVillage(t)
	c := openReplica(t)
	recs := []*fieldsyncv1.Record{v.households[0], v.persons[0], v.visits[0]}
	for _, r := range recs {
		mustSave(t, c, r)
	}
	// A record with a clear ID number where the masked form goes, stored
	// bypassing validation, is masked in the export.
	leaky := proto.Clone(v.persons[1]).(*fieldsyncv1.Record)
	leaky.GetPerson().IdNumber.Masked = v.clearIDs[1]
	if err := c.write(t.Context(), leaky); err != nil {
		t.Fatal(err)
	}
	before := readLocal(t, c)
	doc, sum, raw := export(t, c)
	if after := readLocal(t, c); !reflect.DeepEqual(after, before) {
		t.Errorf("Export changed the replica")
	}
	if sum != (ExportSummary{Pending: 4, Records: 4}) || len(doc.Changes) != 4 || len(doc.Records) != 4 {
		t.Errorf("summary %+v, %d changes and %d records; want 4 pending changes of 4 records", sum, len(doc.Changes), len(doc.Records))
	}
	for _, ch := range doc.Changes {
		if ch.State != "pending" || ch.Rejection != nil {
			t.Errorf("change %s: state %q, rejection %v; want pending", ch.ChangeID, ch.State, ch.Rejection)
		}
	}
	if doc.Server != "" || len(doc.Areas) != 0 || doc.LastError != "" {
		t.Errorf("export of a replica never enrolled: server %q, areas %v, last error %q", doc.Server, doc.Areas, doc.LastError)
	}
	checkNoClearIDs(t, raw, v.clearIDs)
	if st, err := c.Status(t.Context()); err != nil || st.DeviceRefused() {
		t.Errorf("Status = %+v, %v; a device that never synced is not refused", st, err)
	}
}

func TestDescribeSyncError(t *testing.T) {
	withReason := func(code codes.Code, reason fieldsyncv1.Reason, msg string) error {
		return fmt.Errorf("fieldsync: hello: %w", wire.StatusError(code, reason, msg))
	}
	for _, tc := range []struct {
		name    string
		err     error
		refused bool
		want    string // in the text
	}{
		{"revoked", withReason(codes.Unauthenticated, server.ReasonDeviceRevoked, "device revoked"), true, "it was revoked"},
		{"unknown token", withReason(codes.Unauthenticated, server.ReasonUnknownToken, "unknown token"), true, "unknown to the server"},
		{"permission denied", status.Error(codes.PermissionDenied, "no"), true, "revoked or unknown"},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), false, "connection refused"},
		{"not enrolled", ErrNotEnrolled, false, "not enrolled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := describeSyncError(tc.err)
			if !strings.HasPrefix(got, tc.err.Error()) || !strings.Contains(got, tc.want) {
				t.Errorf("describeSyncError = %q, want %q and %q", got, tc.err.Error(), tc.want)
			}
			if refused := strings.Contains(got, "exported"); refused != tc.refused {
				t.Errorf("describeSyncError = %q; says the work can be exported: %v, want %v", got, refused, tc.refused)
			}
			if refused, _ := deviceRefusal(tc.err); refused != tc.refused {
				t.Errorf("deviceRefusal = %v, want %v", refused, tc.refused)
			}
		})
	}
	if got := describeSyncError(nil); got != "" {
		t.Errorf("describeSyncError(nil) = %q, want \"\"", got)
	}
	if (Status{}).DeviceRefused() {
		t.Error("DeviceRefused() of a status without error")
	}
}
