package fieldsync

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// ExportFormat names the version of the document Export writes, in its
// "format" member. A change that a reader of the document must know about
// gets a new version; members may be added within one.
const ExportFormat = "fieldsync-export/1"

// ExportSummary counts what Export wrote.
type ExportSummary struct {
	// Pending is the number of the device's changes the server has not
	// acknowledged.
	Pending int
	// Rejected is the number of the device's changes the server refused.
	Rejected int
	// Records is the number of records those changes touch, written with
	// their current state.
	Records int
}

// Export writes to w the device's work that the server does not hold, for an
// operator to carry to the server by other means: typically from a device the
// server refuses (revoked, or enrolled with a server that no longer knows
// it), whose work would otherwise stay on the phone.
//
// The document is one indented JSON object in the ExportFormat version:
//
//	{
//	  "format": "fieldsync-export/1",
//	  "replica_id": "...", "exported_at": "RFC 3339 time", "server": "host:port",
//	  "areas": ["..."], "last_sync": null or a time, "last_error": "...",
//	  "changes": [ one object per change, oldest first ],
//	  "records": [ one object per record the changes touch ]
//	}
//
// Every change of the device the server has not acknowledged ("state":
// "pending") and every change the server refused ("state": "rejected", with
// its "rejection": outcome, message and field errors) is listed with its
// change id, record id, kind (as ParseKind names it), area, its number on
// this device, when it was made by the device's clock, and the top-level
// fields it sets, by their .proto names, each with its value in protojson
// form (null for a field it clears). A rejected change no longer in the
// device's log is listed with "fields": null. Each record touched is
// written once with its current state as the replica holds it, in the
// protojson form 'fieldsync device put' reads ("record"), whether it is
// deleted, and its open conflicts (field and values, the shown one first).
// A field this build does not know is named "field N" and its value given as
// {"undecoded_base64": "..."}.
//
// National ID numbers never appear in clear: records hold only their masked
// form and keyed hash, and Export masks every IdNumber again as it writes it.
// The document still holds personal data (names, health findings) and must
// be kept as the phone is.
//
// Export reads only the replica: it needs no network and works on a device
// that is not enrolled, has never synced or is refused by its server. It
// changes nothing in the replica. The changes and records are read in one
// read transaction, so the document is consistent even while a Sync runs.
// It returns the counts written, or an error from the replica or from w
// (then what was written to w is incomplete).
func (c *Client) Export(ctx context.Context, w io.Writer) (ExportSummary, error) {
	doc, sum, err := c.exportDoc(ctx)
	if err != nil {
		return ExportSummary{}, fmt.Errorf("fieldsync: export: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return ExportSummary{}, fmt.Errorf("fieldsync: export: %w", err)
	}
	return sum, nil
}

// exportDoc is the document Export writes.
type exportDoc struct {
	Format     string         `json:"format"`
	ReplicaID  string         `json:"replica_id"`
	ExportedAt time.Time      `json:"exported_at"`
	Server     string         `json:"server"`
	Areas      []string       `json:"areas"`
	LastSync   *time.Time     `json:"last_sync"`
	LastError  string         `json:"last_error"`
	Changes    []exportChange `json:"changes"`
	Records    []exportRecord `json:"records"`
}

type exportChange struct {
	ChangeID  string           `json:"change_id"`
	RecordID  string           `json:"record_id"`
	Kind      string           `json:"kind"`
	Area      string           `json:"area"`
	State     string           `json:"state"` // "pending" or "rejected"
	Number    uint64           `json:"number,omitempty"`
	MadeAt    *time.Time       `json:"made_at,omitempty"`
	Delete    bool             `json:"delete,omitempty"`
	Fields    json.RawMessage  `json:"fields"`
	Rejection *exportRejection `json:"rejection,omitempty"`
}

type exportRejection struct {
	Outcome     string             `json:"outcome"`
	Reason      string             `json:"reason,omitempty"`
	Message     string             `json:"message"`
	FieldErrors []exportFieldError `json:"field_errors"`
}

type exportFieldError struct {
	Path    string `json:"path"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type exportRecord struct {
	RecordID  string           `json:"record_id"`
	Kind      string           `json:"kind"`
	Area      string           `json:"area"`
	Deleted   bool             `json:"deleted"`
	Record    json.RawMessage  `json:"record"`
	Conflicts []exportConflict `json:"conflicts"`
}

type exportConflict struct {
	Field  string            `json:"field"`
	Values []json.RawMessage `json:"values"`
}

// Change states in the export.
const (
	exportPending  = "pending"
	exportRejected = "rejected"
)

// exportDoc reads what Export writes.
func (c *Client) exportDoc(ctx context.Context) (exportDoc, ExportSummary, error) {
	doc := exportDoc{
		Format: ExportFormat, ReplicaID: c.Replica().String(), ExportedAt: c.now().UTC(),
		Areas: []string{}, Changes: []exportChange{}, Records: []exportRecord{},
	}
	srv, err := c.serverReplica(ctx)
	if err != nil {
		return doc, ExportSummary{}, err
	}
	if b, err := c.store.Meta(ctx, metaServerAddr); err != nil {
		return doc, ExportSummary{}, err
	} else {
		doc.Server = string(b)
	}
	if areas, err := c.Areas(ctx); err != nil {
		return doc, ExportSummary{}, err
	} else if areas != nil {
		doc.Areas = areas
	}
	if b, err := c.store.Meta(ctx, metaLastSuccess); err != nil {
		return doc, ExportSummary{}, err
	} else if t, err := time.Parse(time.RFC3339Nano, string(b)); len(b) > 0 && err == nil {
		doc.LastSync = &t
	}
	if b, err := c.store.Meta(ctx, metaLastError); err != nil {
		return doc, ExportSummary{}, err
	} else {
		doc.LastError = string(b)
	}
	// Rejections are read before the log: a Sync in between can only
	// acknowledge more, and a change it refused then shows as pending.
	rejected, err := c.rejections(ctx)
	if err != nil {
		return doc, ExportSummary{}, err
	}
	changes, records, err := c.unsent(ctx, srv, rejected)
	if err != nil {
		return doc, ExportSummary{}, err
	}
	var sum ExportSummary
	for _, ch := range changes {
		x, err := exportChangeOf(ch)
		if err != nil {
			return doc, ExportSummary{}, err
		}
		if x.State == exportPending {
			sum.Pending++
		} else {
			sum.Rejected++
		}
		doc.Changes = append(doc.Changes, x)
	}
	for _, r := range records {
		doc.Records = append(doc.Records, exportRecordOf(r.id, r.state))
	}
	sum.Records = len(doc.Records)
	return doc, sum, nil
}

// unsentChange is a change of the device the server does not hold: a log
// entry (nil when a rejected change is no longer in the log) and its
// rejection, if it was refused.
type unsentChange struct {
	entry     *syncengine.Entry
	pending   bool
	rejection *Rejection
	kind      syncengine.Kind // the record's kind when entry is nil
}

type touchedRecord struct {
	id    syncengine.RecordID
	state syncengine.Record
}

// unsent reads, in one transaction, the device's changes after the position
// the server srv acknowledged, the rejected changes among rejected, and the
// state of every record they touch, in the order first touched.
func (c *Client) unsent(ctx context.Context, srv syncengine.ReplicaID, rejected []Rejection) ([]unsentChange, []touchedRecord, error) {
	self := c.store.Replica()
	byID := make(map[string]*Rejection, len(rejected))
	for i := range rejected {
		byID[rejected[i].ChangeID] = &rejected[i]
	}
	var (
		changes []unsentChange
		records []touchedRecord
	)
	err := c.store.View(ctx, func(tx syncengine.ReadTx) error {
		changes, records = nil, nil
		cur, err := tx.Cursor(ctx, srv)
		if err != nil {
			return err
		}
		// Rejected changes are acknowledged, so they lie before cur.Acked:
		// the whole log is read only when there are some.
		after := cur.Acked
		if len(byID) > 0 {
			after = 0
		}
		found := make(map[string]bool, len(byID))
		for {
			page, err := tx.ReadLog(ctx, after, syncengine.DefaultBatchLimit)
			if err != nil {
				return err
			}
			for i := range page {
				e := &page[i]
				after = e.Pos
				if e.Change.Origin != self {
					continue
				}
				id := e.Change.ID.String()
				rej := byID[id]
				pending := e.Pos > cur.Acked
				if !pending && rej == nil {
					continue
				}
				found[id] = true
				changes = append(changes, unsentChange{entry: e, pending: pending, rejection: rej})
			}
			if len(page) < syncengine.DefaultBatchLimit {
				break
			}
		}
		// A rejected change no longer in the log is still listed, with
		// what the rejection says of it.
		for i := range rejected {
			if !found[rejected[i].ChangeID] {
				changes = append(changes, unsentChange{rejection: &rejected[i]})
			}
		}
		seen := make(map[syncengine.RecordID]bool)
		for i := range changes {
			ch := &changes[i]
			var id syncengine.RecordID
			if ch.entry != nil {
				id = ch.entry.Change.RecordID
			} else if id, err = wire.RecordID(ch.rejection.RecordID); err != nil {
				continue
			}
			r, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			ch.kind = r.Kind()
			if !seen[id] {
				seen[id] = true
				records = append(records, touchedRecord{id: id, state: r})
			}
		}
		return nil
	})
	return changes, records, err
}

func exportChangeOf(ch unsentChange) (exportChange, error) {
	x := exportChange{State: exportRejected, Fields: json.RawMessage("null")}
	if ch.pending {
		x.State = exportPending
	}
	if r := ch.rejection; r != nil {
		x.ChangeID, x.RecordID = r.ChangeID, r.RecordID
		x.Rejection = &exportRejection{Outcome: r.Outcome, Reason: r.Reason, Message: r.Message, FieldErrors: []exportFieldError{}}
		for _, f := range r.Fields {
			x.Rejection.FieldErrors = append(x.Rejection.FieldErrors, exportFieldError{Path: f.Path, Reason: f.Reason.String(), Message: f.Message})
		}
	}
	kind := ch.kind
	if e := ch.entry; e != nil {
		c := e.Change
		kind = c.Kind
		x.ChangeID, x.RecordID, x.Area, x.Number, x.Delete = c.ID.String(), c.RecordID.String(), c.Area, c.Dot.Counter, c.Delete
		made := time.UnixMilli(c.Stamp.WallMS).UTC()
		x.MadeAt = &made
		fields, err := fieldsJSON(kind, c.Fields)
		if err != nil {
			return exportChange{}, err
		}
		x.Fields = fields
	}
	x.Kind = kindName(fieldsyncv1.RecordKind(kind))
	return x, nil
}

func exportRecordOf(id syncengine.RecordID, r syncengine.Record) exportRecord {
	x := exportRecord{
		RecordID: id.String(), Kind: kindName(fieldsyncv1.RecordKind(r.Kind())), Area: r.Area(),
		Deleted: r.Deleted(), Record: json.RawMessage("null"), Conflicts: []exportConflict{},
	}
	if r.IsEmpty() {
		return x
	}
	x.Record = recordJSON(r)
	for _, cf := range r.Conflicts() {
		num := cf.ID.Field
		xc := exportConflict{Field: fieldName(r.Kind(), num)}
		for _, w := range cf.Writes {
			var v json.RawMessage
			if num == syncengine.ExistenceField {
				v = existenceJSON(w)
			} else {
				_, v = fieldJSON(r.Kind(), num, w.Value)
			}
			xc.Values = append(xc.Values, v)
		}
		x.Conflicts = append(x.Conflicts, xc)
	}
	return x
}

// recordJSON renders a record state as its body's protojson with the .proto
// field names (the form 'fieldsync device put' reads), ID numbers masked. A
// state this build cannot decode gives {"undecoded_base64": ...} of its
// encoded fields.
func recordJSON(r syncengine.Record) json.RawMessage {
	rec, err := wire.FromState(r)
	if err != nil {
		return undecoded(wire.JoinFields(r.Values()))
	}
	body := wire.Body(rec)
	maskIDNumbers(body.ProtoReflect())
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(body)
	if err != nil {
		return undecoded(wire.JoinFields(r.Values()))
	}
	return compactJSON(b)
}

// fieldsJSON renders the fields a change sets as one JSON object, in field
// number order.
func fieldsJSON(kind syncengine.Kind, fields map[int32][]byte) (json.RawMessage, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, num := range slices.Sorted(maps.Keys(fields)) {
		if i > 0 {
			buf.WriteByte(',')
		}
		name, v := fieldJSON(kind, num, fields[num])
		k, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// fieldName is the .proto name of field num of kind's body, or "field N"
// when this build does not know it.
func fieldName(kind syncengine.Kind, num int32) string {
	if num == syncengine.ExistenceField {
		return "(existence)"
	}
	if fd := fieldDescriptor(kind, num); fd != nil {
		return string(fd.Name())
	}
	return fmt.Sprintf("field %d", num)
}

func fieldDescriptor(kind syncengine.Kind, num int32) protoreflect.FieldDescriptor {
	body, err := wire.NewBody(kind)
	if err != nil {
		return nil
	}
	return body.ProtoReflect().Descriptor().Fields().ByNumber(protoreflect.FieldNumber(num))
}

// fieldJSON renders v, the encoding of field num of a record of kind, as
// the field's name and its value as protojson shows it within the body
// (defaults shown, so that a zero written on purpose is not taken for a
// missing field): null for a cleared field, {"undecoded_base64": ...} for a
// field this build does not know or cannot decode. ID numbers are masked.
func fieldJSON(kind syncengine.Kind, num int32, v []byte) (string, json.RawMessage) {
	name := fieldName(kind, num)
	if len(v) == 0 {
		return name, json.RawMessage("null")
	}
	fd := fieldDescriptor(kind, num)
	body, err := wire.NewBody(kind)
	if fd == nil || err != nil || proto.Unmarshal(v, body) != nil {
		return name, undecoded(v)
	}
	maskIDNumbers(body.ProtoReflect())
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(body)
	if err != nil {
		return name, undecoded(v)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil {
		return name, undecoded(v)
	}
	val, ok := obj[string(fd.Name())]
	if !ok {
		return name, undecoded(v)
	}
	return name, compactJSON(val)
}

// existenceJSON renders a write of the existence field, in a conflict
// between a delete and an update.
func existenceJSON(w syncengine.Write) json.RawMessage {
	s := "kept, in area " + string(w.Value)
	if w.Delete {
		s = "deleted"
	}
	b, _ := json.Marshal(s)
	return b
}

func undecoded(v []byte) json.RawMessage {
	b, _ := json.Marshal(struct {
		Undecoded string `json:"undecoded_base64"`
	}{base64.StdEncoding.EncodeToString(v)})
	return b
}

// compactJSON returns b without insignificant space: protojson varies its
// spacing on purpose, and the document is indented as a whole.
func compactJSON(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

var (
	idNumberDesc   = (&fieldsyncv1.IdNumber{}).ProtoReflect().Descriptor()
	idNumberMasked = idNumberDesc.Fields().ByName("masked")
)

// maskIDNumbers masks again the display form of every IdNumber within m, in
// place. A valid masked form ("5325**********1234") is left as it is; a clear
// number that reached a record by mistake is masked.
func maskIDNumbers(m protoreflect.Message) {
	if m.Descriptor().FullName() == idNumberDesc.FullName() {
		if s := m.Get(idNumberMasked).String(); s != "" {
			m.Set(idNumberMasked, protoreflect.ValueOfString(survey.MaskIDNumber(s)))
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				maskIDNumbers(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				maskIDNumbers(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			maskIDNumbers(v.Message())
		}
		return true
	})
}

// refusedNote is what describeSyncError adds to the error of a Sync the
// server refused the device for; Status.DeviceRefused looks for it.
const refusedNote = "the server refuses this device"

// describeSyncError returns the text Status.LastError records for err, the
// error of a failed Sync: err's own text, and when the server refused the
// device (its token revoked or unknown: gRPC Unauthenticated or
// PermissionDenied), what that means for the person holding the phone. It
// returns "" for nil.
func describeSyncError(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	refused, why := deviceRefusal(err)
	if !refused {
		return msg
	}
	return msg + "; " + refusedNote + " (" + why + "): syncing again will not help; " +
		"its unsent work stays on the device and can be exported for the operator"
}

// deviceRefusal reports whether err says the server refuses the device's
// credentials, and why in a few words.
func deviceRefusal(err error) (bool, string) {
	st, ok := status.FromError(err)
	if !ok || (st.Code() != codes.Unauthenticated && st.Code() != codes.PermissionDenied) {
		return false, ""
	}
	switch wire.StatusReason(st) {
	case fieldsyncv1.Reason_REASON_DEVICE_REVOKED:
		return true, "it was revoked"
	case fieldsyncv1.Reason_REASON_UNKNOWN_TOKEN:
		return true, "its token is unknown to the server"
	case fieldsyncv1.Reason_REASON_REPLICA_MISMATCH:
		return true, "its token belongs to another replica"
	}
	return true, "revoked or unknown to the server"
}

// DeviceRefused reports whether the last Sync failed because the server
// refuses the device: it was revoked, or the server does not know its token
// (gRPC Unauthenticated or PermissionDenied; Refused says why). Syncing again
// will not help; the device's unsent work stays on it, and Export writes it
// out for the operator.
func (s Status) DeviceRefused() bool { return s.Refused != "" }
