package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A packed record (Upsert.packed_record, protocol version 2) is a Record's
// encoding with its ids and digests as bytes rather than text: every string
// field named id, or ending in _id or _ids, that holds a UUID in canonical
// text (36 characters, lower-case) carries its 16 bytes, and every string
// field named sha256 that holds 64 lower-case hex digits carries its 32
// bytes. Any other value of those fields stays as it is, so a value of
// exactly 16 (or 32) bytes that is not packed would be read back wrong: a
// record holding one is not packed (PackRecord says so), and travels as
// Upsert.record. On a day's push the ids and digests are three fifths of
// the bytes as text, and a fifth of them gzip'd.

var recordDescriptor = (&fieldsyncv1.Record{}).ProtoReflect().Descriptor()

const (
	uuidTextLen = 36
	sha256Len   = 32
)

// packing is how a field of a record is packed.
type packing int

const (
	plain packing = iota
	packUUID
	packSHA256
)

func packingOf(fd protoreflect.FieldDescriptor) packing {
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return plain
	}
	name := string(fd.Name())
	switch {
	case name == "id" || strings.HasSuffix(name, "_id") || strings.HasSuffix(name, "_ids"):
		return packUUID
	case name == "sha256":
		return packSHA256
	}
	return plain
}

// PackRecord returns the packed form of rec's encoding, and false when rec
// holds a value packing could not tell from a packed one. A record packs to
// bytes that UnpackRecord turns back into exactly its deterministic
// encoding.
func PackRecord(rec *fieldsyncv1.Record) ([]byte, bool, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return nil, false, err
	}
	out, err := rewrite(nil, b, recordDescriptor, packLeaf)
	if errors.Is(err, errCannotPack) {
		return nil, false, nil
	}
	return out, err == nil, err
}

// errCannotPack is packLeaf's answer for a value packing could not tell
// from a packed one.
var errCannotPack = errors.New("a value packing could not tell from a packed one")

// packLeaf packs one string value: a canonical UUID in an id field, a
// lower-case hex SHA-256 in a sha256 field.
func packLeaf(fd protoreflect.FieldDescriptor, v []byte) ([]byte, bool, error) {
	switch packingOf(fd) {
	case packUUID:
		if u, ok := canonicalUUID(v); ok {
			return u[:], false, nil
		}
		if len(v) == len(uuid.UUID{}) {
			return nil, false, errCannotPack
		}
	case packSHA256:
		if h, ok := lowerHex(v); ok && len(h) == sha256Len {
			return h, false, nil
		}
		if len(v) == sha256Len {
			return nil, false, errCannotPack
		}
	}
	return nil, true, nil
}

// unpackLeaf gives back the text of one packed value.
func unpackLeaf(fd protoreflect.FieldDescriptor, v []byte) ([]byte, bool, error) {
	switch p := packingOf(fd); {
	case p == packUUID && len(v) == len(uuid.UUID{}):
		return []byte(uuid.UUID(v).String()), false, nil
	case p == packSHA256 && len(v) == sha256Len:
		return []byte(hex.EncodeToString(v)), false, nil
	}
	return nil, true, nil
}

// rewrite appends to out the message of type md encoded in b, with each
// length-delimited value that is not a message, in it and in the messages
// below it, replaced by what leaf returns for it (or kept as it is). It
// returns an error wrapping ErrBadPacking for bytes that do not parse, or
// leaf's error.
func rewrite(out, b []byte, md protoreflect.MessageDescriptor, leaf func(protoreflect.FieldDescriptor, []byte) ([]byte, bool, error)) ([]byte, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrBadPacking, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, fmt.Errorf("%w: field %d of %s: %v", ErrBadPacking, num, md.Name(), protowire.ParseError(m))
		}
		field := b[:n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		var nv []byte
		var keep bool
		var err error
		if fd.Kind() == protoreflect.MessageKind {
			nv, err = rewrite(nil, v, fd.Message(), leaf)
		} else {
			nv, keep, err = leaf(fd, v)
		}
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, field...)
			continue
		}
		out = protowire.AppendBytes(protowire.AppendTag(out, num, protowire.BytesType), nv)
	}
	return out, nil
}

// canonicalUUID parses v as a UUID in canonical lower-case text, the only
// form that packs: it is the form the bytes give back.
func canonicalUUID(v []byte) (uuid.UUID, bool) {
	if len(v) != uuidTextLen {
		return uuid.UUID{}, false
	}
	u, err := uuid.ParseBytes(v)
	if err != nil {
		return uuid.UUID{}, false
	}
	return u, u.String() == string(v)
}

func lowerHex(v []byte) ([]byte, bool) {
	if len(v)%2 != 0 || bytes.ContainsAny(v, "ABCDEF") {
		return nil, false
	}
	h := make([]byte, len(v)/2)
	if _, err := hex.Decode(h, v); err != nil {
		return nil, false
	}
	return h, true
}

// ErrBadPacking is wrapped by UnpackRecord's errors.
var ErrBadPacking = errors.New("packed record does not decode")

// UnpackRecord returns the Record whose packed form b is, checked as any
// record received (UTF-8 strings, valid encoding). Bytes from another
// replica are not trusted: an error wraps ErrBadPacking and names what is
// wrong.
func UnpackRecord(b []byte) (*fieldsyncv1.Record, error) {
	raw, err := rewrite(nil, b, recordDescriptor, unpackLeaf)
	if err != nil {
		return nil, err
	}
	rec := &fieldsyncv1.Record{}
	if err := proto.Unmarshal(raw, rec); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPacking, err)
	}
	return rec, nil
}

// PackChange replaces the record of pc's upsert by its packed form
// (Upsert.packed_record), when the record packs. It is what a replica does
// to the changes it sends a server of protocol version 2 or later.
func PackChange(pc *fieldsyncv1.Change) error {
	u := pc.GetUpsert()
	if u.GetRecord() == nil {
		return nil
	}
	b, ok, err := PackRecord(u.GetRecord())
	if err != nil || !ok {
		return err
	}
	u.Record, u.PackedRecord = nil, b
	return nil
}

// RecordSchema is the fingerprint of the record schema this build packs
// and unpacks with: 8 bytes of SHA-256 over every message reachable from
// Record, each field's number, name, kind, cardinality and message or enum
// type. Two builds pack the same record to the same bytes, and read them
// back alike, only when their schemas agree: a field one of them does not
// know would be copied as it is by one and unpacked by the other. So a
// replica packs only for a server whose handshake gave the same
// fingerprint (HelloResponse.record_schema), names it with what it packed
// (ExchangeRequest.record_schema), and a server packs a pull only for a
// caller that gave the same (PullRequest.record_schema).
func RecordSchema() []byte { return bytes.Clone(recordSchema) }

var recordSchema = schemaFingerprint(recordDescriptor)

// SameSchema reports whether fp is this build's RecordSchema.
func SameSchema(fp []byte) bool { return len(fp) > 0 && bytes.Equal(fp, recordSchema) }

func schemaFingerprint(md protoreflect.MessageDescriptor) []byte {
	h := sha256.New()
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		fmt.Fprintf(h, "message %s\n", md.FullName())
		fields := md.Fields()
		var nested []protoreflect.MessageDescriptor
		for i := range fields.Len() {
			fd := fields.Get(i)
			fmt.Fprintf(h, "%d %s %v %v", fd.Number(), fd.Name(), fd.Kind(), fd.Cardinality())
			switch {
			case fd.Message() != nil:
				fmt.Fprintf(h, " %s", fd.Message().FullName())
				nested = append(nested, fd.Message())
			case fd.Enum() != nil:
				fmt.Fprintf(h, " %s", fd.Enum().FullName())
			}
			fmt.Fprintln(h)
		}
		for _, n := range nested {
			walk(n)
		}
	}
	walk(md)
	return h.Sum(nil)[:8]
}
