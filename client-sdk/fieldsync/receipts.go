package fieldsync

import (
	"context"
	"encoding/binary"
	"fmt"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
)

// Meta keys of the upstream receipt: whether the server relays to an upstream
// tier, and the counter through which that tier has the device's changes.
const (
	metaHasUpstream     = "sdk_has_upstream"
	metaUpstreamCounter = "sdk_upstream_counter"
)

// Stages of a change's journey, in Receipt.Stage.
const (
	// StageDevice: on the device only, not yet acknowledged by its server.
	StageDevice = "device"
	// StageServer: accepted by the device's server (the township), not yet
	// by the server's upstream tier (the county). A server without an
	// upstream is the top tier: its acceptance is final.
	StageServer = "server"
	// StageUpstream: accepted by the server's upstream tier (the county).
	StageUpstream = "upstream"
	// StageRejected: refused for good (listed in Status.Rejected).
	StageRejected = "rejected"
)

// Receipt is how far one change of the device has travelled.
type Receipt struct {
	ChangeID string
	RecordID string
	Kind     string // the record's kind, as ParseKind names it
	Stage    string // StageDevice, StageServer, StageUpstream or StageRejected
}

// saveReceipt stores how far the server's upstream tier has accepted the
// device's changes, as the handshake told.
func (c *Client) saveReceipt(ctx context.Context, hello *fieldsyncv1.HelloResponse) error {
	has := []byte{0}
	if hello.GetHasUpstream() {
		has[0] = 1
	}
	if err := c.store.SetMeta(ctx, metaHasUpstream, has); err != nil {
		return err
	}
	return c.store.SetMeta(ctx, metaUpstreamCounter, binary.BigEndian.AppendUint64(nil, hello.GetUpstreamAcknowledgedCounter()))
}

// upstreamReceipt returns whether the server has an upstream tier and the
// counter through which the tier has the device's changes, as last told.
func (c *Client) upstreamReceipt(ctx context.Context) (bool, uint64, error) {
	has, err := c.store.Meta(ctx, metaHasUpstream)
	if err != nil {
		return false, 0, err
	}
	b, err := c.store.Meta(ctx, metaUpstreamCounter)
	if err != nil {
		return false, 0, err
	}
	var n uint64
	if len(b) == 8 {
		n = binary.BigEndian.Uint64(b)
	}
	return len(has) == 1 && has[0] == 1, n, nil
}

// Receipts returns how far each change the device made has travelled, oldest
// first: still on the device, accepted by its server (the township), or
// accepted by the server's upstream tier (the county), as the last sync
// learnt; or rejected. The upstream's acceptance travels down at the
// device's next sync after the township synced with the county.
func (c *Client) Receipts(ctx context.Context) ([]Receipt, error) {
	var out []Receipt
	err := c.eachOwnChange(ctx, func(r Receipt) { out = append(out, r) })
	if err != nil {
		return nil, fmt.Errorf("fieldsync: receipts: %w", err)
	}
	return out, nil
}

// eachOwnChange calls fn with the receipt of each change of the device, in
// log order.
func (c *Client) eachOwnChange(ctx context.Context, fn func(Receipt)) error {
	srv, err := c.serverReplica(ctx)
	if err != nil {
		return err
	}
	hasUp, upTo, err := c.upstreamReceipt(ctx)
	if err != nil {
		return err
	}
	rejected, err := c.rejections(ctx)
	if err != nil {
		return err
	}
	refused := make(map[string]bool, len(rejected))
	for _, r := range rejected {
		refused[r.ChangeID] = true
	}
	self := c.store.Replica()
	return c.store.View(ctx, func(tx syncengine.ReadTx) error {
		cur, err := tx.Cursor(ctx, srv)
		if err != nil {
			return err
		}
		for after := syncengine.Position(0); ; {
			page, err := tx.ReadLog(ctx, after, syncengine.DefaultBatchLimit)
			if err != nil {
				return err
			}
			for _, e := range page {
				after = e.Pos
				ch := &e.Change
				if ch.Origin != self {
					continue
				}
				r := Receipt{ChangeID: ch.ID.String(), RecordID: ch.RecordID.String(), Kind: kindName(fieldsyncv1.RecordKind(ch.Kind))}
				switch {
				case refused[r.ChangeID]:
					r.Stage = StageRejected
				case e.Pos > cur.Acked:
					r.Stage = StageDevice
				case hasUp && ch.Dot.Counter <= upTo:
					r.Stage = StageUpstream
				default:
					r.Stage = StageServer
				}
				fn(r)
			}
			if len(page) < syncengine.DefaultBatchLimit {
				return nil
			}
		}
	})
}
