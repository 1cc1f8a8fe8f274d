package boltstore

import (
	"errors"
	"testing"

	"github.com/klauspost/compress/s2"
)

// FuzzUnpackEntry feeds damaged log values to the entry decoder: each is
// unpacked or refused with ErrCorrupt, never a panic or a huge allocation.
func FuzzUnpackEntry(f *testing.F) {
	sample := []byte("0123456789abcdef the village 530102001001, household 17, 张三 and 李四")
	d := s2.MakeDictManual(append(sample, sample...), 0)
	dictOf := func(id uint64) (*s2.Dict, error) {
		if id != 1 {
			return nil, ErrCorrupt
		}
		return d, nil
	}
	f.Add(append([]byte{entryPacked, 0}, s2.Encode(nil, sample)...))
	f.Add(append([]byte{entryPacked, 1}, d.Encode(nil, sample)...))
	f.Add([]byte{entryPacked, 1, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{12})
	f.Fuzz(func(t *testing.T, v []byte) {
		body, err := unpackEntry(v, dictOf)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if len(body) < idLen {
			t.Fatalf("unpacked a body of %d bytes", len(body))
		}
	})
}
