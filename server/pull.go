package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Pull cursor tokens are opaque to clients:
//
//	version byte (1), uvarint phase, uvarint position, uvarint scope hash,
//	uvarint prefix index, uvarint page-token length, page token.
//
// In phaseSnapshot, position is the log end read when the snapshot began (the
// incremental part continues after it), prefix index the area prefix being
// read and page token boltstore's token within it (empty at its start). In
// phaseLog, position is the log position the caller has everything through.
// The scope hash names the areas the cursor was issued for, so a change of
// areas restarts with a snapshot.
const cursorVersion = 1

const (
	phaseSnapshot = 1
	phaseLog      = 2
)

// snapshotPageLimit is the most records read per snapshot page; a page that
// would overflow a response is read again, smaller.
const snapshotPageLimit = 64

// logPageLimit is the most log entries read per ReadLogArea call.
const logPageLimit = 128

type pullCursor struct {
	phase  uint64
	pos    syncengine.Position
	scope  uint32
	prefix int
	page   []byte
}

func (c pullCursor) token() *fieldsyncv1.Cursor {
	b := []byte{cursorVersion}
	b = binary.AppendUvarint(b, c.phase)
	b = binary.AppendUvarint(b, uint64(c.pos))
	b = binary.AppendUvarint(b, uint64(c.scope))
	b = binary.AppendUvarint(b, uint64(c.prefix))
	b = binary.AppendUvarint(b, uint64(len(c.page)))
	b = append(b, c.page...)
	return &fieldsyncv1.Cursor{Token: b}
}

// decodeCursor parses a token made by pullCursor.token, or returns an error
// wrapping ErrBadCursor.
func decodeCursor(b []byte) (pullCursor, error) {
	bad := fmt.Errorf("%w: token of %d bytes", ErrBadCursor, len(b))
	if len(b) < 1 || b[0] != cursorVersion {
		return pullCursor{}, bad
	}
	b = b[1:]
	var vals [5]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return pullCursor{}, bad
		}
		vals[i], b = v, b[n:]
	}
	c := pullCursor{phase: vals[0], pos: syncengine.Position(vals[1]), scope: uint32(vals[2]), prefix: int(vals[3])}
	switch {
	case c.phase != phaseSnapshot && c.phase != phaseLog,
		vals[2] > 1<<32-1, vals[3] > syncengine.AreaLen*16, vals[4] != uint64(len(b)):
		return pullCursor{}, bad
	}
	if len(b) > 0 {
		c.page = slices.Clone(b)
	}
	return c, nil
}

// scopePrefixes sorts areas and drops every prefix another one covers, so no
// record is sent twice (syncengine.ParseScope; a device's areas were
// checked when it was enrolled).
func scopePrefixes(areas []string) []string {
	s, err := syncengine.ParseScope(areas)
	if err != nil {
		return nil
	}
	return s.Prefixes()
}

func scopeHash(prefixes []string, epoch string) uint32 {
	in := strings.Join(prefixes, ",")
	if epoch != "" {
		in += ";" + epoch
	}
	h := sha256.Sum256([]byte(in))
	return binary.BigEndian.Uint32(h[:4])
}

// Pull streams, after the caller's cursor, a snapshot if the cursor is empty,
// expired or for other areas, then the log entries in the caller's areas not
// made by the caller. Each response carries its cursor; the last is caught_up.
// Responses hold about max_batch_bytes (at most the configured pull size) of
// encoded changes or records; one record or change larger than that goes alone.
//
// Records move between areas (moves.go): a record that enters the caller's
// areas is sent whole, in the response of the change that brought it; the
// change that took a record out of them is sent, so the caller forgets it;
// and before a snapshot that replaces a cursor, the changes that took records
// out since that cursor are sent (departures).
func (v syncService) Pull(req *fieldsyncv1.PullRequest, stream grpc.ServerStreamingServer[fieldsyncv1.PullResponse]) error {
	s, ctx := v.s, stream.Context()
	p, err := peer(ctx)
	if err != nil {
		return err
	}
	prefixes := scopePrefixes(p.Areas)
	// A snapshot from upstream that changed records here starts a new epoch:
	// those changes are not in the log, so every cursor takes a snapshot.
	epoch, err := s.snapshotEpoch(ctx)
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	scope := scopeHash(prefixes, epoch)
	limit := s.cfg.MaxPullBytes
	if m := int(req.GetMaxBatchBytes()); req.MaxBatchBytes != nil && m < limit {
		limit = max(m, 1024)
	}
	var cur pullCursor
	var departed *pullCursor // the cursor a new snapshot replaces
	cause := fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_NO_CURSOR
	if tok := req.GetCursor().GetToken(); len(tok) > 0 {
		if cur, err = decodeCursor(tok); err != nil {
			return err
		}
		cause = fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_UNSPECIFIED
		if cur.scope != scope {
			cause = fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_SCOPE_CHANGED
			departed = &pullCursor{phase: phaseLog, pos: cur.pos, scope: cur.scope}
		}
	}
	ps := pullSession{s: s, stream: stream, self: p.ID, prefixes: prefixes, limit: limit, readable: req.GetReadableState()}
	for attempt := 0; ; attempt++ {
		if cause != fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_UNSPECIFIED {
			end, err := s.store.LogEnd(ctx)
			if err != nil {
				return fmt.Errorf("pull: %w", err)
			}
			// A snapshot only adds records: first tell the caller which of
			// those it may hold have left its areas since its cursor, through
			// at least the snapshot's position (later moves follow it).
			if departed != nil {
				if err := ps.departures(ctx, *departed); err != nil {
					return err
				}
				departed = nil
			}
			cur = pullCursor{phase: phaseSnapshot, pos: end, scope: scope}
		}
		if cur.phase == phaseSnapshot {
			if err := ps.snapshot(ctx, &cur, cause); err != nil {
				return err
			}
		}
		err := ps.log(ctx, &cur)
		if errors.Is(err, syncengine.ErrCompacted) && attempt == 0 {
			cause = fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_CURSOR_EXPIRED
			continue
		}
		if err == nil {
			s.log.InfoContext(ctx, "pull", "device", p.ID.String(), "through", uint64(cur.pos), "responses", ps.sent)
			done, through := s.now(), cur.pos
			s.noteActivity(ctx, p.ID, func(a *boltstore.Activity) { a.LastSync, a.PulledThrough = done, through })
		}
		return err
	}
}

// pullSession is the state of one Pull stream.
type pullSession struct {
	s        *Server
	stream   grpc.ServerStreamingServer[fieldsyncv1.PullResponse]
	self     syncengine.ReplicaID
	prefixes []string
	limit    int
	readable bool // fill the readable view of snapshot records
	sent     int
	// departing: the log phase sends only the changes that took records
	// out of the caller's areas (departures).
	departing bool
}

func (ps *pullSession) send(resp *fieldsyncv1.PullResponse) error {
	if err := ps.stream.Send(resp); err != nil {
		return fmt.Errorf("pull: send: %w", err)
	}
	ps.sent++
	return nil
}

// snapshot sends the snapshot from cur on, BEGIN marked when cause is set
// (a new snapshot), and leaves cur in phaseLog after the END response.
func (ps *pullSession) snapshot(ctx context.Context, cur *pullCursor, cause fieldsyncv1.SnapshotCause) error {
	first := cause != fieldsyncv1.SnapshotCause_SNAPSHOT_CAUSE_UNSPECIFIED
	if cur.prefix > len(ps.prefixes) || (cur.prefix == len(ps.prefixes) && cur.page != nil) {
		return fmt.Errorf("%w: snapshot past the last area", ErrBadCursor)
	}
	for {
		resp := &fieldsyncv1.PullResponse{}
		if first {
			resp.Snapshot = &fieldsyncv1.SnapshotMarker{Phase: fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN, Cause: cause}
		}
		size := 0
		for size < ps.limit && cur.prefix < len(ps.prefixes) {
			recs, n, next, full, err := ps.snapshotChunk(ctx, ps.prefixes[cur.prefix], cur.page, ps.limit-size, len(resp.Records) == 0)
			if err != nil {
				return err
			}
			if full {
				break
			}
			resp.Records, size = append(resp.Records, recs...), size+n
			if cur.page = next; next == nil {
				cur.prefix++
			}
		}
		if cur.prefix == len(ps.prefixes) && !first {
			resp.Snapshot = &fieldsyncv1.SnapshotMarker{Phase: fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END}
			cur.phase, cur.prefix, cur.page = phaseLog, 0, nil
		}
		resp.Cursor = cur.token()
		if err := ps.send(resp); err != nil {
			return err
		}
		if cur.phase == phaseLog {
			return nil
		}
		first = false
	}
}

// snapshotChunk reads the records of prefix after token that fit in budget
// bytes (at least one when must is set) and returns them, their encoded size
// and the token to continue from (nil at the end of the prefix). When nothing
// fits and must is unset it reports full and reads nothing.
func (ps *pullSession) snapshotChunk(ctx context.Context, prefix string, token []byte, budget int, must bool) (recs []*fieldsyncv1.RecordState, size int, next []byte, full bool, err error) {
	for n := snapshotPageLimit; ; {
		page, err := ps.s.store.Snapshot(ctx, prefix, token, n)
		if errors.Is(err, boltstore.ErrInvalidToken) {
			return nil, 0, nil, false, fmt.Errorf("%w: %v", ErrBadCursor, err)
		}
		if err != nil {
			return nil, 0, nil, false, fmt.Errorf("pull: %w", err)
		}
		// A record a concurrent edit took back out of its new village is
		// settled there first, and the page read again without it.
		if settled, err := ps.s.settleMoves(ctx, unsettledIDs(page.Records)); err != nil {
			return nil, 0, nil, false, fmt.Errorf("pull: %w", err)
		} else if settled > 0 {
			continue
		}
		out := make([]*fieldsyncv1.RecordState, 0, len(page.Records))
		size, fit := 0, 0
		for _, r := range page.Records {
			rs := wire.RecordStateToProto(r, ps.readable)
			sz := proto.Size(rs)
			if size+sz > budget && !(must && fit == 0) {
				break
			}
			out, size, fit = append(out, rs), size+sz, fit+1
		}
		switch {
		case fit == len(page.Records):
			return out, size, page.Next, false, nil
		case fit == 0:
			return nil, 0, token, true, nil
		}
		n = fit // read again, only what fits, so the page token is right
	}
}

// log sends the log entries in the caller's areas after cur.pos, not the
// caller's own, until caught up. It returns an error wrapping
// syncengine.ErrCompacted when cur.pos is before the compacted log.
func (ps *pullSession) log(ctx context.Context, cur *pullCursor) error {
	for {
		resp := &fieldsyncv1.PullResponse{}
		caughtUp, err := ps.fillLog(ctx, cur, resp)
		if err != nil {
			return err
		}
		resp.Cursor, resp.CaughtUp = cur.token(), caughtUp
		if err := ps.send(resp); err != nil {
			return err
		}
		if caughtUp {
			return nil
		}
	}
}

// departures sends, before a snapshot that replaces the caller's cursor old
// (its areas or the server's snapshot epoch changed), the changes after old
// that took records out of the caller's areas and that it did not make: a
// snapshot sends the records in the areas and says nothing of those that
// left, which the caller would otherwise keep. Its responses carry old's
// scope, so a pull cut short starts them again from where they got to, and
// then the snapshot. A log compacted past old has nothing left to tell: a
// phone then drops, as the snapshot ends, every record it did not bring
// (syncclient's unseenSweeper).
func (ps *pullSession) departures(ctx context.Context, old pullCursor) error {
	ps.departing = true
	defer func() { ps.departing = false }()
	for {
		resp := &fieldsyncv1.PullResponse{}
		caughtUp, err := ps.fillLog(ctx, &old, resp)
		if errors.Is(err, syncengine.ErrCompacted) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(resp.Changes) > 0 {
			resp.Cursor = old.token()
			if err := ps.send(resp); err != nil {
				return err
			}
		}
		if caughtUp {
			return nil
		}
	}
}

// fillLog adds changes after cur.pos to resp up to the size limit, moving
// cur.pos to the last position accounted for, and reports whether that is the
// end of the log. It settles the moves it reads first (settleMoves), and
// adds, before a change that brought a record into the caller's areas, the
// record's current state.
func (ps *pullSession) fillLog(ctx context.Context, cur *pullCursor, resp *fieldsyncv1.PullResponse) (bool, error) {
	if len(ps.prefixes) == 0 {
		return true, nil
	}
	size := 0
	for {
		entries, through, err := ps.s.store.ReadLogAreaMoves(ctx, ps.prefixes, cur.pos, logPageLimit)
		if err != nil {
			return false, fmt.Errorf("pull: %w", err)
		}
		states, settled, err := ps.s.movedStates(ctx, entries, ps.prefixes, ps.self)
		if err != nil {
			return false, fmt.Errorf("pull: %w", err)
		}
		for _, e := range entries {
			if e.Change.Origin == ps.self || e.Entry.From == ps.self {
				// The caller made it, or sent it here: it has it.
				cur.pos = e.Pos
				continue
			}
			// A record that enters the caller's areas goes whole, before
			// the change that brought it (the client merges a response's
			// records first); one that has left them again since, not at
			// all. A record that leaves them goes as the change that took it
			// out, even if it is back (a later entry brings it whole): it
			// tells the devices, which then forget the record, and a relay,
			// whose log must say that the record left for its own devices.
			var rs *fieldsyncv1.RecordState
			r, here := states[e.Change.RecordID]
			switch {
			case ps.departing && e.Move != boltstore.MovesOut:
				cur.pos = e.Pos
				continue
			case e.Move == boltstore.MovesIn && !here:
				cur.pos = e.Pos
				continue
			case e.Move == boltstore.MovesIn:
				rs = wire.RecordStateToProto(r, ps.readable)
			}
			// The client merges a response's records before it applies its
			// changes: a record's state starts a response, so that the
			// changes before it are applied first (a relay files them
			// under the areas the record was in then).
			if rs != nil && len(resp.Changes) > 0 {
				return false, nil
			}
			pc, err := wire.ChangeToProto(e.Change)
			if err != nil {
				return false, fmt.Errorf("pull: log position %d: %w", e.Pos, err)
			}
			sz := proto.Size(pc) + proto.Size(rs)
			if size > 0 && size+sz > ps.limit {
				return false, nil
			}
			if rs != nil {
				resp.Records = append(resp.Records, rs)
			}
			resp.Changes, size, cur.pos = append(resp.Changes, pc), size+sz, e.Pos
		}
		cur.pos = max(cur.pos, through)
		// The changes that settled moves follow the page: read on.
		if len(entries) < logPageLimit && settled == 0 {
			return true, nil
		}
	}
}
