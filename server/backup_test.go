package server

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"google.golang.org/grpc"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// chunkStream collects what a Backup sends.
type chunkStream struct {
	grpc.ServerStream
	chunks []*fieldsyncv1.BackupResponse
}

func (s *chunkStream) Send(c *fieldsyncv1.BackupResponse) error {
	s.chunks = append(s.chunks, c)
	return nil
}

// TestBackupWriterChunks: a copy larger than a chunk, written in uneven
// pieces, arrives as full chunks and a last short one, the size in the first,
// and each sent chunk keeps its bytes after later writes.
func TestBackupWriterChunks(t *testing.T) {
	data := make([]byte, 2*backupChunk+12345)
	rand.Read(data)
	st := &chunkStream{}
	w := &backupWriter{stream: st, sum: sha256.New(), size: int64(len(data))}
	for p := data; len(p) > 0; {
		k := min(len(p), 300_001)
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if len(st.chunks) != 3 {
		t.Fatalf("%d chunks, want 3", len(st.chunks))
	}
	var got []byte
	for i, c := range st.chunks {
		if want := int64(0); i > 0 && c.GetSize() != want {
			t.Errorf("chunk %d carries size %d", i, c.GetSize())
		}
		if i < 2 && len(c.GetData()) != backupChunk {
			t.Errorf("chunk %d holds %d bytes, want %d", i, len(c.GetData()), backupChunk)
		}
		got = append(got, c.GetData()...)
	}
	if st.chunks[0].GetSize() != int64(len(data)) {
		t.Errorf("first chunk's size %d, want %d", st.chunks[0].GetSize(), len(data))
	}
	if !bytes.Equal(got, data) {
		t.Error("the chunks do not add up to the copy")
	}
	if sum := sha256.Sum256(data); !bytes.Equal(w.sum.Sum(nil), sum[:]) {
		t.Error("the running checksum is not the copy's")
	}
}
