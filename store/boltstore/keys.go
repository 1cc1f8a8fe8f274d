package boltstore

import (
	"encoding/binary"
	"fmt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Buckets and meta keys; see the package documentation for the layout.
var (
	bucketMeta       = []byte("meta")
	bucketLog        = []byte("log")
	bucketLogArea    = []byte("logarea")
	bucketDots       = []byte("dots")
	bucketRecords    = []byte("records")
	bucketRecArea    = []byte("recarea")
	bucketCursors    = []byte("cursors")
	bucketRejections = []byte("rejections")
	bucketDevices    = []byte("devices")
	bucketDevTokens  = []byte("devtokens")
	bucketEnrolCodes = []byte("enrolcodes")
	bucketOrigins    = []byte("origins")
	bucketAudit      = []byte("audit")
	bucketAuditTime  = []byte("audittime")
	bucketStaff      = []byte("staff")
	// bucketDeviceReports holds the registries relays reported.
	bucketDeviceReports = []byte("devicereports")
	// bucketLogFrom maps a log position to the peer its change came from.
	bucketLogFrom = []byte("logfrom")

	allBuckets = [][]byte{
		bucketMeta, bucketLog, bucketLogArea, bucketDots, bucketRecords,
		bucketRecArea, bucketCursors, bucketRejections, bucketDevices, bucketDevTokens,
		bucketEnrolCodes, bucketOrigins, bucketAudit, bucketAuditTime, bucketStaff,
		bucketDeviceReports, bucketLogFrom,
	}

	keySchema    = []byte("schema")
	keyReplica   = []byte("replica")
	keyCompacted = []byte("compacted")
	// keyTxidBase holds, in a file Rewrite wrote, the transactions of the
	// store before the file: its transaction ids count from there, so the
	// record of the last commit (TxidFile) still tells an older file (the
	// one it replaced, a backup) for a rollback.
	keyTxidBase = []byte("txidbase")
)

const (
	posLen = 8
	idLen  = 16
	dotLen = idLen + 8
)

// u64 returns v as 8 big-endian bytes in a new slice.
func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

func posKey(p syncengine.Position) []byte { return u64(uint64(p)) }

func dotKey(d syncengine.Dot) []byte {
	k := make([]byte, 0, dotLen)
	k = append(k, d.Replica[:]...)
	return binary.BigEndian.AppendUint64(k, d.Counter)
}

// areaPosKey is a logarea key: area code, then position.
func areaPosKey(area []byte, p syncengine.Position) []byte {
	k := make([]byte, 0, len(area)+posLen)
	k = append(k, area...)
	return binary.BigEndian.AppendUint64(k, uint64(p))
}

// areaIDKey is a recarea key: area code, then record id.
func areaIDKey(area []byte, id syncengine.RecordID) []byte {
	k := make([]byte, 0, len(area)+idLen)
	k = append(k, area...)
	return append(k, id[:]...)
}

// openEnvelope splits a stored value into its area code and the encoded
// change or record. The slices alias v.
func openEnvelope(v []byte) (area, rest []byte, err error) {
	if len(v) == 0 || len(v) < 1+int(v[0]) {
		return nil, nil, fmt.Errorf("boltstore: stored value of %d bytes has no area envelope", len(v))
	}
	n := 1 + int(v[0])
	return v[1:n], v[n:], nil
}

// A dots index value is the log key (position) of the dot's change, then
// the change's id once compaction has dropped the entry (values written by
// schema 9 have it from the start): the id outlives the log entry, so a
// change reusing a dot (a replica restored from an older copy) is told from
// a retry even then. While the log holds the entry, the id is read there.
func dotValue(pk []byte, id syncengine.ChangeID) []byte {
	return append(append(make([]byte, 0, posLen+idLen), pk...), id[:]...)
}

// dotEntry reads a dots index value: the log key, and the change id when the
// value has one (ok false for a value of another size).
func dotEntry(v []byte) (pk []byte, id syncengine.ChangeID, hasID, ok bool) {
	switch len(v) {
	case posLen:
		return v, id, false, true
	case posLen + idLen:
		copy(id[:], v[posLen:])
		return v[:posLen], id, true, true
	}
	return nil, id, false, false
}
