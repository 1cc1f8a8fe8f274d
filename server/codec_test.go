package server

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// FuzzUnmarshalExchange feeds the server's decoder of an ExchangeRequest any
// bytes: it never panics, a request it accepts has each change either
// decoded or refused on its own (a placeholder saying why), and a request
// that decodes as a whole decodes alike through it.
func FuzzUnmarshalExchange(f *testing.F) {
	change := &fieldsyncv1.Change{ChangeId: bytes.Repeat([]byte{1}, 16), RecordId: bytes.Repeat([]byte{2}, 16),
		Operation: &fieldsyncv1.Change_Upsert{Upsert: &fieldsyncv1.Upsert{PackedRecord: []byte{0x0a, 0x12, 0x0a, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}}}
	good := &fieldsyncv1.ExchangeRequest{
		Hello:        &fieldsyncv1.HelloRequest{ReplicaId: bytes.Repeat([]byte{3}, 16), RefuseStampsAhead: true},
		Push:         &fieldsyncv1.PushRequest{Changes: []*fieldsyncv1.Change{change, change}, FirstPosition: 1, LastPosition: 2},
		RecordSchema: []byte("schema!!"),
	}
	b, err := proto.Marshal(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(append(b, 0x12, 0x04, 0x0a, 0x02, 0xff, 0xff)) // a second push, whose change does not decode
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req fieldsyncv1.ExchangeRequest
		if err := unmarshalExchange(data, &req); err != nil {
			return
		}
		for _, c := range req.GetPush().GetChanges() {
			if _, bad := undecodableReason(c); bad {
				continue
			}
			if _, err := proto.Marshal(c); err != nil {
				t.Fatalf("accepted a change that does not encode: %v", err)
			}
		}
		var whole fieldsyncv1.ExchangeRequest
		if proto.Unmarshal(data, &whole) == nil && !proto.Equal(&whole, &req) {
			t.Fatalf("decoded\n%v\nwhere proto gives\n%v", &req, &whole)
		}
	})
}
