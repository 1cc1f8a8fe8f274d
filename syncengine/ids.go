package syncengine

import (
	"bytes"
	"encoding/hex"
	"fmt"
)

// ReplicaID identifies a replica (a device or a server) for its whole life. It
// is 16 bytes, normally a UUID made when the replica is first set up.
type ReplicaID [16]byte

// RecordID identifies a synced record: the 16 bytes of its UUIDv7.
type RecordID [16]byte

// ChangeID identifies a change: the 16 bytes of the UUIDv7 its origin made.
type ChangeID [16]byte

// String returns id in the canonical 8-4-4-4-12 hexadecimal UUID form.
func (id ReplicaID) String() string { return formatUUID(id) }

// IsZero reports whether id is all zero bytes (unset).
func (id ReplicaID) IsZero() bool { return id == ReplicaID{} }

// Compare orders replica ids bytewise, returning -1, 0 or +1.
func (id ReplicaID) Compare(o ReplicaID) int { return bytes.Compare(id[:], o[:]) }

// String returns id in the canonical 8-4-4-4-12 hexadecimal UUID form.
func (id RecordID) String() string { return formatUUID(id) }

// IsZero reports whether id is all zero bytes (unset).
func (id RecordID) IsZero() bool { return id == RecordID{} }

// Compare orders record ids bytewise, returning -1, 0 or +1.
func (id RecordID) Compare(o RecordID) int { return bytes.Compare(id[:], o[:]) }

// String returns id in the canonical 8-4-4-4-12 hexadecimal UUID form.
func (id ChangeID) String() string { return formatUUID(id) }

// IsZero reports whether id is all zero bytes (unset).
func (id ChangeID) IsZero() bool { return id == ChangeID{} }

// ParseReplicaID parses the 8-4-4-4-12 hexadecimal form that String returns.
func ParseReplicaID(s string) (ReplicaID, error) { return parseUUID(s) }

func formatUUID(b [16]byte) string {
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

func parseUUID(s string) ([16]byte, error) {
	var id [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("syncengine: parse id %q: want 8-4-4-4-12 hex form", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return [16]byte{}, fmt.Errorf("syncengine: parse id %q: %w", s, err)
	}
	return id, nil
}
