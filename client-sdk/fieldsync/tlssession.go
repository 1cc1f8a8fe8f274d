package fieldsync

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"sync"
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
// TLS 1.3 hands a new session to Put from the connection's reader, so Put
// only keeps it in memory: a write to the replica there would hold up the
// connection behind a snapshot's commit. The Client writes it to the
// replica after each sync (persist).
type sessionCache struct {
	c *Client

	mu     sync.Mutex
	loaded bool // key and cs hold the session (cs nil: none)
	key    string
	cs     *tls.ClientSessionState
	dirty  bool // not yet written to the replica
}

// sessionCacheFor returns cfg with the replica's session cache, unless cfg
// has a cache of the app's own.
func (c *Client) sessionCacheFor(cfg *tls.Config) *tls.Config {
	if cfg == nil || cfg.ClientSessionCache != nil {
		return cfg
	}
	cfg = cfg.Clone()
	c.sessions = &sessionCache{c: c}
	cfg.ClientSessionCache = c.sessions
	return cfg
}

func (s *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		s.key, s.cs = s.load()
		s.loaded = true
	}
	if s.cs == nil || s.key != key {
		return nil, false
	}
	return s.cs, true
}

func (s *sessionCache) Put(key string, cs *tls.ClientSessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.cs, s.loaded, s.dirty = key, cs, true, true
}

// load reads the session kept in the replica; none when it holds none, or
// one that does not parse.
func (s *sessionCache) load() (string, *tls.ClientSessionState) {
	b, err := s.c.secret(context.Background(), metaTLSSession)
	if err != nil {
		return "", nil
	}
	k, rest, ok := cut(b)
	if !ok {
		return "", nil
	}
	ticket, state, ok := cut(rest)
	if !ok {
		return "", nil
	}
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		return "", nil
	}
	cs, err := tls.NewResumptionState(ticket, ss)
	if err != nil {
		return "", nil
	}
	return string(k), cs
}

// persist writes the session Put last gave to the replica, if it changed;
// one that could not be written is tried again after the next sync. A
// session that cannot be kept costs the next sync a full handshake.
func (s *sessionCache) persist(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	key, cs, dirty := s.key, s.cs, s.dirty
	s.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := s.write(ctx, key, cs); err != nil {
		return err
	}
	s.mu.Lock()
	if s.key == key && s.cs == cs { // no Put since
		s.dirty = false
	}
	s.mu.Unlock()
	return nil
}

// write keeps session cs for key in the replica, sealed as a secret; a nil
// cs removes the one kept.
func (s *sessionCache) write(ctx context.Context, key string, cs *tls.ClientSessionState) error {
	if cs == nil {
		return s.c.store.SetMeta(ctx, metaTLSSession, []byte{})
	}
	ticket, ss, err := cs.ResumptionState()
	if err != nil || ss == nil {
		return err
	}
	state, err := ss.Bytes()
	if err != nil {
		return err
	}
	b := binary.AppendUvarint(nil, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(ticket)))
	b = append(append(b, ticket...), state...)
	return s.c.setSecret(ctx, metaTLSSession, b)
}

// cut splits b into a length-prefixed field and the rest.
func cut(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}
