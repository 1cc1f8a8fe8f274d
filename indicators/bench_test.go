package indicators_test

import (
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/indicators/indicatorstest"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
)

// BenchmarkComputeCounty computes every indicator of a generated county of
// 200,000 people (about 460,000 records) by village, from their facts held
// in memory (indicatorstest.Set): the computation alone, on one core; the
// server's figures are in indicators/factstore's county benchmarks.
func BenchmarkComputeCounty(b *testing.B) {
	g, err := countygen.New(countygen.Config{People: 200_000, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	set := indicatorstest.NewSet()
	n := 0
	if err := g.Each(func(r *fieldsyncv1.Record) error {
		set.Add(r, time.Time{})
		n++
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	asOf := g.Config().AsOf.Add(-24 * time.Hour)
	o := indicators.Options{Area: g.County.Code, AsOf: asOf, Rules: survey.DefaultRules(), Now: asOf}
	b.ResetTimer()
	for b.Loop() {
		if _, err := set.Compute(o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "records")
}
