package sqlitestore_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncengine"
)

// BenchmarkSaveVisit saves one household visit per operation the way the app
// does (record state, change in the outbox, read-model row, one transaction,
// synchronous=FULL), into a replica that already holds a village. It reports
// the p50 and p99 latency of a save and saves per second.
func BenchmarkSaveVisit(b *testing.B) {
	s, err := sqlitestore.Open(b.Context(), filepath.Join(b.TempDir(), "replica.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := openTempFill(b, s)
	var visits []*fieldsyncv1.HouseholdVisit
	for _, r := range recs {
		if v := r.GetHouseholdVisit(); v != nil {
			visits = append(visits, v)
		}
	}
	clock := syncengine.NewClock(s.Replica(), 0)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		v := proto.Clone(visits[i%len(visits)]).(*fieldsyncv1.HouseholdVisit)
		v.Notes = "复访 " + time.Now().Format(time.TimeOnly)
		start := time.Now()
		save(b, s, clock, &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}})
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		var total time.Duration
		for _, d := range lat {
			total += d
		}
		b.ReportMetric(float64(len(lat))/total.Seconds(), "saves/s")
	}
}
