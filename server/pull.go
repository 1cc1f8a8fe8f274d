package server

import (
	"crypto/sha256"
	"encoding/binary"
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

// logPageLimit is the most log entries read per log read of the admin
// and relay paths.
const logPageLimit = 128

// pullCursor is the engine's cursor with the scope hash it was issued for.
type pullCursor struct {
	syncengine.PullCursor
	scope uint32
}

func (c pullCursor) token() *fieldsyncv1.Cursor {
	b := []byte{cursorVersion}
	b = binary.AppendUvarint(b, uint64(c.Phase))
	b = binary.AppendUvarint(b, uint64(c.Pos))
	b = binary.AppendUvarint(b, uint64(c.scope))
	b = binary.AppendUvarint(b, uint64(c.Prefix))
	b = binary.AppendUvarint(b, uint64(len(c.Page)))
	b = append(b, c.Page...)
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
	switch phase := syncengine.PullPhase(vals[0]); {
	case vals[0] > 255, phase != syncengine.PullSnapshot && phase != syncengine.PullLog,
		vals[2] > 1<<32-1, vals[3] > syncengine.AreaLen*16, vals[4] != uint64(len(b)):
		return pullCursor{}, bad
	}
	c := pullCursor{PullCursor: syncengine.PullCursor{Phase: syncengine.PullPhase(vals[0]), Pos: syncengine.Position(vals[1]), Prefix: int(vals[3])}, scope: uint32(vals[2])}
	if len(b) > 0 {
		c.Page = slices.Clone(b)
	}
	return c, nil
}

func scopeHash(prefixes []string, epoch string) uint32 {
	in := strings.Join(prefixes, ",")
	if epoch != "" {
		in += ";" + epoch
	}
	h := sha256.Sum256([]byte(in))
	return binary.BigEndian.Uint32(h[:4])
}

// Pull streams the pages of the caller's pull (syncengine.Puller) after its
// cursor: a snapshot if the cursor is empty, expired or for other areas, then
// the log entries in the caller's areas not made by the caller. Each response
// carries its cursor; the last is caught_up. Responses hold about
// max_batch_bytes (at most the configured pull size) of encoded changes or
// records; one record or change larger than that goes alone. The server
// settles the moves a pull reads (moveSettler).
func (v syncService) Pull(req *fieldsyncv1.PullRequest, stream grpc.ServerStreamingServer[fieldsyncv1.PullResponse]) error {
	s, ctx := v.s, stream.Context()
	p, err := peer(ctx)
	if err != nil {
		return err
	}
	areas, err := syncengine.ParseScope(p.Areas)
	if err != nil {
		return fmt.Errorf("pull: the device's areas: %w", err)
	}
	// A snapshot from upstream that changed records here starts a new epoch:
	// those changes are not in the log, so every cursor takes a snapshot.
	epoch, err := s.snapshotEpoch(ctx)
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	scope := scopeHash(areas.Prefixes(), epoch)
	limit := s.cfg.MaxPullBytes
	if m := int(req.GetMaxBatchBytes()); req.MaxBatchBytes != nil && m < limit {
		limit = max(m, 1024)
	}
	pr := syncengine.PullRequest{Puller: p.ID, Scope: areas, Limit: limit}
	var old uint32 // the scope of the caller's cursor
	if tok := req.GetCursor().GetToken(); len(tok) > 0 {
		cur, err := decodeCursor(tok)
		if err != nil {
			return err
		}
		pr.Cursor, pr.ScopeChanged, old = cur.PullCursor, cur.scope != scope, cur.scope
	}
	sent := 0
	puller := syncengine.Puller[*fieldsyncv1.RecordState, *fieldsyncv1.Change]{
		Log: s.store, Encoder: pullEncoder{readable: req.GetReadableState(), packed: req.GetPacked() && wire.SameSchema(req.GetRecordSchema())}, Settler: moveSettler{s},
	}
	cur, err := puller.Pull(ctx, pr, func(pg syncengine.PullPage[*fieldsyncv1.RecordState, *fieldsyncv1.Change]) error {
		tok := pullCursor{PullCursor: pg.Cursor, scope: scope}
		if pg.Departures {
			tok.scope = old
		}
		resp := &fieldsyncv1.PullResponse{Records: pg.Records, Changes: pg.Changes, Cursor: tok.token(), CaughtUp: pg.CaughtUp}
		switch {
		case pg.Begin != syncengine.NoSnapshot:
			resp.Snapshot = &fieldsyncv1.SnapshotMarker{Phase: fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_BEGIN, Cause: fieldsyncv1.SnapshotCause(pg.Begin)}
		case pg.End:
			resp.Snapshot = &fieldsyncv1.SnapshotMarker{Phase: fieldsyncv1.SnapshotPhase_SNAPSHOT_PHASE_END}
		}
		if err := stream.Send(resp); err != nil {
			return fmt.Errorf("pull: send: %w", err)
		}
		sent++
		return nil
	})
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "pull", "device", p.ID.String(), "through", uint64(cur.Pos), "responses", sent)
	done, through := s.now(), cur.Pos
	s.noteActivity(ctx, p.ID, func(a *boltstore.Activity) { a.LastSync, a.PulledThrough = done, through })
	return nil
}

// pullEncoder encodes a pull's records and changes for the wire, the
// records with their readable view and the changes' records packed when the
// caller asked for it.
type pullEncoder struct{ readable, packed bool }

func (e pullEncoder) EncodeRecord(r syncengine.Record) (*fieldsyncv1.RecordState, int) {
	rs := wire.RecordStateToProto(r, e.readable)
	return rs, proto.Size(rs)
}

func (e pullEncoder) EncodeChange(c syncengine.Change) (*fieldsyncv1.Change, int, error) {
	pc, err := wire.ChangeToProto(c)
	if err == nil && e.packed {
		err = wire.PackChange(pc)
	}
	if err != nil {
		return nil, 0, err
	}
	return pc, proto.Size(pc), nil
}
