package fieldsync

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// Areas returns the area-code prefixes the device was enrolled for (nil
// before enrolment).
func (c *Client) Areas(ctx context.Context) ([]string, error) { return areasIn(ctx, c.store) }

// metaSource is where the device's settings are read: the store, or one of
// its transactions.
type metaSource interface {
	Meta(ctx context.Context, key string) ([]byte, error)
}

// areasIn returns the device's area prefixes as m holds them (nil before
// enrolment).
func areasIn(ctx context.Context, m metaSource) ([]string, error) {
	b, err := m.Meta(ctx, metaAreas)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	return strings.Split(string(b), ","), nil
}

// rulesIn returns the rules in force as m holds them: the server's, or the
// defaults before the first sync that carried them.
func rulesIn(ctx context.Context, m metaSource) (survey.Rules, error) {
	p, err := rulesProtoIn(ctx, m)
	if err != nil {
		return survey.Rules{}, err
	}
	return survey.RulesFromProto(p)
}

// rulesProtoIn returns the rules the last sync received, as m holds them, or
// nil.
func rulesProtoIn(ctx context.Context, m metaSource) (*fieldsyncv1.Rules, error) {
	b, err := m.Meta(ctx, metaRules)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	var r fieldsyncv1.Rules
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, errors.New("stored survey rules are damaged: sync again to receive them")
	}
	return &r, nil
}

// Rules returns the survey rules in force on the device: its server's (the
// county's), as the last sync received them, or survey.DefaultRules before
// the first sync.
func (c *Client) Rules(ctx context.Context) (survey.Rules, error) { return rulesIn(ctx, c.store) }

// RulesSource says where the rules in force come from ("defaults" before the
// first sync that carried them).
func (c *Client) RulesSource(ctx context.Context) (string, error) {
	m, err := c.rulesProto(ctx)
	if err != nil || m == nil || m.GetSource() == "" {
		return "defaults", err
	}
	return m.GetSource(), nil
}

// rulesProto returns the rules the last sync received, or nil.
func (c *Client) rulesProto(ctx context.Context) (*fieldsyncv1.Rules, error) {
	return rulesProtoIn(ctx, c.store)
}

// saveRules keeps the rules a handshake carried. Rules out of range are not
// kept: the device keeps what it had and the sync goes on.
func (c *Client) saveRules(ctx context.Context, m *fieldsyncv1.Rules) error {
	if m == nil {
		return nil
	}
	if _, err := survey.RulesFromProto(m); err != nil {
		return nil
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return c.store.SetMeta(ctx, metaRules, b)
}
