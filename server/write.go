package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// metaUpstreamRules keeps the survey rules the county sent in its last
// handshake (a fieldsync.v1.Rules message).
const metaUpstreamRules = "upstream_rules"

// Save stores rec as a change made by this server (a county's or township's
// correction) through the one save path (package save): a follow-up gets the
// schedule its measurements call for, a visit or audit raises its problems
// and risk flags with the rules in force, a problem moves only as the
// ledger's workflow allows (the server may verify). The change holds the
// fields that differ from the server's current state of the record, based on
// its whole current version, so that it supersedes every value the server
// holds and stays concurrent with what it has not seen. It syncs like a
// device's: down to the devices in scope and, from a township, up to its
// county. It returns the change id of the record's change, or a zero id when
// rec equals the stored record (problems may still have been raised). A
// record outside the server's area is refused with ErrBadRequest; one the
// rules refuse with an *InvalidRecordError.
func (s *Server) Save(ctx context.Context, rec *fieldsyncv1.Record) (syncengine.ChangeID, error) {
	return s.save(ctx, rec, nil)
}

// save is Save, running also, when not nil, in the save's transaction after
// the record is saved (the audit entry of an admin action).
func (s *Server) save(ctx context.Context, rec *fieldsyncv1.Record, also func(syncengine.Tx) error) (syncengine.ChangeID, error) {
	id, area, err := wire.Identity(rec)
	if err != nil {
		return syncengine.ChangeID{}, fmt.Errorf("save: %w: %v", ErrBadRequest, err)
	}
	if !s.serves(area) {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w: area %s is outside this server's area %s", id, ErrBadRequest, area, s.cfg.Area)
	}
	rules, _, err := s.rules(ctx)
	if err != nil {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w", id, err)
	}
	var res save.Result
	err = s.store.Update(ctx, func(tx syncengine.Tx) error {
		var err error
		res, err = save.Record(ctx, tx, save.Author{Clock: s.clock, Now: s.now(), Rules: rules, Server: true}, rec)
		if err != nil || also == nil {
			return err
		}
		return also(tx)
	})
	var invalid *save.InvalidError
	if errors.As(err, &invalid) {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w", id, &InvalidRecordError{FieldErrors: invalid.Fields})
	}
	if err != nil {
		return syncengine.ChangeID{}, fmt.Errorf("save record %v: %w", id, err)
	}
	if len(res.Changes) == 0 {
		return syncengine.ChangeID{}, nil
	}
	s.log.InfoContext(ctx, "record saved by the server", "record", id.String(), "problems_raised", res.Problems, "flags_raised", res.Flags)
	s.nudgeUpstream()
	if !res.Saved {
		return syncengine.ChangeID{}, nil
	}
	return res.Changes[0].ID, nil
}

// rules returns the survey rules in force here and their wire form: the
// county's, as its last handshake sent them, on a township with an upstream;
// else Config.Rules; else survey.DefaultRules.
func (s *Server) rules(ctx context.Context) (survey.Rules, *fieldsyncv1.Rules, error) {
	m := s.cfg.Rules
	if b, err := s.store.Meta(ctx, metaUpstreamRules); err != nil {
		return survey.Rules{}, nil, err
	} else if len(b) > 0 {
		var up fieldsyncv1.Rules
		if err := proto.Unmarshal(b, &up); err == nil {
			m = &up
		}
	}
	r, err := survey.RulesFromProto(m)
	if err != nil {
		return survey.Rules{}, nil, fmt.Errorf("survey rules: %w", err)
	}
	source := m.GetSource()
	if m == nil {
		source = "defaults"
	}
	return r, r.Proto(source), nil
}

// keepUpstreamRules stores the rules the county's handshake carried; rules
// out of range are not kept (the township keeps what it had).
func (s *Server) keepUpstreamRules(ctx context.Context, m *fieldsyncv1.Rules) error {
	if m == nil {
		return nil
	}
	if _, err := survey.RulesFromProto(m); err != nil {
		s.log.WarnContext(ctx, "upstream sent survey rules out of range; keeping the rules in force", "err", err)
		return nil
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return s.store.SetMeta(ctx, metaUpstreamRules, b)
}
