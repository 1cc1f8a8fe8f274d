package bench

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/wire"
)

// TestDayEndPushBreakdown runs the day-end push of BenchmarkDayEndSync2G over
// plain loopback, keeps the PushRequest the SDK sent, and checks it carries
// the day's 40 visits. With -v it logs where the bytes of one visit go, field
// by field (proto.Size and the wire encoding), and what the batch would weigh
// gzip'd with the changes a leaner encoding would make.
func TestDayEndPushBreakdown(t *testing.T) {
	tap := &pushTap{}
	town := startTownship(t, local)
	vil := newVillage(t)
	phone := newDevice(t, town, local, grpc.WithChainUnaryInterceptor(tap.intercept))
	phone.enroll(t, town, vil.code)
	phone.saveAll(t, vil.registry)
	phone.syncPlain(t)
	visits := fresh(t, vil.visits, 0, visitsPerDay)
	changes := phone.saveAll(t, visits)
	tap.reset()
	phone.syncPlain(t)
	checkServerHas(t, town, visits)

	reqs := tap.get()
	if len(reqs) != 1 || len(reqs[0].GetChanges()) != changes {
		t.Fatalf("day-end push sent %d requests, want 1 of %d changes (%d visits and the problems and flags they raised)", len(reqs), changes, visitsPerDay)
	}
	t.Logf("the %d visits raised %d problems and risk flags, which travel with them", visitsPerDay, changes-visitsPerDay)
	sent := reqs[0]
	n := float64(visitsPerDay)
	packed, err := proto.MarshalOptions{Deterministic: true}.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	req := unpacked(t, sent)
	if proto.Equal(req, sent) {
		t.Fatal("the day-end push packed no record")
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("as sent (protocol version 2, records packed): %d B (%.1f B/visit), gzip-6 %d B (%.1f B/visit)",
		len(packed), float64(len(packed))/n, gzipSize(packed, gzip.DefaultCompression), float64(gzipSize(packed, gzip.DefaultCompression))/n)
	t.Logf("below, the batch as protocol version 1 sends it, records as text:")
	if len(raw) != proto.Size(req) {
		t.Fatalf("encoded PushRequest is %d bytes, proto.Size says %d", len(raw), proto.Size(req))
	}
	t.Logf("PushRequest of %d visits: %d B (%.1f B/visit), gzip-6 %d B (%.1f B/visit)",
		visitsPerDay, len(raw), float64(len(raw))/n, gzipSize(raw, gzip.DefaultCompression), float64(gzipSize(raw, gzip.DefaultCompression))/n)

	// Where the bytes of the request go, summed over its changes.
	var rows []sizeRow
	top := fieldSizes(raw, req.ProtoReflect().Descriptor(), "PushRequest")
	rows = append(rows, top...)
	var changeTotal int
	for _, ch := range req.GetChanges() {
		changeTotal += proto.Size(ch)
	}
	sum := 0
	for _, r := range top {
		if !strings.Contains(r.path, "[") && strings.Count(r.path, ".") == 1 {
			sum += r.bytes
		}
	}
	if sum != len(raw) {
		t.Fatalf("field sizes add up to %d B, the request is %d B", sum, len(raw))
	}
	t.Logf("%-58s %8s %8s", "field (summed over the 40 changes)", "B", "B/visit")
	for _, r := range rows {
		t.Logf("%-58s %8d %8.1f", r.path, r.bytes, float64(r.bytes)/n)
	}
	t.Logf("mean Change: %.1f B (proto.Size); mean HouseholdVisit body: %.1f B; findings per visit: %.2f",
		float64(changeTotal)/n, meanBody(req), meanFindings(req))

	// What the batch would weigh, gzip-6, per visit, with leaner encodings.
	type variant struct {
		name string
		edit func(*fieldsyncv1.PushRequest)
	}
	noFieldNumbers := func(r *fieldsyncv1.PushRequest) {
		for _, c := range r.GetChanges() {
			c.GetUpsert().FieldNumbers = nil
		}
	}
	noRecordID := func(r *fieldsyncv1.PushRequest) {
		for _, c := range r.GetChanges() {
			c.RecordId = nil
		}
	}
	noChangeID := func(r *fieldsyncv1.PushRequest) {
		for _, c := range r.GetChanges() {
			c.ChangeId = nil
		}
	}
	noDotReplica := func(r *fieldsyncv1.PushRequest) {
		for _, c := range r.GetChanges() {
			c.GetDot().ReplicaId = nil
		}
	}
	noPositions := func(r *fieldsyncv1.PushRequest) { r.Positions = nil }
	noFalseBools := func(r *fieldsyncv1.PushRequest) {
		for _, c := range r.GetChanges() {
			for _, f := range c.GetUpsert().GetRecord().GetHouseholdVisit().GetFindings() {
				clearFalse(f.ProtoReflect())
			}
		}
	}
	lean := func(r *fieldsyncv1.PushRequest) {
		noFieldNumbers(r)
		noRecordID(r)
		noDotReplica(r)
		noPositions(r)
	}
	variants := []variant{
		{"as sent", func(*fieldsyncv1.PushRequest) {}},
		{"no Upsert.field_numbers (new record: every field)", noFieldNumbers},
		{"no Change.record_id (the body's id says it)", noRecordID},
		{"no Dot.replica_id (the authenticated device)", noDotReplica},
		{"no PushRequest.positions (contiguous)", noPositions},
		{"no Change.change_id (the dot names the change too)", noChangeID},
		{"lean: the first four above together", lean},
		{"findings: unset optional bools that are false", noFalseBools},
	}
	t.Logf("%-58s %8s %8s %8s", "variant of the 40-visit PushRequest", "B/visit", "gz6/v", "gz9/v")
	for _, v := range variants {
		r := proto.Clone(req).(*fieldsyncv1.PushRequest)
		v.edit(r)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-58s %8.1f %8.1f %8.1f", v.name, float64(len(b))/n, float64(gzipSize(b, gzip.DefaultCompression))/n, float64(gzipSize(b, gzip.BestCompression))/n)
	}
	// The same variants of the batch as sent (packed), zstd'd as it goes
	// (the best level, as internal/zstdgrpc takes for a message this
	// small): what naming a repeated id once more would still save. zstd
	// already sends an id the batch repeats as a back-reference.
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%-58s %8s %8s", "variant of the 40-visit request as sent (packed)", "B/visit", "zstd/v")
	for _, v := range variants[:5] {
		r := proto.Clone(sent).(*fieldsyncv1.PushRequest)
		v.edit(r)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-58s %8.1f %8.1f", v.name, float64(len(b))/n, float64(len(zenc.EncodeAll(b, nil)))/n)
	}
	// Ids and hashes as bytes instead of text, everywhere; then deflate
	// with a preset dictionary both ends hold: the ids of the village's
	// registry (households, people, workers, clinic), which visits refer to.
	r := proto.Clone(req).(*fieldsyncv1.PushRequest)
	lean(r)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	textDict, binDict := registryDictionary(vil.registry)
	bu, uuids, _ := binaryIDs(b, r.ProtoReflect().Descriptor(), false)
	bh, _, hashes := binaryIDs(b, r.ProtoReflect().Descriptor(), true)
	t.Logf("%-58s %8.1f %8.1f %8.1f", "lean + text UUIDs as 16 bytes", float64(len(bu))/n, float64(gzipSize(bu, gzip.DefaultCompression))/n, float64(gzipSize(bu, gzip.BestCompression))/n)
	t.Logf("%-58s %8.1f %8.1f %8.1f", "... + hex SHA-256 as 32 bytes", float64(len(bh))/n, float64(gzipSize(bh, gzip.DefaultCompression))/n, float64(gzipSize(bh, gzip.BestCompression))/n)
	t.Logf("%-58s %8.1f %8.1f", "lean, deflate-6 with registry ids (text) as dict", float64(len(b))/n, float64(deflateDictSize(b, textDict))/n)
	t.Logf("%-58s %8.1f %8.1f", "lean + ids, hashes as bytes, deflate-6, dict of ids as bytes", float64(len(bh))/n, float64(deflateDictSize(bh, binDict))/n)
	t.Logf("per visit: %.1f text UUIDs (%.0f B of text), %.1f hex SHA-256 (%.0f B of text); dictionaries %d B (text), %d B (bytes)",
		float64(uuids)/n, float64(uuids)*36/n, float64(hashes)/n, float64(hashes)*64/n, len(textDict), len(binDict))
	// The entropy the day's visits carry whatever the encoding: new random
	// bits of UUIDv7 ids (74 each: change and record) and SHA-256 hashes.
	t.Logf("incompressible per visit: ≥ %.1f B (2 new UUIDv7s × 9.25 B random + %.1f hashes × 32 B)", 2*9.25+float64(hashes)/n*32, float64(hashes)/n)
}

// pushTap keeps a copy of every PushRequest a client sends.
type pushTap struct {
	mu   sync.Mutex
	reqs []*fieldsyncv1.PushRequest
}

func (p *pushTap) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r, ok := req.(*fieldsyncv1.PushRequest)
	if x, isX := req.(*fieldsyncv1.ExchangeRequest); isX {
		r, ok = x.GetPush(), true
	}
	if ok {
		p.mu.Lock()
		p.reqs = append(p.reqs, proto.Clone(r).(*fieldsyncv1.PushRequest))
		p.mu.Unlock()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// unpacked returns req with its packed records (Upsert.packed_record) as
// records: the batch as protocol version 1 sends it.
func unpacked(tb testing.TB, req *fieldsyncv1.PushRequest) *fieldsyncv1.PushRequest {
	tb.Helper()
	out := proto.Clone(req).(*fieldsyncv1.PushRequest)
	for _, c := range out.GetChanges() {
		if u := c.GetUpsert(); len(u.GetPackedRecord()) > 0 {
			rec, err := wire.UnpackRecord(u.GetPackedRecord())
			if err != nil {
				tb.Fatal(err)
			}
			u.Record, u.PackedRecord = rec, nil
		}
	}
	return out
}

func (p *pushTap) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = nil
}

func (p *pushTap) get() []*fieldsyncv1.PushRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

type sizeRow struct {
	path  string
	bytes int
}

// fieldSizes returns the encoded size (tag, length and value) of each field
// of the message encoded in b, summed over repeated occurrences, and below
// each message field the sizes of its own fields, recursively, down to the
// record body's fields and the member findings' fields.
func fieldSizes(b []byte, md protoreflect.MessageDescriptor, prefix string) []sizeRow {
	type acc struct {
		bytes int
		subs  [][]byte
	}
	var order []protowire.Number
	by := make(map[protowire.Number]*acc)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return []sizeRow{{prefix + " (malformed)", len(b)}}
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return []sizeRow{{prefix + " (malformed)", len(b)}}
		}
		a, ok := by[num]
		if !ok {
			a = &acc{}
			by[num] = a
			order = append(order, num)
		}
		a.bytes += n + m
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n : n+m])
			a.subs = append(a.subs, v)
		}
		b = b[n+m:]
	}
	slices.Sort(order)
	var rows []sizeRow
	for _, num := range order {
		a := by[num]
		fd := md.Fields().ByNumber(num)
		name := fmt.Sprintf("#%d", num)
		if fd != nil {
			name = fmt.Sprintf("%s(%d)", fd.Name(), num)
		}
		path := prefix + "." + name
		rows = append(rows, sizeRow{path, a.bytes})
		if fd == nil || fd.Kind() != protoreflect.MessageKind || !expand(fd.Message()) {
			continue
		}
		// The fields of every occurrence, summed; the field's own tags and
		// lengths are the difference between its row and the sum below.
		sub := make(map[string]int)
		var subOrder []string
		for _, v := range a.subs {
			for _, r := range fieldSizes(v, fd.Message(), path) {
				if _, ok := sub[r.path]; !ok {
					subOrder = append(subOrder, r.path)
				}
				sub[r.path] += r.bytes
			}
		}
		inner := 0
		for _, p := range subOrder {
			if !strings.Contains(p, "[") && strings.Count(p, ".") == strings.Count(path, ".")+1 {
				inner += sub[p]
			}
		}
		rows = append(rows, sizeRow{path + " [tags+lengths of the field itself]", a.bytes - inner})
		slices.SortStableFunc(subOrder, func(x, y string) int { return slices.Compare(fieldPath(x), fieldPath(y)) })
		for _, p := range subOrder {
			rows = append(rows, sizeRow{p, sub[p]})
		}
	}
	return rows
}

// expand reports whether fieldSizes breaks a message field down further.
func expand(md protoreflect.MessageDescriptor) bool {
	switch md.Name() {
	case "Change", "Upsert", "Record", "HouseholdVisit", "MemberFinding", "Dot", "VersionVector", "Attachment", "GeoPoint",
		"RecordState", "FieldState", "FieldConflict", "HlcStamp":
		return true
	}
	return false
}

// fieldPath returns the field numbers of a fieldSizes row's path, for
// sorting: "a(1).b(9).c(2)" gives [1 9 2]; a " [tags...]" row sorts before
// the fields of its message.
func fieldPath(p string) []int {
	var out []int
	for _, part := range strings.Split(p, ".") {
		var n int
		if i := strings.LastIndexByte(part, '('); i >= 0 {
			fmt.Sscanf(part[i:], "(%d)", &n)
		}
		out = append(out, n)
	}
	return out
}

func meanBody(req *fieldsyncv1.PushRequest) float64 {
	t := 0
	for _, c := range req.GetChanges() {
		t += proto.Size(c.GetUpsert().GetRecord().GetHouseholdVisit())
	}
	return float64(t) / float64(len(req.GetChanges()))
}

func meanFindings(req *fieldsyncv1.PushRequest) float64 {
	t := 0
	for _, c := range req.GetChanges() {
		t += len(c.GetUpsert().GetRecord().GetHouseholdVisit().GetFindings())
	}
	return float64(t) / float64(len(req.GetChanges()))
}

// clearFalse clears every set optional bool of m that is false.
func clearFalse(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.BoolKind && fd.HasPresence() && !v.Bool() {
			m.Clear(fd)
		}
		return true
	})
}

func gzipSize(b []byte, level int) int {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		panic(err)
	}
	w.Write(b)
	w.Close()
	return buf.Len()
}

func deflateDictSize(b, dict []byte) int {
	var buf bytes.Buffer
	w, err := flate.NewWriterDict(&buf, flate.DefaultCompression, dict)
	if err != nil {
		panic(err)
	}
	w.Write(b)
	w.Close()
	return buf.Len()
}

// registryDictionary returns the ids of the registry records, as text and as
// 16-byte UUIDs, as deflate dictionaries.
func registryDictionary(recs []*fieldsyncv1.Record) (text, bin []byte) {
	for _, r := range recs {
		id, _, err := wire.Identity(r)
		if err != nil {
			continue
		}
		text = append(text, id.String()...)
		bin = append(bin, id[:]...)
	}
	return text, bin
}

// binaryIDs re-encodes the message in b with every string field that holds
// a canonical text UUID as the UUID's 16 bytes (as a bytes field would carry
// it), and with hashes set every string field named sha256 holding 64 hex
// digits as its 32 bytes. It returns the result and how many UUIDs and hashes
// it found.
func binaryIDs(b []byte, md protoreflect.MessageDescriptor, hashes bool) (out []byte, uuids, sums int) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		field := b[:n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		switch fd.Kind() {
		case protoreflect.StringKind:
			if u, err := uuid.Parse(string(v)); err == nil && len(v) == 36 {
				out = protowire.AppendTag(out, num, protowire.BytesType)
				out = protowire.AppendBytes(out, u[:])
				uuids++
				continue
			}
			if h, err := hex.DecodeString(string(v)); err == nil && fd.Name() == "sha256" && len(h) == 32 {
				sums++
				if hashes {
					out = protowire.AppendTag(out, num, protowire.BytesType)
					out = protowire.AppendBytes(out, h)
					continue
				}
			}
		case protoreflect.MessageKind:
			sub, u, h := binaryIDs(v, fd.Message(), hashes)
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendBytes(out, sub)
			uuids, sums = uuids+u, sums+h
			continue
		}
		out = append(out, field...)
	}
	return out, uuids, sums
}

// TestSnapshotBreakdown pushes a village's year of records (registry,
// visits, audits, follow-ups, ledger) from one device, reads the server's
// snapshot of the village as a new device's first Pull gets it, and checks
// every record is in it. With -v it logs where the bytes of one RecordState
// go and what 16 KiB batches of them weigh gzip'd, with and without the
// readable view that repeats what engine_state holds.
func TestSnapshotBreakdown(t *testing.T) {
	town := startTownship(t, local)
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 1, Seed: 3, AsOf: asOf()})
	if err != nil {
		t.Fatal(err)
	}
	v := g.County.Villages()[0]
	var recs []*fieldsyncv1.Record
	if err := g.EachInVillage(v, func(r *fieldsyncv1.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	phone := newDevice(t, town, local)
	phone.enroll(t, town, v.Code)
	phone.saveAll(t, recs)
	phone.syncPlain(t)

	var states []*fieldsyncv1.RecordState
	var token []byte
	for {
		page, err := town.srv.Store().Snapshot(t.Context(), v.Code, token, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			states = append(states, wire.RecordStateToProto(r, false))
		}
		if token = page.Next; token == nil {
			break
		}
	}
	if want := phone.records(t); len(states) != want {
		t.Fatalf("snapshot holds %d records, want the phone's %d", len(states), want)
	}
	n := float64(len(states))
	bodies := 0
	for _, r := range recs {
		bodies += proto.Size(wire.Body(r))
	}
	var all []byte
	for _, s := range states {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		all = protowire.AppendTag(all, 2, protowire.BytesType) // PullResponse.records
		all = protowire.AppendBytes(all, b)
	}
	t.Logf("%d records: mean body %.1f B, mean RecordState %.1f B", len(states), float64(bodies)/n, float64(len(all))/n)
	t.Logf("%-58s %8s %8s", "RecordState field (summed over the village)", "B", "B/record")
	holder := (&fieldsyncv1.PullResponse{}).ProtoReflect().Descriptor()
	for _, r := range fieldSizes(all, holder, "PullResponse") {
		if strings.Count(r.path, ".") <= 4 {
			t.Logf("%-58s %8d %8.1f", r.path, r.bytes, float64(r.bytes)/n)
		}
	}

	// Responses as the server cuts them (16 KiB of encoded RecordStates),
	// gzip'd, with everything and with engine_state alone.
	size := func(strip bool) (raw, gz, responses int) {
		var batch []byte
		flush := func() {
			if len(batch) > 0 {
				raw += len(batch)
				gz += gzipSize(batch, gzip.DefaultCompression)
				responses++
				batch = batch[:0]
			}
		}
		for _, s := range states {
			if strip {
				s = &fieldsyncv1.RecordState{EngineState: s.GetEngineState()}
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch)+len(b) > 16<<10 {
				flush()
			}
			batch = protowire.AppendTag(batch, 2, protowire.BytesType) // PullResponse.records
			batch = protowire.AppendBytes(batch, b)
		}
		flush()
		return raw, gz, responses
	}
	for _, strip := range []bool{false, true} {
		raw, gz, resp := size(strip)
		name := "RecordState as sent"
		if strip {
			name = "engine_state only"
		}
		t.Logf("%-30s %7.1f B/record, gzip-6 %6.1f B/record, %4d responses of ≤ 16 KiB", name, float64(raw)/n, float64(gz)/n, resp)
	}
}
