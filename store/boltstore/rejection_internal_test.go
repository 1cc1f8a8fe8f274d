package boltstore

import (
	"encoding/binary"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// A rejection stored before reasons were kept (the outcome byte alone before
// the detail) still reads, without reason or field errors; a damaged one is
// an error, not a panic.
func TestDecodeRejectionLayouts(t *testing.T) {
	k := make([]byte, idLen+dotLen)
	k[0], k[idLen] = 1, 2
	old := binary.BigEndian.AppendUint64(nil, 9)
	old = append(old, make([]byte, idLen)...)
	old = append(old, byte(syncengine.OutcomeInvalid))
	old = append(old, "findings: required"...)
	r, err := decodeRejection(k, old)
	if err != nil || r.Outcome != syncengine.OutcomeInvalid || r.Detail != "findings: required" || r.Pos != 9 || r.Reason != "" || r.Fields != nil {
		t.Errorf("old layout = %+v, %v", r, err)
	}
	damaged := append(append([]byte(nil), old[:posLen+idLen]...), byte(syncengine.OutcomeInvalid)|rejectionDetailed, 200)
	if _, err := decodeRejection(k, damaged); err == nil {
		t.Error("a detailed rejection with a truncated reason decoded")
	}
	damaged = append(append([]byte(nil), old[:posLen+idLen]...), byte(syncengine.OutcomeInvalid)|rejectionDetailed, 0, 3, 1)
	if _, err := decodeRejection(k, damaged); err == nil {
		t.Error("a detailed rejection with truncated field errors decoded")
	}
}
