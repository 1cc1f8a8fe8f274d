package fieldsync

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/fieldsync/fieldsync/server"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// pool is a cert pool holding the CA, for a client's RootCAs.
func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// serverCert issues a certificate for 127.0.0.1 and localhost.
func (ca *testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "township server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}
}

// serveTLS runs a real server on 127.0.0.1 with a certificate of ca.
func serveTLS(t *testing.T, ca *testCA) *liveServer {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{ca.serverCert(t)}, MinVersion: tls.VersionTLS12})
	return serve(t, server.Config{}, listen(t, "127.0.0.1:0"), grpc.Creds(creds))
}

func TestEnrollAndSyncOverTLS(t *testing.T) {
	ca := newCA(t, "county CA")
	s := serveTLS(t, ca)
	cty := newCounty(t)
	withCA := WithTLS(&tls.Config{RootCAs: ca.pool()})
	a, b := s.enrol(t, cty.village1, withCA), s.enrol(t, cty.village1, withCA)
	for _, r := range cty.records1 {
		mustSave(t, a, r)
	}
	mustSync(t, a)
	mustSync(t, b)
	checkHas(t, "B", b, cty.records1)
	if st, err := a.Status(t.Context()); err != nil || st.Pending != 0 || st.LastError != "" {
		t.Errorf("Status = %+v, %v", st, err)
	}

	// A plaintext client is not answered by the TLS server.
	plain := openReplica(t, WithRetry(RetryPolicy{MaxAttempts: 1}))
	code, _, err := s.srv.IssueEnrolmentCode([]string{cty.village1}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := plain.Enroll(ctx, s.addr, code); err == nil {
		t.Error("plaintext Enroll with a TLS server succeeded")
	}
}

// A server whose certificate another CA signed is refused, and Sync does not
// retry: no retry cures a certificate.
func TestTLSWrongCA(t *testing.T) {
	ca := newCA(t, "county CA")
	s := serveTLS(t, ca)
	other := WithTLS(&tls.Config{RootCAs: newCA(t, "another CA").pool()})
	c := openReplica(t, other)
	code, _, err := s.srv.IssueEnrolmentCode([]string{"532523"}, "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(t.Context(), s.addr, code); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Enroll with the wrong CA = %v, want a certificate error", err)
	}

	// An enrolled replica opened with the wrong CA.
	good := s.enrol(t, "532523", WithTLS(&tls.Config{RootCAs: ca.pool()}))
	path := good.store.Path()
	if err := good.Close(); err != nil {
		t.Fatal(err)
	}
	wrong, err := Open(t.Context(), path, other, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	var log progressLog
	err = wrong.Sync(t.Context(), log.option())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Sync with the wrong CA = %v, want a certificate error", err)
	}
	if got := log.maxAttempt(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
}

// Without TLS, the client refuses a server on another machine before it
// dials.
func TestPlaintextRefusedForRemoteServer(t *testing.T) {
	var dialed atomic.Bool
	noDial := WithDialOptions(grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
		dialed.Store(true)
		return nil, errors.New("test dialer: no network")
	}))
	c := openReplica(t, noDial, fastRetry)
	for _, addr := range []string{"10.20.30.40:7443", "fieldsync.example.org:443", "[2001:db8::1]:443"} {
		err := c.Enroll(t.Context(), addr, "ABCDEFGHIJKLMNOP")
		if !errors.Is(err, ErrTLSRequired) || !strings.Contains(err.Error(), "WithTLS") || !strings.Contains(err.Error(), addr) {
			t.Errorf("Enroll(%s) = %v, want ErrTLSRequired naming the address and WithTLS", addr, err)
		}
	}

	// A replica enrolled with a remote server (by an app that had TLS).
	for k, v := range map[string]string{
		metaServerAddr: "10.20.30.40:7443", metaToken: "token", metaServerReplica: "0123456789abcdef",
	} {
		if err := c.store.SetMeta(t.Context(), k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	var log progressLog
	err := c.Sync(t.Context(), log.option())
	if !errors.Is(err, ErrTLSRequired) {
		t.Fatalf("Sync = %v, want ErrTLSRequired", err)
	}
	if len(log) != 0 {
		t.Errorf("Sync reported progress %+v, want none: nothing may be sent", log)
	}
	if dialed.Load() {
		t.Error("the client dialed a remote server in plaintext")
	}
	if st, err := c.Status(t.Context()); err != nil || !strings.Contains(st.LastError, "WithTLS") {
		t.Errorf("Status = %+v, %v; want the error recorded", st, err)
	}

	// With TLS configured, the same client would dial.
	tc := openReplica(t, noDial, WithTLS(&tls.Config{}), WithRetry(RetryPolicy{MaxAttempts: 1}))
	if err := tc.Enroll(t.Context(), "10.20.30.40:7443", "ABCDEFGHIJKLMNOP"); errors.Is(err, ErrTLSRequired) || err == nil {
		t.Errorf("Enroll with TLS = %v, want a dial error", err)
	}
	if !dialed.Load() {
		t.Error("the client with TLS did not dial")
	}
}

// A phone resumes its TLS session at its next sync, after the app
// restarted: the session is kept in the replica, sealed when the replica
// is, and a session the server no longer takes costs a full handshake, not
// the sync.
func TestTLSSessionResumedAcrossRestarts(t *testing.T) {
	ca := newCA(t, "county CA")
	var resumed, full atomic.Int32
	note := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && ti.State.DidResume {
				resumed.Add(1)
			} else {
				full.Add(1)
			}
		}
		return h(ctx, req)
	}
	// The server can be made to refuse every ticket, as after a restart
	// with new ticket keys.
	var reject atomic.Bool
	srvTLS := &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t)}, MinVersion: tls.VersionTLS13}
	srvTLS.SetSessionTicketKeys([][32]byte{{7}})
	srvTLS.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		if reject.Load() {
			return nil, nil
		}
		return srvTLS.DecryptTicket(identity, cs)
	}
	creds := credentials.NewTLS(srvTLS)
	s := serve(t, server.Config{}, listen(t, "127.0.0.1:0"), grpc.Creds(creds), grpc.ChainUnaryInterceptor(note))
	cty := newCounty(t)
	key := make([]byte, 32)
	rand.Read(key)
	opts := []Option{WithTLS(&tls.Config{RootCAs: ca.pool()}), WithSecretKey(key)}
	phone := s.enrol(t, cty.village1, opts...)
	path := phone.store.Path()
	mustSync(t, phone)
	if got, err := phone.store.Meta(t.Context(), metaTLSSession); err != nil || !bytes.HasPrefix(got, secretPrefix) {
		t.Fatalf("kept session = %.20q, %v; want it sealed", got, err)
	}
	for day := range 2 {
		phone.Close()
		var err error
		if phone, err = Open(t.Context(), path, opts...); err != nil {
			t.Fatal(err)
		}
		mustSave(t, phone, cty.records1[day])
		resumed.Store(0)
		mustSync(t, phone)
		if resumed.Load() == 0 {
			t.Errorf("day %d: the sync after a restart did not resume the TLS session", day)
		}
	}
	// A session the server no longer takes costs a full handshake, and
	// the new session is kept and resumed next time.
	reject.Store(true)
	full.Store(0)
	mustSync(t, phone)
	if full.Load() == 0 {
		t.Error("with its ticket refused, the sync made no full handshake")
	}
	reject.Store(false)
	phone.Close()
	var err error
	if phone, err = Open(t.Context(), path, opts...); err != nil {
		t.Fatal(err)
	}
	resumed.Store(0)
	mustSync(t, phone)
	if resumed.Load() == 0 {
		t.Error("the session of the full handshake was not kept")
	}
	phone.Close()
	// A damaged session in the replica costs a full handshake, not the
	// sync.
	damaged := openAt(t, path, opts...)
	if err := damaged.setSecret(t.Context(), metaTLSSession, []byte{200, 1, 2}); err != nil {
		t.Fatal(err)
	}
	full.Store(0)
	mustSync(t, damaged)
	if full.Load() == 0 {
		t.Error("with a damaged session kept, the sync made no full handshake")
	}
}

// openAt opens the replica at path, closed when the test ends.
func openAt(t *testing.T, path string, opts ...Option) *Client {
	t.Helper()
	c, err := Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
