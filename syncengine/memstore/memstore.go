// Package memstore is the in-memory reference implementation of
// syncengine.Store. It keeps records and changes in their canonical binary
// encodings, as a durable store would, so that a value read back never shares
// memory with the value written and the encodings are exercised on every call.
// It is meant for tests and as the reference the store conformance suite is
// checked against; its contents die with the process.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/fieldsync/fieldsync/syncengine"
)

var (
	_ syncengine.Store  = (*Store)(nil)
	_ syncengine.ReadTx = (*tx)(nil)
	_ syncengine.Tx     = (*tx)(nil)
)

type rejectionKey struct {
	peer syncengine.ReplicaID
	dot  syncengine.Dot
}

// state is everything a Store holds. A transaction works on an overlay of it.
type state struct {
	records    map[syncengine.RecordID][]byte
	log        [][]byte // log[i] is the encoded change at position i+1
	byDot      map[syncengine.Dot]syncengine.Position
	maxCounter map[syncengine.ReplicaID]uint64
	cursors    map[syncengine.ReplicaID]syncengine.Cursor
	rejections map[rejectionKey]syncengine.Rejection
	from       map[syncengine.Position]syncengine.ReplicaID // NoteFrom
	meta       map[string][]byte
}

// Store is an in-memory syncengine.Store. Positions are dense: the n-th change
// appended is at position n. The zero Store is not usable; call New.
// A Store is safe for concurrent use: Update transactions run one at a time,
// View transactions concurrently with each other.
type Store struct {
	mu sync.RWMutex
	st state
}

// New returns an empty store.
func New() *Store {
	return &Store{st: state{
		records:    make(map[syncengine.RecordID][]byte),
		byDot:      make(map[syncengine.Dot]syncengine.Position),
		maxCounter: make(map[syncengine.ReplicaID]uint64),
		cursors:    make(map[syncengine.ReplicaID]syncengine.Cursor),
		rejections: make(map[rejectionKey]syncengine.Rejection),
		from:       make(map[syncengine.Position]syncengine.ReplicaID),
		meta:       make(map[string][]byte),
	}}
}

// Update runs fn in a read-write transaction, committing its writes only if fn
// returns nil.
func (s *Store) Update(ctx context.Context, fn func(syncengine.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := newTx(&s.st, true)
	defer t.close()
	if err := fn(t); err != nil {
		return err
	}
	t.commit()
	return nil
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(syncengine.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := newTx(&s.st, false)
	defer t.close()
	return fn(t)
}

// Records returns the state of every stored record, ordered by id.
func (s *Store) Records() []syncengine.Record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := slices.SortedFunc(maps.Keys(s.st.records), syncengine.RecordID.Compare)
	out := make([]syncengine.Record, len(ids))
	for i, id := range ids {
		out[i] = mustRecord(s.st.records[id])
	}
	return out
}

// Len returns the number of changes in the log.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.st.log)
}

// Rejections returns the recorded rejections, ordered by position, then peer.
func (s *Store) Rejections() []syncengine.Rejection {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Collect(maps.Values(s.st.rejections))
	slices.SortFunc(out, func(a, b syncengine.Rejection) int {
		if c := cmp.Compare(a.Pos, b.Pos); c != 0 {
			return c
		}
		return a.Peer.Compare(b.Peer)
	})
	return out
}

func mustRecord(b []byte) syncengine.Record {
	var r syncengine.Record
	if err := r.UnmarshalBinary(b); err != nil {
		panic(fmt.Sprintf("memstore: stored record does not decode: %v", err))
	}
	return r
}

func mustChange(b []byte) syncengine.Change {
	var c syncengine.Change
	if err := c.UnmarshalBinary(b); err != nil {
		panic(fmt.Sprintf("memstore: logged change does not decode: %v", err))
	}
	return c
}
