package server

import (
	"bytes"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The server's gRPC codec is the standard protobuf codec, except that a
// PushRequest is decoded change by change: one change whose bytes do not
// decode (a string that is not UTF-8, a truncated message) must not fail the
// whole call and hold up every valid change around it. Such a change is
// replaced by a placeholder carrying its change id, when that much can be
// read, and the decoding error; Push answers it REJECTED_MALFORMED.

// undecodableField is the field number, outside every message of the
// protocol, under which a placeholder change carries its decoding error.
const undecodableField protowire.Number = protowire.MaxValidNumber

// pushCodec is the server's codec (GRPCOptions).
type pushCodec struct{ encoding.CodecV2 }

func newPushCodec() pushCodec { return pushCodec{encoding.GetCodecV2("proto")} }

func (c pushCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch req := v.(type) {
	case *fieldsyncv1.PushRequest:
		return unmarshalPush(data.Materialize(), req)
	case *fieldsyncv1.ExchangeRequest:
		return unmarshalExchange(data.Materialize(), req)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// unmarshalExchange decodes an ExchangeRequest from b, its push as
// unmarshalPush does.
func unmarshalExchange(b []byte, req *fieldsyncv1.ExchangeRequest) error {
	const pushField = 2 // ExchangeRequest.push
	pushes, rest, err := splitField(b, pushField)
	if err != nil {
		return fmt.Errorf("exchange request: %w", err)
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return fmt.Errorf("exchange request: %w", err)
	}
	if len(pushes) == 0 {
		return nil
	}
	// The fields of a message that comes twice merge.
	req.Push = &fieldsyncv1.PushRequest{}
	return unmarshalPush(bytes.Join(pushes, nil), req.Push)
}

// splitField returns the values of the length-delimited field num of the
// message encoded in b, and the rest of its encoding.
func splitField(b []byte, num protowire.Number) (values [][]byte, rest []byte, err error) {
	for len(b) > 0 {
		n0, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(n0, typ, b[n:])
		if m < 0 {
			return nil, nil, protowire.ParseError(m)
		}
		if n0 == num && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			values = append(values, v)
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return values, rest, nil
}

// unmarshalPush decodes a PushRequest from b, each change on its own (see
// above). It fails only when the request itself does not decode.
func unmarshalPush(b []byte, req *fieldsyncv1.PushRequest) error {
	const changesField = 1 // PushRequest.changes
	changes, rest, err := splitField(b, changesField)
	if err != nil {
		return fmt.Errorf("push request: %w", err)
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return fmt.Errorf("push request: %w", err)
	}
	for i, raw := range changes {
		pc := &fieldsyncv1.Change{}
		if err := proto.Unmarshal(raw, pc); err != nil {
			pc = undecodable(raw, fmt.Sprintf("change %d of the batch does not decode: %v", i, err))
		}
		req.Changes = append(req.Changes, pc)
	}
	return nil
}

// undecodable returns the placeholder of a change that does not decode: its
// change id, if its bytes start to decode that far, and why.
func undecodable(raw []byte, why string) *fieldsyncv1.Change {
	pc := &fieldsyncv1.Change{}
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			break
		}
		if num == 1 && typ == protowire.BytesType { // Change.change_id
			pc.ChangeId, _ = protowire.ConsumeBytes(b[n:])
			pc.ChangeId = append([]byte(nil), pc.ChangeId...)
		}
		b = b[n+m:]
	}
	pc.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, undecodableField, protowire.BytesType), why))
	return pc
}

// undecodableReason returns why the push codec could not decode pc, or false
// for a change that decoded.
func undecodableReason(pc *fieldsyncv1.Change) (string, bool) {
	for b := pc.ProtoReflect().GetUnknown(); len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return "", false
		}
		if num == undecodableField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			return string(v), true
		}
		b = b[n+m:]
	}
	return "", false
}
