package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// binDir holds the fieldsync and fieldsyncd binaries built for this test run
// (buildBinaries); TestMain removes it.
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinaries builds fieldsync and fieldsyncd with 'go build -o', once per
// test run, and returns their paths.
func buildBinaries(t *testing.T) (cli, daemon string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "fieldsync-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"fieldsync", "fieldsyncd"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, pkg), "github.com/fieldsync/fieldsync/cmd/"+pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "fieldsync"), filepath.Join(binDir, "fieldsyncd")
}

var servingLine = regexp.MustCompile(`^fieldsyncd: replica \S+ serving on (\S+); admin token in (.+)$`)

// startDaemon runs 'fieldsyncd serve' with extra flags as a process on
// 127.0.0.1:0 with its data in a new directory and returns the address it
// printed and the data directory. The process is interrupted when the test
// ends, passed or failed, and killed if it does not stop.
func startDaemon(t *testing.T, daemon string, extra ...string) (addr, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	cmd := exec.Command(daemon, append([]string{"serve", "--data", dataDir, "--listen", "127.0.0.1:0"}, extra...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait() // after stdout is drained, as Wait requires
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil && !t.Failed() {
				t.Errorf("fieldsyncd exited with %v; its log:\n%s", err, logs.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("fieldsyncd did not stop on interrupt; killed")
		}
		if t.Failed() {
			t.Logf("fieldsyncd log:\n%s", logs.String())
		}
	})
	select {
	case line := <-lines:
		m := servingLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("fieldsyncd printed %q, want its serving line", line)
		}
		if got, want := m[2], filepath.Join(dataDir, "admin.token"); got != want {
			t.Errorf("admin token in %s, want %s", got, want)
		}
		return m[1], dataDir
	case err := <-exited:
		t.Fatalf("fieldsyncd exited before serving: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("fieldsyncd printed nothing in 30 s\n%s", logs.String())
	}
	return "", ""
}

// proc runs the fieldsync binary with args in dir and returns its standard
// output, standard error and exit code.
type proc struct {
	t      *testing.T
	binary string
	dir    string
}

func (p proc) run(stdin string, args ...string) (string, string, int) {
	p.t.Helper()
	cmd := exec.Command(p.binary, args...)
	cmd.Dir = p.dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	}
	p.t.Fatalf("run fieldsync %s: %v", strings.Join(args, " "), err)
	return "", "", -1
}

// ok runs fieldsync and fails the test unless it exits 0.
func (p proc) ok(args ...string) string {
	p.t.Helper()
	out, errOut, code := p.run("", args...)
	if code != 0 {
		p.t.Fatalf("fieldsync %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestNewUserFlow is what a new user does with the released binaries, each
// run as its own process: start a server, issue an enrolment code, enrol a
// phone, record a village's households and visits, sync, check the status;
// then a second phone of the village enrols, syncs and sees the visits.
func TestNewUserFlow(t *testing.T) {
	fieldsyncBin, daemon := buildBinaries(t)
	addr, dataDir := startDaemon(t, daemon)
	work := t.TempDir() // the user's working directory
	fs := proc{t, fieldsyncBin, work}
	v := newVillage(t)
	households, visits := v.records[kindHousehold], v.records[kindVisit]

	newPhone := func(name string) string {
		out := fs.ok("admin", "device", "add", "--server", addr, "--token-file", filepath.Join(dataDir, "admin.token"), "--area", v.code, "--name", name)
		m := codeLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("admin device add printed:\n%s", out)
		}
		replica := filepath.Join(name, "replica.db") // relative to the working directory
		out = fs.ok("device", "enroll", "--replica", replica, "--server", addr, "--code", m[1])
		if !strings.Contains(out, "for areas "+v.code) {
			t.Errorf("enroll printed:\n%s", out)
		}
		if strings.Contains(out, m[1]) {
			t.Errorf("enroll printed the enrolment code:\n%s", out)
		}
		return replica
	}

	phone1 := newPhone("phone1")
	writeIn := func(name string, recs ...*fieldsyncv1.Record) string {
		b, err := os.ReadFile(writeRecords(t, recs...))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	out := fs.ok("device", "put", "--replica", phone1, "--kind", "household", "--json", writeIn("households.json", households...))
	if want := fmt.Sprintf("saved %d of %d household records from households.json", len(households), len(households)); !strings.Contains(out, want) {
		t.Errorf("put households printed:\n%s\nwant %q", out, want)
	}
	raised := raisedBy(t, fs.ok("device", "put", "--replica", phone1, "--kind", "visit", "--json", writeIn("visits.json", visits...)))

	// An invalid visit is refused when it is put, with every field error,
	// and the command exits non-zero.
	bad := proto.Clone(visits[0]).(*fieldsyncv1.Record)
	bad.GetHouseholdVisit().Id = "019a8f3e-0000-7000-8000-0000000000ba"
	bad.GetHouseholdVisit().HouseholdId = ""
	bad.GetHouseholdVisit().Findings = nil
	wantErrs := survey.Validate(bad, time.Now())
	if len(wantErrs) < 2 {
		t.Fatalf("the invalid visit has field errors %v, want two or more", wantErrs)
	}
	out, errOut, code := fs.run("", "device", "put", "--replica", phone1, "--kind", "visit", "--json", writeIn("bad-visit.json", bad))
	if code == 0 || !strings.Contains(out, "saved 0 of 1") || !strings.Contains(errOut, "bad-visit.json: record 1 (line 1)") {
		t.Errorf("put of an invalid visit: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, fe := range wantErrs {
		if !strings.Contains(errOut, fe.Path) || !strings.Contains(errOut, reasonWord(fe.Reason)) || !strings.Contains(errOut, fe.Message) {
			t.Errorf("put did not report %s: %s (%v)\n%s", fe.Path, fe.Message, fe.Reason, errOut)
		}
	}
	// Malformed JSON on standard input names the input and the position.
	_, errOut, code = fs.run("[\n  {\"id\": }\n]", "device", "put", "--replica", phone1, "--kind", "visit", "--json", "-")
	if code == 0 || !strings.Contains(errOut, "standard input:2:10: malformed JSON") {
		t.Errorf("put of malformed JSON: exit %d\n%s", code, errOut)
	}

	out = fs.ok("device", "sync", "--replica", phone1)
	if want := fmt.Sprintf("synced: pushed %d changes, 0 refused", len(households)+len(visits)+raised); !strings.Contains(out, want) {
		t.Errorf("sync printed:\n%s\nwant %q", out, want)
	}
	var st statusJSON
	out = fs.ok("device", "status", "--replica", phone1, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Pending != 0 || len(st.Rejected) != 0 || st.LastSuccess == nil || st.LastError != "" || !slices.Equal(st.Areas, []string{v.code}) || st.Server != addr {
		t.Errorf("status after sync: %s", out)
	}

	phone2 := newPhone("phone2")
	_, errOut, code = fs.run("", "device", "sync", "--replica", phone2)
	if code != 0 || !strings.Contains(errOut, "sync: attempt 1: pull:") {
		t.Fatalf("sync of phone 2: exit %d\n%s", code, errOut)
	}
	out = fs.ok("device", "list", "--replica", phone2, "--kind", "visit", "--json")
	if got := parseBodies(t, kindVisit, out); !slices.Equal(ids(t, got), ids(t, visits)) {
		t.Errorf("phone 2 lists visits %v, want %v", ids(t, got), ids(t, visits))
	}
	if strings.Contains(out, "0000000000ba") {
		t.Errorf("phone 2 lists the refused visit:\n%s", out)
	}

	// Nothing printed a token: the admin token and the devices' tokens
	// (which only the replicas hold) never reach the screen.
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"device", "status", "--replica", phone1},
		{"device", "status", "--replica", phone2, "--json"},
	} {
		if out := fs.ok(args...); strings.Contains(out, strings.TrimSpace(string(token))) || strings.Contains(strings.ToLower(out), "token") {
			t.Errorf("fieldsync %s printed a token:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestNewUserFlowTLS runs the server with a TLS certificate of a county CA:
// the operator and the phone reach it with --ca, and a phone without the CA
// (or with another CA) sends nothing.
func TestNewUserFlowTLS(t *testing.T) {
	fieldsyncBin, daemon := buildBinaries(t)
	pki := newTestPKI(t)
	addr, dataDir := startDaemon(t, daemon, "--tls-cert", pki.certFile, "--tls-key", pki.keyFile)
	fs := proc{t, fieldsyncBin, t.TempDir()}
	v := newVillage(t)

	out := fs.ok("admin", "device", "add", "--server", addr, "--token-file", filepath.Join(dataDir, "admin.token"), "--ca", pki.caFile, "--area", v.code, "--name", "phone")
	code := codeLine.FindStringSubmatch(out)
	if code == nil {
		t.Fatalf("admin device add printed:\n%s", out)
	}
	// Without the CA the phone speaks plaintext, which the server does not
	// answer; with another CA it does not trust the server's certificate.
	if _, errOut, exit := fs.run("", "device", "enroll", "--replica", "phone/replica.db", "--server", addr, "--code", code[1]); exit == 0 || !strings.Contains(errOut, "--ca FILE") {
		t.Errorf("enroll without --ca against a TLS server: exit %d\n%s", exit, errOut)
	}
	if _, errOut, exit := fs.run("", "device", "enroll", "--replica", "phone/replica.db", "--server", addr, "--code", code[1], "--ca", newTestPKI(t).caFile); exit == 0 || !strings.Contains(errOut, "not signed by the CA") {
		t.Errorf("enroll trusting another CA: exit %d\n%s", exit, errOut)
	}
	fs.ok("device", "enroll", "--replica", "phone/replica.db", "--server", addr, "--code", code[1], "--ca", pki.caFile)
	b, err := os.ReadFile(writeRecords(t, v.records[kindHousehold][0]))
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, exit := fs.run(string(b), "device", "put", "--replica", "phone/replica.db", "--kind", "household", "--json", "-"); exit != 0 {
		t.Fatalf("put: exit %d\n%s", exit, errOut)
	}
	if _, _, exit := fs.run("", "device", "sync", "--replica", "phone/replica.db", "--attempts", "1"); exit == 0 {
		t.Errorf("sync without --ca succeeded against a TLS server")
	}
	if out := fs.ok("device", "sync", "--replica", "phone/replica.db", "--ca", pki.caFile, "--quiet"); !strings.Contains(out, "pushed 1 change,") {
		t.Errorf("sync over TLS printed:\n%s", out)
	}
}

// testPKI is a county CA and a server certificate it issued for 127.0.0.1,
// as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "county test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "township server"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")}
	for file, block := range map[string]*pem.Block{
		p.caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		p.certFile: {Type: "CERTIFICATE", Bytes: leafDER},
		p.keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}
