// Package bench holds fieldsync's end-to-end benchmarks: real parts only
// (the device SDK on SQLite replicas in temporary directories, a township
// server on bbolt, gRPC over TCP on 127.0.0.1), measuring what a village
// doctor's phone waits for and pays for on a rural link. The package has no
// API; everything is in its _test.go files.
//
// # What is measured
//
// BenchmarkDayEndSync2G is the day-end sync of a village doctor's phone: the
// village's registry (clinic, workers, 75 households, about 290 people) was
// synced earlier; during the day the doctor recorded 40 household visits
// (countygen's, with new ids) and a township staff phone added 3 follow-ups
// in the village. The phone, restarted so its connection is cold, runs one
// Client.Sync — a new connection, one Exchange carrying the handshake and
// the 40 visits (protocol version 2: the phone synced with this server
// before), a Pull of the 3 follow-ups asked for beside it — over an
// emulated 2G link. It checks that the Sync made exactly one connection and
// no separate Hello, that the server holds the 40 visits and that the
// phone shows the 3 follow-ups, and reports:
//
//	s/sync                  wall time of Sync
//	s-floor/sync            the link's floor for the bytes the session
//	                        carried: two round trips (TCP, the exchange)
//	                        and the longer of the bytes up and the bytes
//	                        down at the link's rates
//	s-dial, s-connect+hello time from the start of Sync to the dialer's return
//	                        (the TCP handshake) and to the end of a Hello (the
//	                        dial when the handshake travels with the push);
//	                        s-push and s-pull follow
//	wire-B-up/visit         bytes the phone sent, all included, / 40
//	wire-B-total/visit      bytes sent and received / 40
//	framing-B-up|down/sync  bytes that were not gRPC messages: HTTP/2 preface,
//	                        settings, headers, window updates, pings, GOAWAY,
//	                        and with TLS its handshake and record overhead
//	push-msg-B/visit        PushRequest size (proto, records packed), / 40
//	push-msg-gz-B/visit     the same compressed as gRPC sent it (zstd; without
//	                        the 5-byte gRPC message prefix), / 40
//
// It also logs each figure beside issue 15's target (≤ 5.5 s, ≤ 150 B a
// visit, ≤ 1.2× the floor) and the time by phase; benchmark logs are
// printed whatever -v. BenchmarkDayEndSync2GTLS is the same session with
// the township serving TLS 1.3 (an ECDSA P-256 certificate of a test
// county CA) and the phone verifying it; its target is 7 s.
//
// BenchmarkDayEndUnary2G sends the same 40 visits as 40 Push RPCs of one
// change each, one after another, over the same link and a cold connection,
// with the SDK's dial options (gzip, bearer token): Hello, then for each
// change syncengine.NextBatch with a limit of 1 on the phone's replica, Push,
// syncengine.Acknowledge. It does not pull. Its s-connect+hello plus s-push
// compare with the same phases of BenchmarkDayEndSync2G.
//
// BenchmarkBootstrap20k is a new device's first Sync over plain loopback (no
// shaping): a snapshot of the 20,000 records of its township (32 villages of
// countygen's default size, the first 20,000 records in generation order),
// which another device pushed to the server once, outside the timer. Each
// iteration enrols a new replica (untimed) and times its Sync; it checks the
// device then shows all 20,000 records exactly as saved, and reports
// s/bootstrap, records/s, cpu-s/bootstrap (CPU time of the process, device
// and server together, during the Sync: steadier than wall time on a shared
// machine), the bytes received per record and the number of Pull responses.
//
// TestDayEndSessions runs both day-end sessions over a fast emulated link, so
// go test checks what the benchmarks rely on. TestDayEndPushBreakdown and
// TestSnapshotBreakdown check the day-end PushRequest and the snapshot a new
// device receives and, with -v, log where their bytes go field by field
// (proto.Size and the wire encoding) and what leaner encodings would weigh.
//
// # The emulated link
//
// The 2G link is Facebook ATC's "2G – Developing Rural" profile without its
// 2 % loss: 18 kbit/s up, 20 kbit/s down, 650 ms one way, a kbit being 1,000
// bits as tc and ATC count it (link_test.go's linkModel; grpc-go's
// benchmark/latency package, used before, counts 1,024). Both ends of a
// measured connection are wrapped: what a side writes leaves in packets of
// at most 1,400 bytes, each when the link has sent the one before, and
// arrives at the other side its serialization time plus 650 ms later. A
// connection's set-up costs the TCP handshake's round trip (1.3 s) before
// the phone may send. The phone's connections are installed with
// fieldsync.WithDialOptions(grpc.WithContextDialer(...)); the server serves
// one grpc.Server on a plain listener, used to set state up, and a shaped
// one, used for the measured sessions. Bytes are counted on the phone's
// connection above the emulation: the HTTP/2 (and TLS) bytes written and
// read, without TCP/IP headers and without the emulation's own packet
// headers.
//
// What the emulation leaves out: packet loss (the profile's 2 %), TCP slow
// start and radio wake-up.
//
// # Running
//
// The 2G benchmarks take seconds per iteration (BenchmarkDayEndUnary2G over a
// minute) and their set-up more, so run one iteration each:
//
//	go test -run '^$' -bench . -benchtime=1x ./bench/
//	go test -run '^$' -bench DayEndSync2G -benchtime=3x ./bench/
//	go test -run 'Breakdown' -v ./bench/
//
// BenchmarkBootstrap20k's set-up saves 20,000 records on one device and
// pushes them (about a minute on a 2-vCPU VM). To profile a measured section
// alone, without the set-up that go test -cpuprofile would include, set
// FIELDSYNC_BENCH_CPUPROFILE to a directory: the first measured section of
// each benchmark that supports it (BenchmarkBootstrap20k,
// BenchmarkDayEndSync2G) is written to <dir>/<benchmark>.cpu.
//
//	FIELDSYNC_BENCH_CPUPROFILE=/tmp go test -run '^$' -bench Bootstrap -benchtime=1x -o /tmp/bench.test ./bench/
//	go tool pprof -top -cum /tmp/bench.test /tmp/BenchmarkBootstrap20k.cpu
//
// Benchmarks measure; they assert correctness (every record arrived), never
// timings. The targets they are read against are issue 15's: a day-end sync
// of 40 visits in at most 5.5 s on this link (7 s with TLS), within 1.2×
// of the link's floor, at most 150 wire bytes up per visit; a bootstrap of
// 20,000 records in at most 1 s on loopback (see also
// shared/research/perf_rel_anchors.md §9, T1, T2 and T8).
package bench
