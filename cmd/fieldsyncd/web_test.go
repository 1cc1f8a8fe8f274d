package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// serve --http serves the staff web page beside gRPC, on loopback only
// without TLS, and stops with the server.
func TestServeWebPage(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var out, logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--area", "532523101", "--http", "127.0.0.1:0"}, &out, &logs, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	m := regexp.MustCompile(`web page on (http://[^/]+/)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("serve did not say where the web page is:\n%s", out.String())
	}
	resp, err := http.Get(m[1] + "signin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "登录") {
		t.Errorf("GET /signin: %s\n%.300s", resp.Status, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after cancel: %v", err)
	}
	if _, err := http.Get(m[1] + "signin"); err == nil {
		t.Error("the web page still answers after serve returned")
	}

	err = run(t.Context(), []string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"}, &out, &logs, nil)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("--http on 0.0.0.0 without TLS: %v, want a refusal naming --tls-cert", err)
	}
}
