package server_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// rawCodec sends a request's bytes as they are (a hostile client's) and
// decodes answers with protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.CodecV2 = rawCodec{}

// TestPushWithBadBytesRefusesOnlyThatChange: a change whose record holds a
// string that is not UTF-8 (a damaged phone, a hostile client) is refused
// REJECTED_MALFORMED with its change id and the reason; the valid changes
// around it are applied, and the call succeeds.
func TestPushWithBadBytesRefusesOnlyThatChange(t *testing.T) {
	e := newEnv(t)
	d := e.enrol(t, villageA)
	for _, sbp := range []int32{120, 130, 140} {
		f := followUp(t, villageA, sbp, 80)
		f.GetFollowUp().Notes = "NOTE-MARK"
		d.save(t, f)
	}
	req := d.pushRequest(t, 0)
	var raw []byte
	for i, pc := range req.GetChanges() {
		b, err := proto.Marshal(pc)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			b = bytes.Replace(b, []byte("NOTE-MARK"), []byte("\xff\xfeTE-MARK"), 1)
		}
		raw = protowire.AppendBytes(protowire.AppendTag(raw, 1, protowire.BytesType), b)
	}
	raw = protowire.AppendVarint(protowire.AppendTag(raw, 2, protowire.VarintType), req.GetFirstPosition())
	raw = protowire.AppendVarint(protowire.AppendTag(raw, 3, protowire.VarintType), req.GetLastPosition())
	var resp fieldsyncv1.PushResponse
	if err := e.conn.Invoke(d.ctx(t), fieldsyncv1.SyncService_Push_FullMethodName, &raw, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatalf("push with one undecodable change failed as a whole: %v", err)
	}
	if got := outcomes(&resp); !equal(got, []fieldsyncv1.ChangeOutcome{applied, malformed, applied}) {
		t.Fatalf("outcomes = %v, want the middle change refused alone", got)
	}
	bad := resp.GetResults()[1]
	if want := req.GetChanges()[1].GetChangeId(); !bytes.Equal(bad.GetChangeId(), want) || !bytes.Contains([]byte(bad.GetMessage()), []byte("UTF-8")) {
		t.Errorf("refusal %v, want change id %x and a message naming the UTF-8", bad, want)
	}
	if resp.GetAcknowledgedPosition() != 3 {
		t.Errorf("acknowledged %d, want 3", resp.GetAcknowledgedPosition())
	}
	// The valid ones are stored.
	for _, i := range []int{0, 2} {
		c, err := wire.ChangeFromProto(req.GetChanges()[i])
		if err != nil {
			t.Fatal(err)
		}
		var seen bool
		if err := e.srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
			seen, err = tx.Seen(t.Context(), c.Dot)
			return err
		}); err != nil || !seen {
			t.Errorf("valid change %d not stored: %v", i, err)
		}
	}
}
