package server_test

import (
	"crypto/rand"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// moveWorld is a generated township of three villages and, in the first, a
// household with its people and a neighbouring household.
type moveWorld struct {
	township   string
	villages   [3]string
	household  *fieldsyncv1.Record
	people     []*fieldsyncv1.Record
	neighbour  *fieldsyncv1.Record
	registered []*fieldsyncv1.Record // everything above
}

func newMoveWorld(t *testing.T) moveWorld {
	t.Helper()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 3, HouseholdsPerVillage: 3, Seed: 6, AsOf: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var w moveWorld
	vs := g.County.Villages()
	for i := range w.villages {
		w.villages[i] = vs[i].Code
	}
	w.township = w.villages[0][:9]
	err = g.EachInVillage(vs[0], func(r *fieldsyncv1.Record) error {
		switch {
		case r.GetHousehold() != nil && w.household == nil:
			w.household = r
		case r.GetHousehold() != nil && w.neighbour == nil:
			w.neighbour = r
		case r.GetPerson() != nil && w.household != nil && r.GetPerson().GetHouseholdId() == w.household.GetHousehold().GetId():
			w.people = append(w.people, r)
		default:
			return nil
		}
		w.registered = append(w.registered, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.people) == 0 || w.neighbour == nil {
		t.Fatalf("generated village has no household with people and a neighbour")
	}
	slices.SortFunc(w.people, func(a, b *fieldsyncv1.Record) int { return idOf(t, a).Compare(idOf(t, b)) })
	return w
}

// movedTo returns rec with its area_code set to village.
func movedTo(rec *fieldsyncv1.Record, village string) *fieldsyncv1.Record {
	out := proto.Clone(rec).(*fieldsyncv1.Record)
	switch b := out.GetBody().(type) {
	case *fieldsyncv1.Record_Household:
		b.Household.AreaCode = village
	case *fieldsyncv1.Record_Person:
		b.Person.AreaCode = village
	}
	return out
}

// checkShows fails unless c shows each of recs exactly as given.
func checkShows(t *testing.T, name string, c *fieldsync.Client, recs ...*fieldsyncv1.Record) {
	t.Helper()
	for _, want := range recs {
		id, _, _ := wire.Identity(want)
		got, err := c.Get(t.Context(), id.String())
		if err != nil {
			t.Errorf("%s: Get(%v): %v", name, id, err)
			continue
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: record %v\n got %v\nwant %v", name, id, got, want)
		}
	}
}

// checkLacks fails unless c shows none of recs.
func checkLacks(t *testing.T, name string, c *fieldsync.Client, recs ...*fieldsyncv1.Record) {
	t.Helper()
	for _, r := range recs {
		id, _, _ := wire.Identity(r)
		if got, err := c.Get(t.Context(), id.String()); !errors.Is(err, fieldsync.ErrNotFound) {
			t.Errorf("%s: Get(%v) = %v, %v; want ErrNotFound", name, id, got, err)
		}
	}
}

// The operator moves a household from village 0 to village 1: one change per
// record, the household first. At their next sync village 1's phone shows
// the household and its people whole, village 0's phone no longer has them
// (its neighbour stays), and village 2's phone never sees them.
func TestMoveRecord(t *testing.T) {
	e, addr := newEnvAddr(t)
	w := newMoveWorld(t)
	for _, r := range w.registered {
		if _, err := e.srv.Save(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	var phones [3]filePhone
	for i, v := range w.villages {
		phones[i] = e.filePhone(t, addr, v)
	}
	syncAll := func() {
		t.Helper()
		for _, p := range phones {
			if err := p.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	syncAll()
	checkShows(t, "phone 0", phones[0].Client, w.registered...)

	hid := idOf(t, w.household)
	resp, err := e.admin.MoveRecord(e.adminCtx(t), &fieldsyncv1.MoveRecordRequest{RecordId: hid[:], AreaCode: w.villages[1]})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := [][]byte{hid[:]}
	for _, p := range w.people {
		id := idOf(t, p)
		wantIDs = append(wantIDs, id[:])
	}
	if !slices.EqualFunc(resp.GetRecordIds(), wantIDs, func(a, b []byte) bool { return string(a) == string(b) }) || len(resp.GetChangeIds()) != len(wantIDs) {
		t.Errorf("MoveRecord = %d records, %d changes; want the household and its %d people, one change each", len(resp.GetRecordIds()), len(resp.GetChangeIds()), len(w.people))
	}
	moved := []*fieldsyncv1.Record{movedTo(w.household, w.villages[1])}
	for _, p := range w.people {
		moved = append(moved, movedTo(p, w.villages[1]))
	}
	for _, r := range moved {
		id := idOf(t, r)
		if got := serverRecord(t, e.srv, id); got.Area() != w.villages[1] {
			t.Errorf("server: record %v in %s after the move, want %s", id, got.Area(), w.villages[1])
		}
	}

	syncAll()
	checkShows(t, "phone 1", phones[1].Client, moved...)
	checkLacks(t, "phone 0", phones[0].Client, moved...)
	checkShows(t, "phone 0", phones[0].Client, w.neighbour)
	checkLacks(t, "phone 2", phones[2].Client, moved...)
	// The server's changes do not linger in the old village's log.
	if r, n := phones[0].replica(t, hid); !r.IsEmpty() || n != 0 {
		t.Errorf("phone 0 keeps the moved household's state (%v) or %d of the server's changes of it", !r.IsEmpty(), n)
	}
}

func TestMoveRecordRefuses(t *testing.T) {
	w := newMoveWorld(t)
	e, _ := newEnvAddr(t)
	for _, r := range w.registered {
		if _, err := e.srv.Save(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	// A server of village 0's township, to move out of.
	town := newTownEnv(t, w.township)
	if _, err := town.srv.Save(t.Context(), w.household); err != nil {
		t.Fatal(err)
	}
	hid, pid := idOf(t, w.household), idOf(t, w.people[0])
	unknown := syncengine.RecordID{0x01, 0x96}
	otherTownship := w.township[:6] + "999" + "001"
	tests := []struct {
		name   string
		env    *env
		id     []byte
		to     string
		code   codes.Code
		reason fieldsyncv1.Reason
	}{
		{"same village", e, hid[:], w.villages[0], codes.InvalidArgument, server.ReasonBadRequest},
		{"unknown record", e, unknown[:], w.villages[1], codes.NotFound, server.ReasonNoRecord},
		{"a person", e, pid[:], w.villages[1], codes.InvalidArgument, server.ReasonBadRequest},
		{"short id", e, hid[:8], w.villages[1], codes.InvalidArgument, server.ReasonBadRequest},
		{"township code", e, hid[:], w.township + "000", codes.InvalidArgument, server.ReasonBadRequest},
		{"not a code", e, hid[:], "12345", codes.InvalidArgument, server.ReasonBadRequest},
		{"outside the server's area", town, hid[:], otherTownship, codes.InvalidArgument, server.ReasonBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.env.admin.MoveRecord(tt.env.adminCtx(t), &fieldsyncv1.MoveRecordRequest{RecordId: tt.id, AreaCode: tt.to})
			if status.Code(err) != tt.code || servertest.ReasonOf(err) != tt.reason || status.Convert(err).Message() == "" {
				t.Errorf("MoveRecord = %v (reason %v), want %v %v with a message", err, servertest.ReasonOf(err), tt.code, tt.reason)
			}
		})
	}
	_, err := e.admin.MoveRecord(e.adminCtx(t), &fieldsyncv1.MoveRecordRequest{RecordId: hid[:], AreaCode: w.villages[0]})
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "already") || !strings.Contains(msg, w.villages[0]) {
		t.Errorf("same village: message %q does not say it is there already", msg)
	}
	// Nothing was written by the refused moves.
	if got := serverRecord(t, e.srv, hid); got.Area() != w.villages[0] {
		t.Errorf("household in %s after refused moves", got.Area())
	}
	// The admin token is required.
	if _, err := e.admin.MoveRecord(t.Context(), &fieldsyncv1.MoveRecordRequest{RecordId: hid[:], AreaCode: w.villages[1]}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("MoveRecord without the admin token = %v, want Unauthenticated", err)
	}
}

// A doctor of village 0 edits a household offline while the operator moves
// it to village 1; the edit is made before the move in one run and after it
// in the other (so that it would win the record's area). Either way the edit
// is accepted, not refused: the server's record has the doctor's notes and
// stays in village 1, the doctor's phone forgets the household at its sync,
// and village 1's phone gets the notes.
func TestEditConcurrentWithMove(t *testing.T) {
	for _, editFirst := range []bool{true, false} {
		name := "edit after the move"
		if editFirst {
			name = "edit before the move"
		}
		t.Run(name, func(t *testing.T) {
			e, addr := newEnvAddr(t)
			w := newMoveWorld(t)
			for _, r := range w.registered {
				if _, err := e.srv.Save(t.Context(), r); err != nil {
					t.Fatal(err)
				}
			}
			old, neu := e.filePhone(t, addr, w.villages[0]), e.filePhone(t, addr, w.villages[1])
			mustSyncAll(t, old.Client, neu.Client)
			hid := idOf(t, w.household)
			edited := proto.Clone(w.household).(*fieldsyncv1.Record)
			edited.GetHousehold().Notes = "户主外出务工，妻子在家"
			edit := func() {
				if err := old.Save(t.Context(), edited); err != nil {
					t.Fatal(err)
				}
			}
			move := func() {
				if _, err := e.admin.MoveRecord(e.adminCtx(t), &fieldsyncv1.MoveRecordRequest{RecordId: hid[:], AreaCode: w.villages[1]}); err != nil {
					t.Fatal(err)
				}
			}
			if editFirst {
				edit()
				time.Sleep(5 * time.Millisecond) // a later stamp for the move
				move()
			} else {
				move()
				time.Sleep(5 * time.Millisecond)
				edit()
			}
			mustSyncAll(t, old.Client)
			st, err := old.Status(t.Context())
			if err != nil || len(st.Rejected) != 0 || st.Pending != 0 {
				t.Fatalf("old village's phone after its sync: %+v, %v; want its edit accepted", st, err)
			}
			moved := movedTo(edited, w.villages[1])
			shown := func(when string) syncengine.Record {
				t.Helper()
				r := serverRecord(t, e.srv, hid)
				got, err := wire.FromState(r)
				if err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, moved) {
					t.Errorf("server's record %s:\n got %v\nwant %v", when, got, moved)
				}
				return r
			}
			// The edit is in the server's record; the phone that made it
			// has let the household go.
			shown("after the edit's push")
			checkLacks(t, "old village's phone", old.Client, w.household)
			// The next pull settles the record in the new village (if the
			// edit's later stamp had put it back in the old one).
			mustSyncAll(t, neu.Client, old.Client)
			if r := shown("after the next syncs"); r.Area() != w.villages[1] {
				t.Errorf("server's record in %s, want %s", r.Area(), w.villages[1])
			}
			checkShows(t, "new village's phone", neu.Client, moved)
			checkLacks(t, "old village's phone", old.Client, w.household)
			if got, _ := neu.replica(t, hid); got.Digest() != serverRecord(t, e.srv, hid).Digest() {
				t.Errorf("new village's phone and server differ:\n phone  %v\n server %v", got, serverRecord(t, e.srv, hid))
			}
			if got, n := old.replica(t, hid); !got.IsEmpty() || n != 0 {
				t.Errorf("old village's phone keeps the household's state or %d of the server's changes of it", n)
			}
			// After the household's registration, the server made the move
			// and the change that settled it in village 1 over the edit's
			// write of village 0, setting no field.
			var mine []syncengine.Change
			for _, c := range serverLog(t, e.srv) {
				if c.RecordID == hid && c.Origin == e.srv.Replica() {
					mine = append(mine, c)
				}
			}
			if len(mine) != 3 || len(mine[2].Fields) != 0 || mine[2].Area != w.villages[1] {
				t.Errorf("server made %d changes of the household, want 3: registration, move, settlement", len(mine))
			}
		})
	}
}

// A device that writes to a record of another village that it never had is
// refused, whatever context it claims to have seen: the record's own
// version, or none.
func TestEditOfAnotherVillagesRecordIsRefused(t *testing.T) {
	e := newEnv(t)
	w := newMoveWorld(t)
	if _, err := e.srv.Save(t.Context(), movedTo(w.household, w.villages[1])); err != nil {
		t.Fatal(err)
	}
	d := e.enrol(t, w.villages[0])
	hid := idOf(t, w.household)
	version := serverRecord(t, e.srv, hid).Version()
	edited := proto.Clone(w.household).(*fieldsyncv1.Record) // claims village 0
	edited.GetHousehold().Notes = "冒名"
	for i, ctx := range []syncengine.VersionVector{version, {}} {
		c := changeOf(t, d.store.Replica(), uint64(i+1), edited, ctx, 9)
		pc, err := wire.ChangeToProto(c)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.sync.Push(d.ctx(t), &fieldsyncv1.PushRequest{FirstPosition: uint64(i + 1), LastPosition: uint64(i + 1), Changes: []*fieldsyncv1.Change{pc}})
		if err != nil {
			t.Fatal(err)
		}
		if got := outcomes(resp); !equal(got, []fieldsyncv1.ChangeOutcome{outOfScope}) {
			t.Errorf("edit with context %v: outcomes %v, want out of scope", ctx, got)
		}
	}
	if got, _ := wire.FromState(serverRecord(t, e.srv, hid)); got.GetHousehold().GetNotes() == "冒名" {
		t.Error("the refused edit reached the record")
	}
}

// A raw pull after a move: village 1's device receives the household's whole
// state before the change that brought it; village 0's device receives the
// change alone; village 2's device nothing.
func TestPullSendsMovedRecordWhole(t *testing.T) {
	e := newEnv(t)
	w := newMoveWorld(t)
	for _, r := range w.registered {
		if _, err := e.srv.Save(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	var devs [3]*device
	var cursors [3]*fieldsyncv1.Cursor
	for i, v := range w.villages {
		devs[i] = e.enrol(t, v)
		cursors[i] = pull(t, e, devs[i], nil).cursor
	}
	hid := idOf(t, w.household)
	if _, err := e.admin.MoveRecord(e.adminCtx(t), &fieldsyncv1.MoveRecordRequest{RecordId: hid[:], AreaCode: w.villages[1]}); err != nil {
		t.Fatal(err)
	}
	for i := range devs {
		got := pullResponses(t, e, devs[i], cursors[i])
		var records, changes int
		for _, resp := range got {
			for _, rs := range resp.GetRecords() {
				if syncengine.RecordID(rs.GetRecordId()) != hid {
					continue
				}
				records++
				if !hasChangeOf(resp, hid) {
					t.Errorf("device %d: household state without its change in the response", i)
				}
				var st syncengine.Record
				if err := st.UnmarshalBinary(rs.GetEngineState()); err != nil || st.Digest() != serverRecord(t, e.srv, hid).Digest() {
					t.Errorf("device %d: household state is not the server's: %v", i, err)
				}
			}
			if hasChangeOf(resp, hid) {
				changes++
			}
		}
		want := [3][2]int{{0, 1}, {1, 1}, {0, 0}}[i]
		if records != want[0] || changes != want[1] {
			t.Errorf("device %d (%s): %d states and %d changes of the household, want %d and %d", i, w.villages[i], records, changes, want[0], want[1])
		}
	}
}

func hasChangeOf(resp *fieldsyncv1.PullResponse, id syncengine.RecordID) bool {
	for _, c := range resp.GetChanges() {
		if syncengine.RecordID(c.GetRecordId()) == id {
			return true
		}
	}
	return false
}

// pullResponses pulls after cursor until caught up and returns the
// responses.
func pullResponses(t *testing.T, e *env, d *device, cursor *fieldsyncv1.Cursor) []*fieldsyncv1.PullResponse {
	t.Helper()
	stream, err := e.sync.Pull(d.ctx(t), &fieldsyncv1.PullRequest{Cursor: cursor})
	if err != nil {
		t.Fatal(err)
	}
	var out []*fieldsyncv1.PullResponse
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		out = append(out, resp)
		if resp.GetCaughtUp() {
			return out
		}
	}
}

// newTownEnv is newEnvAddr for a server of area.
func newTownEnv(t *testing.T, area string) *env {
	t.Helper()
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, Area: area})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{srv: srv, dir: dir, conn: conn, sync: fieldsyncv1.NewSyncServiceClient(conn),
		enroll: fieldsyncv1.NewEnrolmentServiceClient(conn), admin: fieldsyncv1.NewAdminServiceClient(conn)}
}

func idOf(t *testing.T, rec *fieldsyncv1.Record) syncengine.RecordID {
	t.Helper()
	id, _, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// serverLog reads the server's whole log.
func serverLog(t *testing.T, srv *server.Server) []syncengine.Change {
	t.Helper()
	var out []syncengine.Change
	err := srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		es, err := tx.ReadLog(t.Context(), 0, 1<<20)
		for _, e := range es {
			out = append(out, e.Change)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func serverRecord(t *testing.T, srv *server.Server, id syncengine.RecordID) syncengine.Record {
	t.Helper()
	var r syncengine.Record
	err := srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// filePhone is an SDK phone enrolled at e's server for area, with the path
// of its replica file.
type filePhone struct {
	*fieldsync.Client
	path string
}

func (e *env) filePhone(t *testing.T, addr, area string) filePhone {
	t.Helper()
	path := filepath.Join(t.TempDir(), "phone.db")
	c, err := fieldsync.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	code, _, err := e.srv.IssueEnrolmentCode([]string{area}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), addr, code); err != nil {
		t.Fatal(err)
	}
	return filePhone{c, path}
}

// replica reads, beside the open client, the phone's state of record id and
// how many log entries of other replicas' changes of it the phone holds.
func (p filePhone) replica(t *testing.T, id syncengine.RecordID) (syncengine.Record, int) {
	t.Helper()
	st, err := sqlitestore.Open(t.Context(), p.path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var r syncengine.Record
	others := 0
	err = st.View(t.Context(), func(tx syncengine.ReadTx) error {
		var err error
		if r, err = tx.Record(t.Context(), id); err != nil {
			return err
		}
		log, err := tx.ReadLog(t.Context(), 0, 1<<20)
		for _, e := range log {
			if e.Change.RecordID == id && e.Change.Origin != p.Replica() {
				others++
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, others
}

// changeOf is rec (only the fields given, if any) as change n of origin,
// after context.
func changeOf(t *testing.T, origin syncengine.ReplicaID, n uint64, rec *fieldsyncv1.Record, context syncengine.VersionVector, only ...int32) syncengine.Change {
	t.Helper()
	id, area, err := wire.Identity(rec)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := wire.Fields(wire.Body(rec))
	if err != nil {
		t.Fatal(err)
	}
	if len(only) > 0 {
		for k := range fields {
			if !slices.Contains(only, k) {
				delete(fields, k)
			}
		}
	}
	var cid syncengine.ChangeID
	rand.Read(cid[:])
	return syncengine.Change{
		ID: cid, RecordID: id, Kind: wire.KindOf(rec), Area: area, Origin: origin,
		Dot: syncengine.Dot{Replica: origin, Counter: n}, Stamp: syncengine.Stamp{WallMS: time.Now().UnixMilli(), Replica: origin},
		Context: context, Fields: fields,
	}
}
