package boltstore_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// auditKeys lists entries as recorder/sequence, for comparisons.
func auditKeys(es []boltstore.AuditEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmt.Sprintf("%v/%d", e.RecordedBy, e.Seq)
	}
	return out
}

// appendAudit records e as an entry of s in a transaction of its own.
func appendAudit(t *testing.T, s *boltstore.Store, e boltstore.AuditEntry) (boltstore.AuditEntry, error) {
	t.Helper()
	err := s.Update(t.Context(), func(tx syncengine.Tx) error {
		var err error
		e, err = boltstore.AppendAuditTx(t.Context(), tx, e)
		return err
	})
	return e, err
}

func allAudit(t *testing.T, s *boltstore.Store, since time.Time, limit int) []boltstore.AuditEntry {
	t.Helper()
	var out []boltstore.AuditEntry
	var page []byte
	for {
		es, next, err := s.Audit(t.Context(), since, page, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > limit {
			t.Fatalf("a page of %d entries, limit %d", len(es), limit)
		}
		out = append(out, es...)
		if next == nil {
			return out
		}
		page = next
	}
}

// The store's own entries are numbered 1, 2, ... in order, entries relayed
// from other servers keep their recorder and number, a batch relayed twice
// stores nothing the second time, and the trail lists oldest first, from a
// time on, page by page.
func TestAuditTrail(t *testing.T) {
	s := openStore(t)
	base := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	self := s.Replica()
	town := replicaID("township")
	for i := range 3 {
		e, err := appendAudit(t, s, boltstore.AuditEntry{At: base.Add(time.Duration(2*i) * time.Hour), Action: "device_revoke", Who: "王", AdminToken: true, From: "127.0.0.1:1", Target: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if e.RecordedBy != self || e.Seq != uint64(i+1) {
			t.Errorf("own entry %d stored as %v/%d, want %v/%d", i, e.RecordedBy, e.Seq, self, i+1)
		}
	}
	relayed := []boltstore.AuditEntry{
		{RecordedBy: town, Seq: 1, At: base.Add(time.Hour), Action: "record_move", Who: "li", From: "10.0.0.2:5"},
		{RecordedBy: town, Seq: 2, At: base.Add(3 * time.Hour), Action: "rules_change", Who: "root", From: "local"},
	}
	stored, differ, err := s.PutAudit(t.Context(), relayed)
	if err != nil || stored != 2 || differ != 0 {
		t.Fatalf("PutAudit = %d, %d, %v; want 2 new", stored, differ, err)
	}
	if stored, differ, err = s.PutAudit(t.Context(), relayed); err != nil || stored != 0 || differ != 0 {
		t.Errorf("PutAudit again = %d, %d, %v; want nothing new, nothing different", stored, differ, err)
	}
	changed := relayed[1]
	changed.Detail = "other"
	if stored, differ, err = s.PutAudit(t.Context(), []boltstore.AuditEntry{changed}); err != nil || stored != 0 || differ != 1 {
		t.Errorf("PutAudit of an entry held with other content = %d, %d, %v; want 0 new, 1 different", stored, differ, err)
	}

	want := []string{
		fmt.Sprintf("%v/1", self), fmt.Sprintf("%v/1", town), fmt.Sprintf("%v/2", self),
		fmt.Sprintf("%v/2", town), fmt.Sprintf("%v/3", self),
	}
	for _, limit := range []int{1, 2, 100} {
		if got := auditKeys(allAudit(t, s, time.Time{}, limit)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("trail in pages of %d = %v, want %v", limit, got, want)
		}
	}
	if got := auditKeys(allAudit(t, s, base.Add(2*time.Hour), 2)); fmt.Sprint(got) != fmt.Sprint(want[2:]) {
		t.Errorf("trail since 10:00 = %v, want %v", got, want[2:])
	}
	if got := allAudit(t, s, base.Add(time.Hour), 100)[0]; got.Who != "li" || got.Action != "record_move" || got.From != "10.0.0.2:5" || got.Detail != "" || !got.At.Equal(base.Add(time.Hour)) {
		t.Errorf("relayed entry read back as %+v", got)
	}
	if got := allAudit(t, s, base.Add(time.Hour), 100)[1]; got.Who != "王" || !got.AdminToken || got.Target != "x" {
		t.Errorf("own entry read back as %+v", got)
	}
	if es := allAudit(t, s, base.Add(24*time.Hour), 10); len(es) != 0 {
		t.Errorf("trail since tomorrow = %v, want none", auditKeys(es))
	}
	if _, _, err := s.Audit(t.Context(), time.Time{}, []byte("not a token"), 10); !errors.Is(err, boltstore.ErrInvalidToken) {
		t.Errorf("Audit with a made-up page token: %v, want ErrInvalidToken", err)
	}

	es, err := s.AuditOf(t.Context(), self, 1, 10)
	if err != nil || fmt.Sprint(auditKeys(es)) != fmt.Sprint([]string{fmt.Sprintf("%v/2", self), fmt.Sprintf("%v/3", self)}) {
		t.Errorf("AuditOf(self, after 1) = %v, %v", auditKeys(es), err)
	}
	if es, err := s.AuditOf(t.Context(), town, 0, 1); err != nil || len(es) != 1 || es[0].Seq != 1 {
		t.Errorf("AuditOf(township, after 0, limit 1) = %v, %v", auditKeys(es), err)
	}
}

// PutAudit refuses, storing nothing of the batch, an entry in the store's own
// name, one without a recorder or number, and one the time index cannot
// hold.
func TestPutAuditRefusesBadEntries(t *testing.T) {
	s := openStore(t)
	at := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	good := boltstore.AuditEntry{RecordedBy: replicaID("t"), Seq: 1, At: at, Action: "device_add"}
	for name, bad := range map[string]boltstore.AuditEntry{
		"own replica": {RecordedBy: s.Replica(), Seq: 9, At: at},
		"no recorder": {Seq: 1, At: at},
		"sequence 0":  {RecordedBy: replicaID("t"), At: at},
		"before 1970": {RecordedBy: replicaID("t"), Seq: 2, At: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
		"zero time":   {RecordedBy: replicaID("t"), Seq: 2},
		"beyond 2262": {RecordedBy: replicaID("t"), Seq: 2, At: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, _, err := s.PutAudit(t.Context(), []boltstore.AuditEntry{good, bad}); !errors.Is(err, boltstore.ErrInvalidAudit) {
			t.Errorf("%s: PutAudit = %v, want ErrInvalidAudit", name, err)
		}
	}
	if es := allAudit(t, s, time.Time{}, 10); len(es) != 0 {
		t.Errorf("refused batches stored %v", auditKeys(es))
	}
	if _, err := appendAudit(t, s, boltstore.AuditEntry{}); !errors.Is(err, boltstore.ErrInvalidAudit) {
		t.Errorf("AppendAudit without a time = %v, want ErrInvalidAudit", err)
	}
}

// An entry appended in the transaction of a failed action is rolled back
// with it: the trail holds only what was done.
func TestAppendAuditTxRollsBackWithTheAction(t *testing.T) {
	s := openStore(t)
	failed := errors.New("the action failed")
	err := s.Update(t.Context(), func(tx syncengine.Tx) error {
		if _, _, err := boltstore.RevokeDeviceTx(t.Context(), tx, replicaID("nobody")); !errors.Is(err, boltstore.ErrNoDevice) {
			t.Errorf("RevokeDeviceTx of an unknown device = %v, want ErrNoDevice", err)
		}
		if _, err := boltstore.AppendAuditTx(t.Context(), tx, boltstore.AuditEntry{At: time.Now(), Action: "device_revoke"}); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatal(err)
	}
	if es := allAudit(t, s, time.Time{}, 10); len(es) != 0 {
		t.Errorf("trail after a failed action = %v, want empty", auditKeys(es))
	}
	e, err := appendAudit(t, s, boltstore.AuditEntry{At: time.Now(), Action: "device_add"})
	if err != nil || e.Seq != 1 {
		t.Errorf("first entry after the rollback: %d, %v; want number 1", e.Seq, err)
	}
}

// A store of schema 4 (before the audit trail) opens as schema 5 with an
// empty trail, and records entries after the upgrade.
func TestOpenUpgradesSchema4(t *testing.T) {
	path := realStore(t, t.TempDir())
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		for _, b := range []string{"audit", "audittime"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 4))
	})
	s := openAt(t, path)
	if _, err := appendAudit(t, s, boltstore.AuditEntry{At: time.Now(), Action: "device_add"}); err != nil {
		t.Fatalf("append after the upgrade: %v", err)
	}
	if es := allAudit(t, s, time.Time{}, 10); len(es) != 1 {
		t.Errorf("trail after the upgrade = %v, want the one entry", auditKeys(es))
	}
}

// A store opened accepting a rollback (fieldsyncd recover after a restore)
// numbers its next entries past every number it may have given before the
// loss, which its county may hold already.
func TestRollbackSkipsAuditNumbers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendAudit(t, s, boltstore.AuditEntry{At: time.Now(), Action: "device_add"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	backup, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.Open(path, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := appendAudit(t, s, boltstore.AuditEntry{At: time.Now(), Action: "device_revoke"})
	if err != nil || lost.Seq != 2 {
		t.Fatalf("second entry: %d, %v", lost.Seq, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions
	o.AcceptRollback = true
	s, err = boltstore.Open(path, &o)
	if err != nil {
		t.Fatal(err)
	}
	next, err := appendAudit(t, s, boltstore.AuditEntry{At: time.Now(), Action: "device_revoke"})
	if err != nil || next.Seq <= lost.Seq {
		t.Errorf("entry after the accepted rollback numbered %d (%v), want beyond the lost %d", next.Seq, err, lost.Seq)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAuditPage reads the last page of 1000 entries (ListAudit's limit)
// of a trail of 100,000, from a time on, as 'fieldsync admin audit --since'
// does at a county after some years.
func BenchmarkAuditPage(b *testing.B) {
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "server.db"), &testOptions)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n, batch = 100_000, 500
	for i := 0; i < n; i += batch {
		es := make([]boltstore.AuditEntry, batch)
		for j := range es {
			k := i + j
			es[j] = boltstore.AuditEntry{RecordedBy: replicaID(fmt.Sprintf("township %d", k%15)), Seq: uint64(k/15 + 1), At: t0.Add(time.Duration(k) * time.Minute),
				Action: "device_revoke", Who: "operator", AdminToken: true, From: "10.1.2.3:54321", Target: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Detail: "areas 532523101201"}
		}
		if _, _, err := s.PutAudit(b.Context(), es); err != nil {
			b.Fatal(err)
		}
	}
	since := t0.Add((n - 1000) * time.Minute)
	b.ResetTimer()
	for range b.N {
		es, next, err := s.Audit(b.Context(), since, nil, 1000)
		if err != nil || len(es) != 1000 || next != nil {
			b.Fatalf("%d entries, next %x, %v", len(es), next, err)
		}
	}
}
