package factstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/indicators/factstore"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store/boltstore"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// The county benchmark: a countygen county of benchPeople people (2,200,000
// by default: about 5.07 million records; FIELDSYNC_BENCH_PEOPLE sets
// another) taken in at 1000 changes per batch through syncengine.ReceiveBatch
// into two stores, one keeping the indicators' read model and one not,
// batch by batch in turn so that both see the same disk and the same moment;
// then the county's indicators read from the model.
//
//	go test -run '^$' -bench County -benchtime 1x -timeout 60m ./indicators/factstore/
//
// It needs about 20 GB of disk under the test's temporary directory.

var bench struct {
	once       sync.Once
	err        error
	store      *boltstore.Store
	model      *factstore.Model
	g          *countygen.Generator
	records    int
	with, bare time.Duration // ingest time with the model, without
	lag        time.Duration // the model's catch-up after the last batch
}

func benchPeople(tb testing.TB) int {
	if v := os.Getenv("FIELDSYNC_BENCH_PEOPLE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			tb.Fatalf("FIELDSYNC_BENCH_PEOPLE=%q: %v", v, err)
		}
		return n
	}
	return 2_200_000
}

// benchDir is where the county's stores are made: not b.TempDir, which
// the first sub-benchmark would remove; removed at the end of the run by
// TestMain.
var benchDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func setupCounty(b *testing.B) {
	bench.once.Do(func() { bench.err = ingestCounty(benchPeople(b)) })
	if bench.err != nil {
		b.Fatal(bench.err)
	}
}

func ingestCounty(people int) error {
	g, err := countygen.New(countygen.Config{People: people, Seed: 1})
	if err != nil {
		return err
	}
	if benchDir, err = os.MkdirTemp("", "fieldsync-county-bench-"); err != nil {
		return err
	}
	ctx := context.Background()
	with, err := boltstore.Open(filepath.Join(benchDir, "with.db"), nil)
	if err != nil {
		return err
	}
	model, err := factstore.Open(ctx, with, filepath.Join(benchDir, factstore.File))
	if err != nil {
		return err
	}
	bare, err := boltstore.Open(filepath.Join(benchDir, "bare.db"), nil)
	if err != nil {
		return err
	}
	defer bare.Close()
	// The model catches up in the background while the county comes in,
	// every second, as fieldsyncd serve runs it (Server.RunIndicators).
	bg, stop := context.WithCancel(ctx)
	caughtUp := make(chan error, 1)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				caughtUp <- nil
				return
			case <-t.C:
				if err := model.CatchUp(bg); err != nil && bg.Err() == nil {
					caughtUp <- err
					return
				}
			}
		}
	}()
	defer stop()
	township := syncengine.ReplicaID(uuid.Must(uuid.NewV7()))
	wall := g.Config().AsOf.Add(-time.Hour).UnixMilli()
	var entries []syncengine.Entry
	var at syncengine.Position
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		batch := syncengine.Batch{Sender: township, After: at, Through: at + syncengine.Position(len(entries)), Changes: entries}
		// In turn: the store without the model first on even batches.
		stores := []*boltstore.Store{bare, with}
		if at/1000%2 == 1 {
			stores = []*boltstore.Store{with, bare}
		}
		for _, s := range stores {
			began := time.Now()
			rc, err := syncengine.ReceiveBatch(ctx, s, batch, syncengine.ReceiveOptions{})
			if err != nil {
				return err
			}
			if rc.Through != batch.Through {
				return fmt.Errorf("receipt through %d, want %d", rc.Through, batch.Through)
			}
			if s == with {
				bench.with += time.Since(began)
			} else {
				bench.bare += time.Since(began)
			}
		}
		at = batch.Through
		entries = entries[:0]
		return nil
	}
	n := 0
	err = g.Each(func(rec *fieldsyncv1.Record) error {
		id, area, err := wire.Identity(rec)
		if err != nil {
			return err
		}
		fields, err := wire.Fields(wire.Body(rec))
		if err != nil {
			return err
		}
		n++
		c := syncengine.Change{
			ID: syncengine.ChangeID(uuid.Must(uuid.NewV7())), RecordID: id, Kind: wire.KindOf(rec), Area: area,
			Origin: township, Dot: syncengine.Dot{Replica: township, Counter: uint64(n)},
			Stamp:   syncengine.Stamp{WallMS: wall + int64(n/1000), Replica: township},
			Context: syncengine.NewVersionVector(), Fields: fields,
		}
		entries = append(entries, syncengine.Entry{Pos: at + syncengine.Position(len(entries)+1), Change: c})
		if len(entries) == 1000 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	stop()
	if err == nil {
		err = <-caughtUp
	}
	if err != nil {
		return err
	}
	// What the model has left to catch up with once the last batch is in.
	began := time.Now()
	if err := model.CatchUp(ctx); err != nil {
		return err
	}
	bench.lag = time.Since(began)
	bench.store, bench.model, bench.g, bench.records = with, model, g, n
	return nil
}

// BenchmarkCountyIngest reports the county's ingest at 1000 changes per
// batch with the read model and without it, in the same run; the op is the
// whole county.
func BenchmarkCountyIngest(b *testing.B) {
	setupCounty(b)
	for b.Loop() {
	}
	n := float64(bench.records)
	b.ReportMetric(n, "records")
	b.ReportMetric(n/bench.with.Seconds(), "changes/s-with-model")
	b.ReportMetric(n/bench.bare.Seconds(), "changes/s-without")
	b.ReportMetric(100*(bench.with.Seconds()/bench.bare.Seconds()-1), "%-slower")
	b.ReportMetric(bench.lag.Seconds(), "s-model-behind-at-end")
	if st, err := os.Stat(bench.store.Path()); err == nil {
		b.ReportMetric(float64(st.Size())/n, "file-B/record")
	}
	usage, err := bench.store.Usage()
	if err != nil {
		b.Fatal(err)
	}
	var alloc int64
	for _, u := range usage {
		alloc += u.Alloc
		if u.Alloc > 0 {
			b.Logf("bucket %-13s %9d keys %12d B in pages (%5.1f B/record), %3.0f %% filled",
				u.Name, u.Keys, u.Alloc, float64(u.Alloc)/n, 100*float64(u.InUse)/float64(u.Alloc))
		}
	}
	b.ReportMetric(float64(alloc)/n, "pages-B/record")
	// The store without the model, rewritten as 'fieldsyncd rewrite' does:
	// what a county's file takes with every page filled.
	began := time.Now()
	rep, err := boltstore.Rewrite(context.Background(), filepath.Join(benchDir, "bare.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("bare store rewritten in %v: %d -> %d B", time.Since(began).Round(time.Millisecond), rep.Before, rep.After)
	b.ReportMetric(float64(rep.After)/n, "rewritten-B/record")
}

// BenchmarkCountyIndicatorsToday reads the county's indicators by village as
// of today, as the web page's overview does: the villages' figures are kept
// between reads, so after the first read only the villages changed since are
// computed again.
func BenchmarkCountyIndicatorsToday(b *testing.B) {
	setupCounty(b)
	now := bench.g.Config().AsOf
	o := indicators.Options{Area: bench.g.County.Code[:6], AsOf: now, Now: now, Rules: survey.DefaultRules()}
	began := time.Now()
	if _, err := bench.model.Compute(context.Background(), o, nil); err != nil {
		b.Fatal(err)
	}
	first := time.Since(began)
	for b.Loop() {
		if _, err := bench.model.Compute(context.Background(), o, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(first.Seconds()*1000, "ms-first-read")
	b.ReportMetric(float64(bench.records), "records")
}

// BenchmarkCountyIndicatorsOtherDay reads the county's indicators by village
// as of another day each time, so that no village's figures are kept from
// an earlier read: every fact of the county is read.
func BenchmarkCountyIndicatorsOtherDay(b *testing.B) {
	setupCounty(b)
	now := bench.g.Config().AsOf
	i := 0
	for b.Loop() {
		i++
		o := indicators.Options{Area: bench.g.County.Code[:6], AsOf: now.AddDate(0, 0, -7*i), Now: now, Rules: survey.DefaultRules()}
		if _, err := bench.model.Compute(context.Background(), o, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(bench.records), "records")
}
