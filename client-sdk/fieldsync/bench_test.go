package fieldsync

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// BenchmarkSaveVisitWithRules saves a new household visit through the SDK's
// save path on a replica holding a generated village: validation, the diff,
// the write, the read model, and the problems and risk flags the visit
// raises (looked up against the household and its people), in one
// transaction with synchronous=FULL. It reports the p50 and p99 latency.
func BenchmarkSaveVisitWithRules(b *testing.B) { benchSaveVisit(b) }

// BenchmarkSaveVisitWithRulesSealed is BenchmarkSaveVisitWithRules on a
// replica opened with a secret key (its records sealed).
func BenchmarkSaveVisitWithRulesSealed(b *testing.B) {
	benchSaveVisit(b, WithSecretKey(bytes.Repeat([]byte{7}, 32)))
}

func benchSaveVisit(b *testing.B, opts ...Option) {
	byKind := villageRecords(b)
	c := openReplica(b, opts...)
	for _, k := range []fieldsyncv1.RecordKind{fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD, fieldsyncv1.RecordKind_RECORD_KIND_PERSON} {
		for _, r := range byKind[k] {
			if _, err := c.SaveRecord(b.Context(), r); err != nil {
				b.Fatal(err)
			}
		}
	}
	visits := byKind[fieldsyncv1.RecordKind_RECORD_KIND_HOUSEHOLD_VISIT]
	lat := make([]time.Duration, 0, b.N)
	raised := 0
	for i := 0; b.Loop(); i++ {
		v := proto.Clone(visits[i%len(visits)].GetHouseholdVisit()).(*fieldsyncv1.HouseholdVisit)
		v.Id = uuid.Must(uuid.NewV7()).String()
		start := time.Now()
		res, err := c.SaveRecord(b.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_HouseholdVisit{HouseholdVisit: v}})
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		raised += res.Problems + res.Flags
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(raised)/float64(len(lat)), "raised/save")
	}
}
