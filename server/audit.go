package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncclient"
	"github.com/fieldsync/fieldsync/syncengine"
)

// The audit trail records every admin action a server takes, in the
// transaction of the action (boltstore.AppendAuditTx): who (the operator the
// CLI names, and that the admin token authenticated the call), what (an
// action and its target: ids, areas, statuses, never names, ID numbers,
// tokens or codes), when and from where. A township relays its entries to its
// county after each round (PushAudit); the county keeps them beside its own.

// OperatorMetadata is the gRPC metadata key under which an admin call names
// its operator: UTF-8, percent-encoded (RFC 3986), since metadata values are
// ASCII. The server records at most maxAuditWho characters of it.
const OperatorMetadata = "fieldsync-operator"

// Bounds of the strings of an audit entry, in characters: what the server
// records is cut to them, and a relayed entry beyond them is refused.
const (
	maxAuditWho    = 64
	maxAuditFrom   = 100
	maxAuditTarget = 100
	maxAuditDetail = 300
)

// MaxPushAudit is the most entries one PushAudit may carry.
const MaxPushAudit = 500

// maxPushAuditBytes bounds the entries a relay sends in one PushAudit,
// encoded, well below the server's message limit.
const maxPushAuditBytes = 256 << 10

// maxAuditPage is the most entries ListAudit returns at once.
const maxAuditPage = 1000

// unknownOperator is who an entry records when the call names no one.
const unknownOperator = "unknown"

// metaUpstreamAudit keeps the sequence through which the county acknowledged
// this township's audit entries (decimal).
const metaUpstreamAudit = "upstream_audit_acked"

// metaRules keeps the SHA-256 (hex) of the canonical form of the rules the
// server set at its last start (Config.Rules, or the defaults).
const metaRules = "rules_sha256"

// actor is who asked for an admin action, and from where.
type actor struct {
	who, from  string
	adminToken bool
}

type actorKey struct{}

// withAdminActor returns ctx with the actor of an admin call the admin token
// authenticated: the operator its metadata names and the peer's address.
func withAdminActor(ctx context.Context) context.Context {
	a := actor{who: unknownOperator, from: unknownOperator, adminToken: true}
	md, _ := metadata.FromIncomingContext(ctx)
	if vs := md.Get(OperatorMetadata); len(vs) > 0 {
		name, err := url.PathUnescape(vs[0])
		if err != nil {
			name = vs[0]
		}
		if name = clean(name, maxAuditWho); name != "" {
			a.who = name
		}
	}
	if p, ok := grpcpeer.FromContext(ctx); ok && p.Addr != nil {
		a.from = clean(p.Addr.String(), maxAuditFrom)
	}
	return context.WithValue(ctx, actorKey{}, a)
}

// clean makes s fit an audit entry: invalid UTF-8 and control characters
// become spaces, the ends are trimmed, and it is cut to at most n
// characters.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}

// actionWord is the stable word the store keeps for action ("device_add");
// a value this build does not know (an action of a newer township) is kept
// as "action_N".
func actionWord(action fieldsyncv1.AuditAction) string {
	if name, ok := fieldsyncv1.AuditAction_name[int32(action)]; ok {
		return strings.ToLower(strings.TrimPrefix(name, "AUDIT_ACTION_"))
	}
	return "action_" + strconv.Itoa(int(action))
}

// actionOf is the inverse of actionWord; UNSPECIFIED for a word it did not
// make.
func actionOf(word string) fieldsyncv1.AuditAction {
	if v, ok := fieldsyncv1.AuditAction_value["AUDIT_ACTION_"+strings.ToUpper(word)]; ok {
		return fieldsyncv1.AuditAction(v)
	}
	if n, err := strconv.ParseInt(strings.TrimPrefix(word, "action_"), 10, 32); err == nil && strings.HasPrefix(word, "action_") {
		return fieldsyncv1.AuditAction(n)
	}
	return fieldsyncv1.AuditAction_AUDIT_ACTION_UNSPECIFIED
}

// audit records, in tx, the admin action the call of ctx takes on target,
// with detail (ids, areas, statuses: never personal data, tokens or codes).
// The call's actor is the one the interceptor put in ctx.
func (s *Server) audit(ctx context.Context, tx syncengine.Tx, action fieldsyncv1.AuditAction, target, detail string) error {
	a, ok := ctx.Value(actorKey{}).(actor)
	if !ok {
		return errors.New("audit: an admin action without an authenticated actor")
	}
	_, err := boltstore.AppendAuditTx(ctx, tx, boltstore.AuditEntry{
		At: s.now(), Action: actionWord(action), Who: a.who, AdminToken: a.adminToken, From: a.from,
		Target: clean(target, maxAuditTarget), Detail: clean(detail, maxAuditDetail),
	})
	return err
}

// noteRules records a change of the rules this server sets (Config.Rules)
// since its last start: an entry by Config.Operator, from "local", naming the
// rules' source and the hash of their canonical form. The first start records
// one only when it sets rules of its own.
func (s *Server) noteRules(ctx context.Context) error {
	r, err := survey.RulesFromProto(s.cfg.Rules)
	if err != nil {
		return fmt.Errorf("survey rules: %w", err)
	}
	canonical, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Proto(""))
	if err != nil {
		return err
	}
	h := sha256.Sum256(canonical)
	sum := hex.EncodeToString(h[:])
	old, err := s.store.Meta(ctx, metaRules)
	if err != nil || string(old) == sum {
		return err
	}
	source := s.cfg.Rules.GetSource()
	if s.cfg.Rules == nil {
		source = "defaults"
	}
	who := clean(s.cfg.Operator, maxAuditWho)
	if who == "" {
		who = unknownOperator
	}
	detail := fmt.Sprintf("sha256 %.12s: %s", sum, r)
	if old != nil {
		detail = fmt.Sprintf("sha256 %.12s (was %.12s): %s", sum, old, r)
	}
	return s.store.Update(ctx, func(tx syncengine.Tx) error {
		if err := tx.SetMeta(ctx, metaRules, []byte(sum)); err != nil || (old == nil && s.cfg.Rules == nil) {
			return err
		}
		_, err := boltstore.AppendAuditTx(ctx, tx, boltstore.AuditEntry{
			At: s.now(), Action: actionWord(fieldsyncv1.AuditAction_AUDIT_ACTION_RULES_CHANGE), Who: who, From: "local",
			Target: clean(source, maxAuditTarget), Detail: clean(detail, maxAuditDetail),
		})
		if err == nil {
			s.log.Info("survey rules changed since the last start", "source", source, "sha256", sum)
		}
		return err
	})
}

func auditToProto(e boltstore.AuditEntry) *fieldsyncv1.AuditEntry {
	return &fieldsyncv1.AuditEntry{
		Sequence: e.Seq, RecordedBy: e.RecordedBy[:], At: timestamppb.New(e.At), Action: actionOf(e.Action),
		Who: e.Who, AdminToken: e.AdminToken, From: e.From, Target: e.Target, Detail: e.Detail,
	}
}

// auditFromProto checks an entry relay pushed and converts it. It refuses an
// entry another server recorded, one without a number, time or action, and
// strings that are not UTF-8, hold control characters or exceed their bounds.
func auditFromProto(pe *fieldsyncv1.AuditEntry, relay syncengine.ReplicaID) (boltstore.AuditEntry, error) {
	var e boltstore.AuditEntry
	switch by := pe.GetRecordedBy(); {
	case len(by) != len(relay):
		return e, fmt.Errorf("recorded_by has %d bytes, want 16", len(by))
	case syncengine.ReplicaID(by) != relay:
		return e, fmt.Errorf("recorded_by %v is not the relay %v: a township relays only the entries it recorded", syncengine.ReplicaID(by), relay)
	case pe.GetSequence() == 0:
		return e, errors.New("sequence 0: entries are numbered from 1")
	case pe.GetAt() == nil || pe.GetAt().CheckValid() != nil:
		return e, errors.New("at is not a valid time")
	case pe.GetAction() <= fieldsyncv1.AuditAction_AUDIT_ACTION_UNSPECIFIED:
		return e, fmt.Errorf("action %d is not an action", pe.GetAction())
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"who", pe.GetWho(), maxAuditWho}, {"from", pe.GetFrom(), maxAuditFrom}, {"target", pe.GetTarget(), maxAuditTarget}, {"detail", pe.GetDetail(), maxAuditDetail}} {
		switch n := utf8.RuneCountInString(f.v); {
		case !utf8.ValidString(f.v):
			return e, fmt.Errorf("%s is not valid UTF-8", f.name)
		case n > f.max:
			return e, fmt.Errorf("%s has %d characters, at most %d", f.name, n, f.max)
		case strings.ContainsFunc(f.v, unicode.IsControl):
			return e, fmt.Errorf("%s holds a control character", f.name)
		}
	}
	return boltstore.AuditEntry{
		RecordedBy: relay, Seq: pe.GetSequence(), At: pe.GetAt().AsTime(), Action: actionWord(pe.GetAction()),
		Who: pe.GetWho(), AdminToken: pe.GetAdminToken(), From: pe.GetFrom(), Target: pe.GetTarget(), Detail: pe.GetDetail(),
	}, nil
}

// ListAudit lists a page of the audit trail, oldest first: this server's
// entries and those its townships relayed. It answers InvalidArgument for an
// invalid since and a page token it did not make.
func (a admin) ListAudit(ctx context.Context, req *fieldsyncv1.ListAuditRequest) (*fieldsyncv1.ListAuditResponse, error) {
	var since time.Time
	if req.Since != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			return nil, fmt.Errorf("list audit: %w: since: %v", ErrBadRequest, err)
		}
		since = req.GetSince().AsTime()
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > maxAuditPage {
		limit = maxAuditPage
	}
	page := req.GetPageToken()
	if len(page) == 0 {
		page = nil
	}
	es, next, err := a.s.store.Audit(ctx, since, page, limit)
	if errors.Is(err, boltstore.ErrInvalidToken) {
		return nil, fmt.Errorf("list audit: %w: page_token is not one this server made", ErrBadRequest)
	}
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	resp := &fieldsyncv1.ListAuditResponse{NextPageToken: next}
	for _, e := range es {
		resp.Entries = append(resp.Entries, auditToProto(e))
	}
	return resp, nil
}

// PushAudit stores the audit entries a relaying township recorded; an entry
// held already is not stored again. It answers PermissionDenied to a device
// that is not a relay, and InvalidArgument, naming the entry and the problem,
// for a batch of more than MaxPushAudit entries or with an entry
// auditFromProto refuses; nothing of a refused batch is stored.
func (v syncService) PushAudit(ctx context.Context, req *fieldsyncv1.PushAuditRequest) (*fieldsyncv1.PushAuditResponse, error) {
	s := v.s
	p, err := peer(ctx)
	if err != nil {
		return nil, err
	}
	if !p.Relay {
		return nil, fmt.Errorf("push audit from device %v: %w", p.ID, ErrNotRelay)
	}
	if n := len(req.GetEntries()); n > MaxPushAudit {
		return nil, fmt.Errorf("push audit from relay %v: %w: %d entries, at most %d", p.ID, ErrBadRequest, n, MaxPushAudit)
	}
	entries := make([]boltstore.AuditEntry, 0, len(req.GetEntries()))
	for i, pe := range req.GetEntries() {
		e, err := auditFromProto(pe, p.ID)
		if err != nil {
			return nil, fmt.Errorf("push audit from relay %v: %w: entry %d (sequence %d): %v", p.ID, ErrBadRequest, i, pe.GetSequence(), err)
		}
		entries = append(entries, e)
	}
	stored, differ, err := s.store.PutAudit(ctx, entries)
	if errors.Is(err, boltstore.ErrInvalidAudit) {
		return nil, fmt.Errorf("push audit from relay %v: %w: %v", p.ID, ErrBadRequest, err)
	}
	if err != nil {
		return nil, fmt.Errorf("push audit from relay %v: %w", p.ID, err)
	}
	if differ > 0 {
		s.log.WarnContext(ctx, "relayed audit entries differ from those held under their numbers; kept the first", "relay", p.ID.String(), "count", differ)
	}
	s.log.InfoContext(ctx, "audit entries relayed", "relay", p.ID.String(), "received", len(entries), "new", stored)
	return &fieldsyncv1.PushAuditResponse{Stored: uint32(stored)}, nil
}

// pushAudit sends the county, on the relay's round connection, the audit
// entries this server recorded that the county has not acknowledged, in
// batches of at most MaxPushAudit entries and maxPushAuditBytes, and records
// each acknowledgement (metaUpstreamAudit), so that a cut link resends only
// the batch it cut. A county too old to take them keeps nothing from the
// round: the entries wait here.
func (s *Server) pushAudit(ctx context.Context, rpc fieldsyncv1.SyncServiceClient) error {
	self := s.store.Replica()
	for {
		b, err := s.store.Meta(ctx, metaUpstreamAudit)
		if err != nil {
			return fmt.Errorf("push audit: %w", err)
		}
		after, _ := strconv.ParseUint(string(b), 10, 64)
		es, err := s.store.AuditOf(ctx, self, after, MaxPushAudit)
		if err != nil || len(es) == 0 {
			return err
		}
		req := &fieldsyncv1.PushAuditRequest{}
		size := 0
		for _, e := range es {
			pe := auditToProto(e)
			if size += proto.Size(pe); size > maxPushAuditBytes && len(req.Entries) > 0 {
				break
			}
			req.Entries = append(req.Entries, pe)
		}
		cctx, cancel := context.WithTimeout(ctx, syncclient.RPCDeadline(size))
		resp, err := rpc.PushAudit(cctx, req)
		cancel()
		if status.Code(err) == codes.Unimplemented {
			s.log.WarnContext(ctx, "the county does not take audit entries (an older version); they wait here", "pending_from", after+1)
			return nil
		}
		if err != nil {
			return fmt.Errorf("push audit: %w", err)
		}
		last := req.Entries[len(req.Entries)-1].GetSequence()
		if err := s.store.SetMeta(ctx, metaUpstreamAudit, []byte(strconv.FormatUint(last, 10))); err != nil {
			return fmt.Errorf("push audit: %w", err)
		}
		s.log.InfoContext(ctx, "audit entries relayed upstream", "sent", len(req.Entries), "new_there", resp.GetStored(), "through", last)
	}
}
