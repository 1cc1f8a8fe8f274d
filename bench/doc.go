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
// Client.Sync — a new connection, Hello, Push of the 40 visits, Pull of the 3
// follow-ups — over an emulated 2G link. It checks that the Sync made exactly
// one connection, that the server holds the 40 visits and that the phone
// shows the 3 follow-ups, and reports:
//
//	s/sync                  wall time of Sync
//	s-dial, s-connect+hello time from the start of Sync to the dialer's return
//	                        and to the end of Hello; s-push and s-pull follow
//	wire-B-up/visit         bytes the phone sent, all included, / 40
//	wire-B-total/visit      bytes sent and received / 40
//	framing-B-up|down/sync  bytes that were not gRPC messages: HTTP/2 preface,
//	                        settings, headers, window updates, pings, GOAWAY
//	push-msg-B/visit        PushRequest size (proto), / 40
//	push-msg-gz-B/visit     the same gzip'd as gRPC sent it (without the
//	                        5-byte gRPC message prefix), / 40
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
// 2 % loss: 18 kbit/s up, 20 kbit/s down, 650 ms one way, emulated with
// google.golang.org/grpc/benchmark/latency as in
// shared/research/perf_rel_anchors.md §5.2. A latency.Network shapes what its
// side writes: the phone's dialed connection is wrapped with {Kbps: 18,
// Latency: 650 ms, MTU: 1400} (phone → server) and the server's shaped
// listener with {Kbps: 20, Latency: 650 ms, MTU: 1400} (server → phone).
// The package's kbit is 1,024 bits: 18 is 18,432 bit/s (2,304 B/s) and 20 is
// 20,480 bit/s (2,560 B/s), 2.4 % faster than the profile. The phone's
// connections are installed with fieldsync.WithDialOptions(
// grpc.WithContextDialer(...)); the server serves one grpc.Server on a plain
// listener, used to set state up, and a shaped one, used for the measured
// sessions. Bytes are counted on the phone's connection above the emulation:
// the HTTP/2 bytes gRPC writes and reads, without TCP/IP headers and without
// the emulation's own packet headers.
//
// What the emulation leaves out: packet loss (the profile's 2 %), TCP slow
// start, radio wake-up, and TCP's handshake — latency.Network delays the
// connection's set-up by one one-way latency, where a real TCP connection
// costs a round trip (1.3 s) before the first byte, so add about 0.65 s to
// s/sync. The link is plaintext; TLS 1.3 with client certificates would add
// about 2.1 KB up, 2.0–2.9 KB down and a round trip (perf_rel_anchors.md
// §5.2), roughly 2–3 s more on this link.
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
// timings. The targets they are read against: a day-end sync of 40 visits in
// at most 6 s on this link and at most 130 wire bytes per visit; a bootstrap
// of 20,000 records in at most 3 s on loopback (see also
// shared/research/perf_rel_anchors.md §9, T1, T2 and T8).
package bench
