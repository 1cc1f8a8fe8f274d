package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// bootstrapRecords is the size of the area a new device bootstraps.
const bootstrapRecords = 20_000

// townshipRecords generates a township of 32 villages of 75 households
// (about 9,400 people, 650 records a village: a year of visits, audits,
// follow-ups and the ledger) and returns its prefix and its first
// bootstrapRecords records in generation order.
func townshipRecords(tb testing.TB) (prefix string, recs []*fieldsyncv1.Record) {
	tb.Helper()
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 32, Seed: 5, AsOf: asOf()})
	if err != nil {
		tb.Fatal(err)
	}
	prefix = g.County.Townships[0].Code[:9]
	err = g.Each(func(r *fieldsyncv1.Record) error {
		_, area, err := wire.Identity(r)
		if err != nil {
			return err
		}
		if strings.HasPrefix(area, prefix) && len(recs) < bootstrapRecords {
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(recs) < bootstrapRecords {
		tb.Fatalf("township has %d records, want %d", len(recs), bootstrapRecords)
	}
	return prefix, recs
}

// BenchmarkBootstrap20k measures a new device's first Sync over plain
// loopback: a snapshot of the 20,000 records of its township, which another
// device pushed to the server beforehand. Each iteration enrols a new
// replica (outside the timer) and times its Sync.
func BenchmarkBootstrap20k(b *testing.B) { benchBootstrap(b, false) }

// BenchmarkBootstrap20kSealed is BenchmarkBootstrap20k on a replica opened
// with a secret key: every record state and read-model row sealed.
func BenchmarkBootstrap20kSealed(b *testing.B) { benchBootstrap(b, true) }

func benchBootstrap(b *testing.B, sealed bool) {
	town := startTownship(b, local)
	prefix, recs := townshipRecords(b)
	src := newDevice(b, town, local)
	src.enroll(b, town, prefix)
	changes := src.saveAll(b, recs)
	src.syncPlain(b)
	if got := town.logEnd(b); got != syncengine.Position(changes) {
		b.Fatalf("server log ends at %d after the source's push, want %d", got, changes)
	}
	src.close(b)

	var wall, cpu time.Duration
	var down, up int64
	var responses, pullMsg, pullGz int
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		dev := newDevice(b, town, local)
		if sealed {
			dev.close(b)
			dev.key = bytes.Repeat([]byte{byte(i + 1)}, 32)
			dev.open(b)
		}
		dev.enroll(b, town, prefix)
		dev.link.reset()
		dev.rpcs.reset()
		stopProfile := profileSection(b, i == 0)
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime(b)
		err := dev.client.Sync(b.Context())
		wall += time.Since(start)
		cpu += cpuTime(b) - cpu0
		b.StopTimer()
		stopProfile()
		if err != nil {
			b.Fatalf("bootstrap Sync: %v", err)
		}
		_, u, d := dev.link.traffic(b)
		up, down = up+u, down+d
		for _, p := range dev.rpcs.byMethod("Pull") {
			responses += p.in.msgs
			pullMsg += p.in.length
			pullGz += p.in.compressed
		}
		checkDeviceHas(b, dev, asSaved(recs))
		dev.checkClean(b)
		dev.close(b)
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.Logf("bootstrap of %d records on loopback: %.2f s (target ≤ 1.0 s %s), %.2f CPU-s, device and server together",
		bootstrapRecords, wall.Seconds()/n, mark(wall.Seconds()/n <= 1), cpu.Seconds()/n)
	b.ReportMetric(wall.Seconds()/n, "s/bootstrap")
	b.ReportMetric(bootstrapRecords*n/wall.Seconds(), "records/s")
	b.ReportMetric(cpu.Seconds()/n, "cpu-s/bootstrap")
	b.ReportMetric(float64(down)/(n*bootstrapRecords), "wire-B-down/record")
	b.ReportMetric(float64(up)/n, "wire-B-up/bootstrap")
	b.ReportMetric(float64(responses)/n, "pull-responses/bootstrap")
	b.ReportMetric(float64(pullMsg)/(n*bootstrapRecords), "pull-msg-B/record")
	b.ReportMetric(float64(pullGz)/(n*bootstrapRecords), "pull-msg-gz-B/record")
}
