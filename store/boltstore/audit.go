package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// AuditEntry is one admin action in the audit trail: who did what, when and
// from where. The store keeps what it is given; the server decides what an
// entry may say (never personal data, tokens or codes) and bounds its strings.
type AuditEntry struct {
	// RecordedBy is the replica id of the server that recorded the action,
	// and Seq its number among that server's entries, from 1: together they
	// are the entry's key.
	RecordedBy syncengine.ReplicaID
	Seq        uint64
	// At is when the action was taken, by the recording server's clock.
	At time.Time
	// Action is a short stable word ("device_revoke").
	Action string
	// Who is the operator; AdminToken tells whether the admin token
	// authenticated the call; From is the caller's address, or "local".
	Who        string
	AdminToken bool
	From       string
	// Target is what was acted on; Detail a short text for people.
	Target string
	Detail string
}

// auditJSON is how an AuditEntry is stored (its key holds RecordedBy and
// Seq). JSON keeps the trail readable with bbolt's tools and lets fields be
// added.
type auditJSON struct {
	At         time.Time `json:"at"`
	Action     string    `json:"action"`
	Who        string    `json:"who"`
	AdminToken bool      `json:"admin_token,omitempty"`
	From       string    `json:"from"`
	Target     string    `json:"target,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

const (
	auditKeyLen     = idLen + 8
	auditTimeKeyLen = 8 + auditKeyLen
	// auditSkipOnRollback is how many of its own sequence numbers a store
	// skips when it is opened accepting a rollback (see Open).
	auditSkipOnRollback = 1 << 20
)

// Bounds of AuditEntry.At: the time index keys on Unix nanoseconds, which
// an int64 holds from 1970 to 2262.
var (
	minAuditTime = time.Unix(0, 0)
	maxAuditTime = time.Unix(0, 1<<63-1)
)

func auditKey(by syncengine.ReplicaID, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, auditKeyLen), by[:]...), seq)
}

// auditTimeKey is an audittime key: At in Unix nanoseconds, then the entry's
// key.
func auditTimeKey(at time.Time, key []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, auditTimeKeyLen), uint64(at.UnixNano())), key...)
}

func encodeAudit(e *AuditEntry) ([]byte, error) {
	return json.Marshal(auditJSON{At: e.At.UTC(), Action: e.Action, Who: e.Who, AdminToken: e.AdminToken, From: e.From, Target: e.Target, Detail: e.Detail})
}

func decodeAudit(k, v []byte) (AuditEntry, error) {
	var e AuditEntry
	if len(k) != auditKeyLen {
		return e, fmt.Errorf("boltstore: audit key of %d bytes: %w", len(k), ErrCorrupt)
	}
	e.RecordedBy, e.Seq = syncengine.ReplicaID(k[:idLen]), binary.BigEndian.Uint64(k[idLen:])
	var j auditJSON
	if err := json.Unmarshal(v, &j); err != nil {
		return e, fmt.Errorf("boltstore: audit entry %v/%d: %w: %v", e.RecordedBy, e.Seq, ErrCorrupt, err)
	}
	e.At, e.Action, e.Who, e.AdminToken, e.From, e.Target, e.Detail = j.At, j.Action, j.Who, j.AdminToken, j.From, j.Target, j.Detail
	return e, nil
}

// checkAudit refuses, wrapping ErrInvalidAudit, an entry the store cannot
// key: a zero recorder or sequence, or a time the time index cannot hold.
func checkAudit(e *AuditEntry) error {
	switch {
	case e.RecordedBy.IsZero() || e.Seq == 0:
		return fmt.Errorf("boltstore: audit entry %v/%d: %w: zero recorder or sequence", e.RecordedBy, e.Seq, ErrInvalidAudit)
	case e.At.Before(minAuditTime) || e.At.After(maxAuditTime):
		return fmt.Errorf("boltstore: audit entry %v/%d: %w: time %s outside 1970 to 2262", e.RecordedBy, e.Seq, ErrInvalidAudit, e.At.UTC().Format(time.RFC3339))
	}
	return nil
}

// putAudit stores e under its key and indexes it by time.
func (t *tx) putAudit(e *AuditEntry) error {
	v, err := encodeAudit(e)
	if err != nil {
		return err
	}
	k := auditKey(e.RecordedBy, e.Seq)
	if err := t.audit.Put(k, v); err != nil {
		return err
	}
	return t.auditTime.Put(auditTimeKey(e.At, k), nil)
}

// AppendAuditTx records e as an action of this store's own server, in in, a
// transaction of a Store's Update, so that it commits with the action it
// records (a revocation, a move): RecordedBy is set to the store's replica
// and Seq to the next of its own entries. e.At must be set. It returns the
// entry as stored, or an error wrapping ErrInvalidAudit for an At outside
// 1970 to 2262; the caller then rolls the transaction back.
func AppendAuditTx(ctx context.Context, in syncengine.Tx, e AuditEntry) (AuditEntry, error) {
	t, err := asTx(in, "AppendAuditTx")
	if err != nil {
		return AuditEntry{}, err
	}
	if err := t.check(ctx); err != nil {
		return AuditEntry{}, err
	}
	e.RecordedBy = syncengine.ReplicaID(t.meta.Get(keyReplica))
	seq, err := t.audit.NextSequence()
	if err != nil {
		return AuditEntry{}, err
	}
	e.Seq, e.At = seq, e.At.UTC()
	if err := checkAudit(&e); err != nil {
		return AuditEntry{}, err
	}
	return e, t.putAudit(&e)
}

// PutAudit stores entries other servers recorded (a township's, relayed to
// its county), in one transaction. An entry whose key (RecordedBy, Seq) the
// store holds already is not stored again, so a batch sent twice stores
// nothing the second time; the first one stored stays when the two differ.
// It returns how many entries were new and how many of the others differ from
// the entry held. It returns an error wrapping ErrInvalidAudit, storing
// nothing, for an entry recorded by this store's own replica or one
// checkAudit refuses.
func (s *Store) PutAudit(ctx context.Context, entries []AuditEntry) (stored, differ int, err error) {
	for i := range entries {
		e := &entries[i]
		if e.RecordedBy == s.replica {
			return 0, 0, fmt.Errorf("boltstore: audit entry %v/%d: %w: recorded by this store's own replica", e.RecordedBy, e.Seq, ErrInvalidAudit)
		}
		if err := checkAudit(e); err != nil {
			return 0, 0, err
		}
	}
	err = s.update(ctx, func(t *tx) error {
		stored, differ = 0, 0
		for _, e := range entries {
			if err := t.check(ctx); err != nil {
				return err
			}
			e.At = e.At.UTC()
			if old := t.audit.Get(auditKey(e.RecordedBy, e.Seq)); old != nil {
				if v, err := encodeAudit(&e); err != nil || !bytes.Equal(v, old) {
					differ++
				}
				continue
			}
			if err := t.putAudit(&e); err != nil {
				return err
			}
			stored++
		}
		return nil
	})
	return stored, differ, err
}

// Audit returns up to limit entries of the trail, of every recorder, at or
// after since, oldest first (by At, then RecordedBy, then Seq), continuing
// after the entry page names (nil for the first page): the token of the
// previous call's last page. It also returns the token of the next page,
// nil when there is none. It returns an error wrapping ErrInvalidToken for a
// page token it did not make.
func (s *Store) Audit(ctx context.Context, since time.Time, page []byte, limit int) ([]AuditEntry, []byte, error) {
	if page != nil && len(page) != auditTimeKeyLen {
		return nil, nil, fmt.Errorf("boltstore: audit page token of %d bytes: %w", len(page), ErrInvalidToken)
	}
	limit = max(limit, 1)
	var (
		out  []AuditEntry
		next []byte
	)
	err := s.view(ctx, func(t *tx) error {
		out, next = nil, nil
		from := make([]byte, 8)
		switch {
		case since.After(maxAuditTime):
			binary.BigEndian.PutUint64(from, uint64(maxAuditTime.UnixNano()))
		case since.After(minAuditTime):
			binary.BigEndian.PutUint64(from, uint64(since.UnixNano()))
		}
		if page != nil && bytes.Compare(page, from) >= 0 {
			from = append(bytes.Clone(page), 0) // the first key after it
		}
		c := t.auditTime.Cursor()
		var last []byte
		for k, _ := c.Seek(from); k != nil; k, _ = c.Next() {
			if len(out) == limit {
				next = bytes.Clone(last)
				return nil
			}
			if err := t.check(ctx); err != nil {
				return err
			}
			if len(k) != auditTimeKeyLen {
				return fmt.Errorf("boltstore: audit time key of %d bytes: %w", len(k), ErrCorrupt)
			}
			v := t.audit.Get(k[8:])
			if v == nil {
				return fmt.Errorf("boltstore: audit time index names entry %x, not stored: %w", k[8:], ErrCorrupt)
			}
			e, err := decodeAudit(k[8:], v)
			if err != nil {
				return err
			}
			out, last = append(out, e), k
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, next, nil
}

// AuditOf returns up to limit of the entries recorder recorded with a
// sequence after after, in sequence order: what a relay has still to send
// its county.
func (s *Store) AuditOf(ctx context.Context, recorder syncengine.ReplicaID, after uint64, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.view(ctx, func(t *tx) error {
		out = nil
		c := t.audit.Cursor()
		for k, v := c.Seek(auditKey(recorder, after+1)); k != nil && len(out) < limit && bytes.HasPrefix(k, recorder[:]); k, v = c.Next() {
			e, err := decodeAudit(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// skipAuditSequence advances the store's own audit sequence by
// auditSkipOnRollback (Open, accepting a rollback): the entries it records
// next must not take the numbers of entries it recorded before the loss,
// which its county may hold already.
func skipAuditSequence(btx *bbolt.Tx) error {
	b := btx.Bucket(bucketAudit)
	return b.SetSequence(b.Sequence() + auditSkipOnRollback)
}

// audit verifies that every audit entry decodes and is indexed under its
// time, that the index names nothing else, and that the store's own entries
// are numbered within its sequence.
func (ck *checker) audit() error {
	t := ck.t
	self := syncengine.ReplicaID(t.meta.Get(keyReplica))
	n := 0
	err := t.audit.ForEach(func(k, v []byte) error {
		if err := ck.tick(); err != nil {
			return err
		}
		n++
		e, err := decodeAudit(k, v)
		switch {
		case err != nil:
			ck.fail("%v", err)
		case !has(t.auditTime, auditTimeKey(e.At, k)):
			ck.fail("audit entry %v/%d is not indexed under its time", e.RecordedBy, e.Seq)
		case e.RecordedBy == self && e.Seq > t.audit.Sequence():
			ck.fail("audit entry %d of this store is beyond its sequence %d", e.Seq, t.audit.Sequence())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if m := t.auditTime.Stats().KeyN; m != n {
		ck.fail("audit time index has %d entries for %d audit entries", m, n)
	}
	return nil
}
