package syncenginetest

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/syncengine/memstore"
)

var (
	crashKills = flag.Int("syncenginetest.kills", 100, "SIGKILLs per crash test")
	crashSeed  = flag.Uint64("syncenginetest.seed", 0, "seed of the crash test's schedule (0: random, printed)")
)

// CrashStore is a store that can be reopened from its file, checked and closed.
type CrashStore interface {
	syncengine.Store
	// Check runs the backend's own consistency check.
	Check(ctx context.Context) error
	// Close releases the file.
	Close() error
}

// Opener opens (creating if needed) the store in the file at path.
type Opener func(ctx context.Context, path string) (CrashStore, error)

const (
	crashEnvPath = "SYNCENGINETEST_CRASH_PATH"
	crashBatch   = 25 // changes per batch
	crashRecords = 40 // records the changes spread over
)

// crashSender is the peer whose log the child ingests.
var crashSender = syncengine.ReplicaID{0x01, 0x9a, 0xc0, 0xde, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x5e}

// crashChange is the change with dot counter n of the crash test's sender: a
// deterministic write of one of crashRecords records, causally after the
// sender's previous change of that record.
func crashChange(n uint64) syncengine.Change {
	rec := int(n % crashRecords)
	ctx := syncengine.NewVersionVector()
	if n > crashRecords {
		ctx = syncengine.NewVersionVector(syncengine.Dot{Replica: crashSender, Counter: n - crashRecords})
	}
	c := change(crashSender, n, rec+1, village, map[int32][]byte{
		4:              field(4, fmt.Sprint("户主", n)),
		int32(5 + n%3): field(int32(5+n%3), strings.Repeat("记", int(n%7))),
	})
	c.Context = ctx
	return c
}

// crashBatchAfter is the batch of the sender's log that follows position after.
func crashBatchAfter(after syncengine.Position) syncengine.Batch {
	b := syncengine.Batch{Sender: crashSender, After: after, Through: after + crashBatch, More: true}
	for n := uint64(after) + 1; n <= uint64(b.Through); n++ {
		b.Changes = append(b.Changes, syncengine.Entry{Pos: syncengine.Position(n), Change: crashChange(n)})
	}
	return b
}

// CrashMain is called from a store package's TestMain. In the child process
// of RunCrash it opens the store, then ingests batches forever, printing
// "ack N" on standard output after each batch is committed (N is the
// receiver's cursor), until it is killed; it never returns. Otherwise it
// returns at once.
func CrashMain(open Opener) {
	path := os.Getenv(crashEnvPath)
	if path == "" {
		return
	}
	ctx := context.Background()
	s, err := open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child: open:", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	for {
		var cur syncengine.Cursor
		if err := s.View(ctx, func(tx syncengine.ReadTx) error {
			var err error
			cur, err = tx.Cursor(ctx, crashSender)
			return err
		}); err != nil {
			fmt.Fprintln(os.Stderr, "crash child: cursor:", err)
			os.Exit(3)
		}
		rc, err := syncengine.ReceiveBatch(ctx, s, crashBatchAfter(cur.Received), syncengine.ReceiveOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "crash child: receive:", err)
			os.Exit(3)
		}
		fmt.Fprintf(out, "ack %d\n", rc.Through)
		out.Flush()
	}
}

// RunCrash starts the test binary as a child that ingests batches into the
// store at one file (see CrashMain), kills it with SIGKILL at random moments,
// and after every kill reopens the store, runs its consistency check, and
// verifies that every batch acknowledged before the kill is present exactly
// once and that nothing half-applied is visible: the log holds exactly the
// sender's changes up to the stored cursor, and every record equals the
// reference replay of those changes.
func RunCrash(t *testing.T, open Opener) {
	seed := *crashSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("crash schedule seed %d (replay with -syncenginetest.seed=%d), %d kills", seed, seed, *crashKills)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	path := filepath.Join(t.TempDir(), "crash.db")
	var acked syncengine.Position
	ref := &replay{store: memstore.New()}
	for kill := 0; kill < *crashKills; kill++ {
		acked = max(acked, runChildUntilKilled(t, path, time.Duration(rng.IntN(40_000))*time.Microsecond))
		verifyAfterCrash(t, open, path, acked, kill, ref)
		if t.Failed() {
			t.Fatalf("after kill %d (seed %d)", kill, seed)
		}
	}
	if acked == 0 {
		t.Errorf("no batch was ever acknowledged in %d runs: the child never got to work", *crashKills)
	}
	t.Logf("%d kills, %d changes acknowledged", *crashKills, acked)
}

// runChildUntilKilled starts the child, lets it run for about d after its
// first acknowledgement, kills it with SIGKILL and returns the last position it
// acknowledged.
func runChildUntilKilled(t *testing.T, path string, d time.Duration) syncengine.Position {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnvPath+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := make(chan syncengine.Position, 1024)
	go func() {
		defer close(acks)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				v, _ := strconv.ParseUint(n, 10, 64)
				acks <- syncengine.Position(v)
			}
		}
	}()
	var last syncengine.Position
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	killAt := (<-chan time.Time)(nil)
loop:
	for {
		select {
		case a, ok := <-acks:
			if !ok {
				break loop
			}
			last = a
			if killAt == nil {
				killAt = time.After(d)
			}
		case <-killAt:
			cmd.Process.Signal(syscall.SIGKILL)
			killAt = nil
		case <-timer.C:
			cmd.Process.Signal(syscall.SIGKILL)
			t.Errorf("crash child made no progress in 30s; stderr: %s", stderr.String())
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("crash child ended by itself (%v): %s", err, stderr.String())
	}
	return last
}

func verifyAfterCrash(t *testing.T, open Opener, path string, acked syncengine.Position, kill int, ref *replay) {
	t.Helper()
	ctx := t.Context()
	s, err := open(ctx, path)
	if err != nil {
		t.Fatalf("reopen after kill %d: %v", kill, err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("consistency check after kill %d: %v", kill, err)
	}
	err = s.View(ctx, func(tx syncengine.ReadTx) error {
		cur, err := tx.Cursor(ctx, crashSender)
		if err != nil {
			return err
		}
		if cur.Received < acked {
			t.Errorf("kill %d: cursor at %d, but %d was acknowledged: acknowledged batches lost", kill, cur.Received, acked)
		}
		if cur.Received%crashBatch != 0 {
			t.Errorf("kill %d: cursor at %d, inside a batch of %d: half a batch applied", kill, cur.Received, crashBatch)
		}
		entries, err := tx.ReadLog(ctx, 0, int(cur.Received)+crashBatch+1)
		if err != nil {
			return err
		}
		if len(entries) != int(cur.Received) {
			t.Errorf("kill %d: log holds %d changes, the cursor says %d", kill, len(entries), cur.Received)
		}
		for i, e := range entries {
			if e.Change.Dot.Counter != uint64(i+1) {
				t.Errorf("kill %d: log entry %d is change %d: stored twice or out of order", kill, i, e.Change.Dot.Counter)
				break
			}
		}
		return ref.compare(ctx, t, tx, cur.Received, kill)
	})
	if err != nil {
		t.Fatalf("kill %d: %v", kill, err)
	}
}

// replay is the reference: the sender's changes applied to memstore, extended
// as the cursor advances.
type replay struct {
	store   *memstore.Store
	through syncengine.Position
}

// compare checks every record in tx against the reference replay of the
// sender's changes 1..n.
func (r *replay) compare(ctx context.Context, t *testing.T, tx syncengine.ReadTx, n syncengine.Position, kill int) error {
	if n < r.through {
		t.Errorf("kill %d: cursor went back from %d to %d", kill, r.through, n)
		return nil
	}
	if n > r.through {
		b := syncengine.Batch{Sender: crashSender, After: r.through, Through: n}
		for i := r.through + 1; i <= n; i++ {
			b.Changes = append(b.Changes, syncengine.Entry{Pos: i, Change: crashChange(uint64(i))})
		}
		if _, err := syncengine.ReceiveBatch(ctx, r.store, b, syncengine.ReceiveOptions{}); err != nil {
			return err
		}
		r.through = n
	}
	return r.store.View(ctx, func(want syncengine.ReadTx) error {
		for i := 1; i <= crashRecords; i++ {
			got, err := tx.Record(ctx, recordID(i))
			if err != nil {
				return err
			}
			w, err := want.Record(ctx, recordID(i))
			if err != nil {
				return err
			}
			if got.Digest() != w.Digest() {
				t.Errorf("kill %d: record %d differs from the replay of changes 1..%d", kill, i, n)
			}
		}
		return nil
	})
}
