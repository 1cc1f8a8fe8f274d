package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// fieldsyncdBinary builds cmd/fieldsyncd, once per test binary, and returns
// its path.
func fieldsyncdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "fieldsync-e2e-")
		if buildErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binPath = filepath.Join(binDir, "fieldsyncd")
		start := time.Now()
		out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/fieldsync/fieldsync/cmd/fieldsyncd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build cmd/fieldsyncd: %v\n%s", err, out)
		}
		t.Logf("built fieldsyncd in %v", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// startLimit bounds how long a fieldsyncd start may take before the test
// gives up: a guard against a hang, not an assertion on speed.
const startLimit = time.Minute

// daemon is a fieldsyncd process serving one data directory, restarted on the
// address of its first start.
type daemon struct {
	bin, dir, logPath string
	addr              string
	cmd               *exec.Cmd
	exited            chan struct{} // closed when cmd has been waited for
	exitErr           error         // cmd.Wait's error, once exited is closed
	starts, kills     int
}

// startDaemon runs fieldsyncd serve --data dir on a free port of 127.0.0.1
// and kills it when the test ends if it still runs.
func startDaemon(t *testing.T, bin, dir string) *daemon {
	t.Helper()
	d := &daemon{bin: bin, dir: dir, logPath: dir + ".log"}
	d.start(t)
	t.Cleanup(func() {
		if d.running() {
			d.kill(t)
		}
	})
	return d
}

var servingLine = regexp.MustCompile(`^fieldsyncd: replica (\S+) serving on (\S+); admin token in (.+)\n$`)

// start starts the process, on d.addr if set (retrying while the address is
// still taken), and waits for its "serving on" line.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	listen := d.addr
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	for attempt := 1; ; attempt++ {
		line, err := d.startOnce(t, listen)
		if err == nil {
			m := servingLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("fieldsyncd printed %q, want its serving line", line)
			}
			if d.addr == "" {
				d.addr = m[2]
			} else if m[2] != d.addr {
				t.Fatalf("fieldsyncd restarted on %s, want %s", m[2], d.addr)
			}
			if want := filepath.Join(d.dir, server.AdminTokenFile); m[3] != want {
				t.Errorf("fieldsyncd names admin token file %s, want %s", m[3], want)
			}
			d.starts++
			return
		}
		if attempt == 50 {
			t.Fatalf("fieldsyncd did not start on %s: %v\n%s", listen, err, d.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startOnce starts the process and returns its first line of output, or an
// error if it exits first.
func (d *daemon) startOnce(t *testing.T, listen string) (string, error) {
	t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// No compaction: the checks after each kill read the whole log.
	cmd := exec.Command(d.bin, "serve", "--data", d.dir, "--listen", listen, "--compact-every", "0")
	cmd.Stdout, cmd.Stderr = pw, logf
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatal(err)
	}
	pw.Close()
	d.cmd, d.exited = cmd, make(chan struct{})
	exited := d.exited
	go func() {
		d.exitErr = cmd.Wait()
		close(exited)
	}()
	lines := make(chan string, 1)
	go func() {
		defer pr.Close()
		r := bufio.NewReader(pr)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, r)
	}()
	select {
	case line := <-lines:
		if line != "" {
			return line, nil
		}
		<-exited
		return "", fmt.Errorf("exited: %v", d.exitErr)
	case <-exited:
		return "", fmt.Errorf("exited: %v", d.exitErr)
	case <-time.After(startLimit):
		cmd.Process.Kill()
		<-exited
		return "", fmt.Errorf("no serving line after %v", startLimit)
	}
}

func (d *daemon) running() bool {
	if d.exited == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// kill kills the process with SIGKILL and waits for it to be gone.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil && d.running() {
		t.Fatalf("kill fieldsyncd: %v", err)
	}
	<-d.exited
	d.kills++
}

// stop stops the process with SIGTERM, which fieldsyncd answers with a
// graceful stop, and fails unless it exits cleanly.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop fieldsyncd: %v", err)
	}
	<-d.exited
	if d.exitErr != nil {
		t.Errorf("fieldsyncd after SIGTERM: %v\n%s", d.exitErr, d.logTail())
	}
}

// logTail returns the end of the process's log, for failure messages.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// addDevice issues an enrolment code through the AdminService, with the admin
// token fieldsyncd wrote in its data directory.
func (d *daemon) addDevice(t *testing.T, name string, areas []string) string {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(d.dir, server.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := fieldsyncv1.NewAdminServiceClient(conn).AddDevice(ctx, &fieldsyncv1.AddDeviceRequest{Name: name, AreaPrefixes: areas})
	if err != nil {
		t.Fatalf("AddDevice: %v", err)
	}
	return resp.GetCode()
}
