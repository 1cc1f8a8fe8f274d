package fieldsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// Rejection is a change of this device the server refused for good.
type Rejection struct {
	ChangeID string
	RecordID string
	// Outcome is the engine's outcome name ("invalid", "out_of_scope", ...).
	Outcome string
	// Reason is the server's reason code, the protocol's Reason name without
	// its prefix ("INVALID_RECORD", "DOT_REUSED", ...); "" from a server
	// older than reason codes.
	Reason  string `json:",omitempty"`
	Message string
	Fields  []survey.FieldError `json:",omitempty"`
}

// PendingChange is a change of this device the server has not acknowledged.
type PendingChange struct {
	ChangeID string
	RecordID string
	Kind     string // the record's kind, as ParseKind names it
}

// Status is the device's sync state.
type Status struct {
	// Server is the address of the server the device enrolled with ("" before
	// enrolment).
	Server string
	// Pending is the number of the device's changes the server has not
	// acknowledged.
	Pending int
	// PendingChanges lists those changes, oldest first.
	PendingChanges []PendingChange
	// Rejected lists the device's changes the server refused, with reasons.
	Rejected []Rejection
	// LastSuccess is the end of the last Sync that succeeded (zero if none).
	LastSuccess time.Time
	// LastError is the error of the last Sync if it failed, else "".
	LastError string
	// Refused says, in a few words, why the server refused the device at
	// the last Sync (revoked, or its token unknown), or "" (DeviceRefused).
	Refused string
	// Upstream is set when the server relays to an upstream tier (a
	// township to its county), as the last sync learnt.
	Upstream bool
	// AtServer counts the device's changes the server has accepted and its
	// upstream tier not yet; AtUpstream those the upstream tier has too (see
	// Receipts). Without an upstream, AtServer counts every accepted change.
	AtServer, AtUpstream int
}

// Status returns the device's sync state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	addr, err := c.store.Meta(ctx, metaServerAddr)
	if err != nil {
		return Status{}, fmt.Errorf("fieldsync: status: %w", err)
	}
	st.Server = string(addr)
	// One pass over the log gives the pending changes and the receipts.
	if st.Rejected, err = c.rejections(ctx); err != nil {
		return Status{}, fmt.Errorf("fieldsync: status: %w", err)
	}
	if st.Upstream, _, err = c.upstreamReceipt(ctx); err != nil {
		return Status{}, fmt.Errorf("fieldsync: status: %w", err)
	}
	err = c.eachOwnChange(ctx, func(r Receipt) {
		switch r.Stage {
		case StageDevice:
			st.Pending++
			st.PendingChanges = append(st.PendingChanges, PendingChange{ChangeID: r.ChangeID, RecordID: r.RecordID, Kind: r.Kind})
		case StageServer:
			st.AtServer++
		case StageUpstream:
			st.AtUpstream++
		}
	})
	if err != nil {
		return Status{}, fmt.Errorf("fieldsync: status: %w", err)
	}
	if b, err := c.store.Meta(ctx, metaLastSuccess); err != nil {
		return Status{}, fmt.Errorf("fieldsync: status: %w", err)
	} else if len(b) > 0 {
		st.LastSuccess, _ = time.Parse(time.RFC3339Nano, string(b))
	}
	b, err := c.store.Meta(ctx, metaLastError)
	if err != nil {
		return Status{}, fmt.Errorf("fieldsync: status: %w", err)
	}
	st.LastError = string(b)
	if b, err = c.store.Meta(ctx, metaLastRefused); err != nil {
		return Status{}, fmt.Errorf("fieldsync: status: %w", err)
	}
	st.Refused = string(b)
	return st, nil
}

// rejections returns the device's changes its server refused for good, in
// log order, from the replica's one record of them (written with the
// server's receipt: sqlitestore.Store.Rejections).
func (c *Client) rejections(ctx context.Context) ([]Rejection, error) {
	srv, err := c.serverReplica(ctx)
	if err != nil {
		return nil, err
	}
	rs, err := c.store.Rejections(ctx, srv) // none before enrolment (srv zero)
	if err != nil {
		return nil, err
	}
	legacy, err := c.legacyRejections(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Rejection, len(rs))
	for i, r := range rs {
		out[i] = Rejection{ChangeID: r.ID.String(), RecordID: r.RecordID.String(), Outcome: r.Outcome.String(), Reason: r.Reason, Message: r.Detail}
		for _, f := range r.Fields {
			out[i].Fields = append(out[i].Fields, survey.FieldError{Path: f.Path, Reason: fieldsyncv1.FieldErrorReason(f.Reason), Message: f.Message})
		}
		if len(out[i].Fields) == 0 {
			out[i].Fields = legacy[out[i].ChangeID]
		}
	}
	return out, nil
}

// legacyRejections returns the field errors of the rejections a replica of
// an earlier version kept in its meta table (metaRejections), by change id:
// its rejections table lacks them.
func (c *Client) legacyRejections(ctx context.Context) (map[string][]survey.FieldError, error) {
	b, err := c.store.Meta(ctx, metaRejections)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	var old []Rejection
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, errors.New("stored rejections are damaged")
	}
	out := make(map[string][]survey.FieldError, len(old))
	for _, r := range old {
		out[r.ChangeID] = r.Fields
	}
	return out, nil
}
