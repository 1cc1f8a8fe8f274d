package server

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

func TestCursorToken(t *testing.T) {
	for _, c := range []pullCursor{
		{PullCursor: syncengine.PullCursor{Phase: syncengine.PullLog, Pos: 12345}, scope: 0xdeadbeef},
		{PullCursor: syncengine.PullCursor{Phase: syncengine.PullSnapshot, Pos: 9, Prefix: 2, Page: []byte{1, 2, 3}}, scope: 1},
	} {
		got, err := decodeCursor(c.token().GetToken())
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("decode(encode(%+v)) = %+v, %v", c, got, err)
		}
	}
	// A token of an earlier build, byte for byte: version 1, the log phase,
	// position 12345, scope 7, prefix 0, no page. Phones keep such tokens.
	old, err := decodeCursor([]byte{1, 2, 0xb9, 0x60, 7, 0, 0})
	if want := (pullCursor{PullCursor: syncengine.PullCursor{Phase: syncengine.PullLog, Pos: 12345}, scope: 7}); err != nil || !reflect.DeepEqual(old, want) {
		t.Errorf("decode of a stored token = %+v, %v; want %+v", old, err, want)
	}
	good := pullCursor{PullCursor: syncengine.PullCursor{Phase: syncengine.PullLog, Pos: 5}}.token().GetToken()
	for name, tok := range map[string][]byte{
		"empty version":  {0},
		"other version":  append([]byte{2}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"bad phase":      {1, 7, 0, 0, 0, 0},
		"phase past 255": {1, 0x81, 0x02, 0, 0, 0, 0},
	} {
		if _, err := decodeCursor(tok); !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s: decodeCursor = %v, want ErrBadCursor", name, err)
		}
	}
}
