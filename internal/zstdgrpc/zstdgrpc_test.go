package zstdgrpc

import (
	"bytes"
	"crypto/rand"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

func compress(c encoding.Compressor, b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := c.Compress(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mustCompress(t *testing.T, c encoding.Compressor, b []byte) []byte {
	t.Helper()
	out, err := compress(c, b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decompress(c encoding.Compressor, b []byte) ([]byte, error) {
	r, err := c.Decompress(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// The registered compressor gives back what it was given, from pooled
// encoders and decoders used many times and concurrently, and is smaller
// than its input on repetitive bytes.
func TestRoundTrip(t *testing.T) {
	c := encoding.GetCompressor(Name)
	if c == nil {
		t.Fatal("zstd is not registered")
	}
	random := make([]byte, 40<<10)
	rand.Read(random)
	inputs := [][]byte{nil, []byte("x"), []byte(strings.Repeat("0190a6b2-1c3d-7e4f-8a5b ", 2000)), random}
	done := make(chan error)
	for g := range 4 {
		go func() {
			for i := range 50 {
				in := inputs[(g+i)%len(inputs)]
				z, err := compress(c, in)
				var out []byte
				if err == nil {
					out, err = decompress(c, z)
				}
				if err == nil && !bytes.Equal(out, in) {
					err = io.ErrUnexpectedEOF
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(mustCompress(t, c, inputs[2])); n > len(inputs[2])/20 {
		t.Errorf("%d repetitive bytes compress to %d", len(inputs[2]), n)
	}
}

// Bytes from a hostile peer give an error, never a panic or a decoder
// that allocates what a frame header asks: a frame asking for a window
// over the bound, damaged frames, and bytes that are no frame.
func TestHostileFrames(t *testing.T) {
	c := encoding.GetCompressor(Name)
	good := mustCompress(t, c, []byte(strings.Repeat("village ", 500)))
	e, err := zstd.NewWriter(nil, zstd.WithWindowSize(64<<20), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 32<<20)
	rand.Read(big[:1<<20])
	huge := e.EncodeAll(big, nil)
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)/2] ^= 0xff
	for name, b := range map[string][]byte{
		"window over the bound": huge,
		"damaged":               damaged,
		"truncated":             good[:len(good)-5],
		"no frame":              []byte("not zstd at all"),
	} {
		_, err := decompress(c, b)
		if err == nil {
			t.Errorf("%s: decompressed without an error", name)
		}
		t.Logf("%s: %v", name, err)
	}
	if out, err := decompress(c, good); err != nil || len(out) != 4000 {
		t.Errorf("after the hostile frames a good one gives %d bytes, %v", len(out), err)
	}
}
