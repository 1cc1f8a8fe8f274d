package fieldsync

import (
	"context"
	"crypto/tls"
	"encoding/binary"
)

// A phone's TLS 1.3 session with its server is kept in its replica, so that
// the next sync, days later and after the app restarted, resumes it: the
// server sends no certificate chain and signs nothing, which on a 2G link
// is about a second less of the handshake for a chain of two certificates.
// Go's TLS does not send early data, so the handshake's round trip stays.
// The session's secret is a key: it is kept with the device token, sealed
// when the replica is (secretMetas). The server ends it when its ticket
// expires (Go's servers: 7 days) or when it restarts with new ticket keys;
// the handshake is then a full one and its new session is kept.

const metaTLSSession = "sdk_tls_session"

// sessionCache is the replica as a tls.ClientSessionCache of one session.
type sessionCache struct{ c *Client }

// sessionCacheFor returns cfg with the replica's session cache, unless cfg
// has a cache of the app's own.
func (c *Client) sessionCacheFor(cfg *tls.Config) *tls.Config {
	if cfg == nil || cfg.ClientSessionCache != nil {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ClientSessionCache = sessionCache{c}
	return cfg
}

func (s sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	b, err := s.c.secret(context.Background(), metaTLSSession)
	if err != nil || len(b) == 0 {
		return nil, false
	}
	k, rest, ok := cut(b)
	if !ok || string(k) != key {
		return nil, false
	}
	ticket, state, ok := cut(rest)
	if !ok {
		return nil, false
	}
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		return nil, false
	}
	cs, err := tls.NewResumptionState(ticket, ss)
	if err != nil {
		return nil, false
	}
	return cs, true
}

func (s sessionCache) Put(key string, cs *tls.ClientSessionState) {
	ctx := context.Background()
	if cs == nil {
		_ = s.c.store.SetMeta(ctx, metaTLSSession, []byte{})
		return
	}
	ticket, ss, err := cs.ResumptionState()
	if err != nil || ss == nil {
		return
	}
	state, err := ss.Bytes()
	if err != nil {
		return
	}
	b := binary.AppendUvarint(nil, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(ticket)))
	b = append(append(b, ticket...), state...)
	// A session that cannot be kept costs the next sync a full handshake.
	_ = s.c.setSecret(ctx, metaTLSSession, b)
}

// cut splits b into a length-prefixed field and the rest.
func cut(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}
