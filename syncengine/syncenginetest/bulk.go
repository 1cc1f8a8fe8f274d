package syncenginetest

import (
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// testBulk checks the optional bulk methods a store's transactions may
// offer (syncengine.RecordsReader, syncengine.NewRecordPutter): they read
// and store exactly what Record and PutRecord do. A store that offers
// neither has nothing to check.
func testBulk(t *testing.T, s syncengine.Store) {
	ctx := t.Context()
	var recs []syncengine.Record
	for n := 1; n <= 150; n++ {
		c := change(replicaA, uint64(n), n, village, map[int32][]byte{4: field(4, "户主")})
		r, err := syncengine.Apply(syncengine.Record{}, &c)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	offers := false
	update(t, s, func(tx syncengine.Tx) error {
		np, ok := tx.(syncengine.NewRecordPutter)
		offers = offers || ok
		for i, r := range recs[:140] {
			put := tx.PutRecord
			if ok && i%2 == 0 {
				put = np.PutNewRecord
			}
			if err := put(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx syncengine.ReadTx) error {
		rr, ok := tx.(syncengine.RecordsReader)
		if !ok {
			return nil
		}
		offers = true
		// More than one query's worth, a record twice, ten not stored.
		ids := []syncengine.RecordID{recs[5].ID()}
		for _, r := range recs {
			ids = append(ids, r.ID())
		}
		got, err := rr.Records(ctx, ids)
		if err != nil || len(got) != len(ids) {
			t.Fatalf("Records of %d ids: %d records, %v", len(ids), len(got), err)
		}
		for i, id := range ids {
			want, err := tx.Record(ctx, id)
			if err != nil {
				return err
			}
			if got[i].Digest() != want.Digest() || got[i].IsEmpty() != (i > 140) {
				t.Errorf("Records[%d] (%v) = %v, Record reads %v", i, id, got[i], want)
			}
		}
		stored, err := tx.RecordsInArea(ctx, village, kindHousehold)
		if err != nil || len(stored) != 140 {
			t.Errorf("RecordsInArea after PutRecord and PutNewRecord: %d records, %v; want 140", len(stored), err)
		}
		return nil
	})
	if !offers {
		t.Log("the store offers no bulk method")
	}
}
