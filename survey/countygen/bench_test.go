package countygen

import (
	"testing"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// BenchmarkGenerate generates a county of 20,000 people and streams all its
// records.
func BenchmarkGenerate(b *testing.B) {
	records := 0
	for b.Loop() {
		g, err := New(Config{People: 20000})
		if err != nil {
			b.Fatal(err)
		}
		records = 0
		err = g.Each(func(*fieldsyncv1.Record) error {
			records++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(records), "records/op")
}
