package server

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestCursorToken(t *testing.T) {
	for _, c := range []pullCursor{
		{phase: phaseLog, pos: 12345, scope: 0xdeadbeef},
		{phase: phaseSnapshot, pos: 9, scope: 1, prefix: 2, page: []byte{1, 2, 3}},
	} {
		got, err := decodeCursor(c.token().GetToken())
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("decode(encode(%+v)) = %+v, %v", c, got, err)
		}
	}
	good := pullCursor{phase: phaseLog, pos: 5}.token().GetToken()
	for name, tok := range map[string][]byte{
		"empty version": {0},
		"other version": append([]byte{2}, good[1:]...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(bytes.Clone(good), 0),
		"bad phase":     {1, 7, 0, 0, 0, 0},
	} {
		if _, err := decodeCursor(tok); !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s: decodeCursor = %v, want ErrBadCursor", name, err)
		}
	}
}
