package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/web"
)

// serveWeb serves srv's web page on addr (serve --http), over TLS with cert
// when it is not nil, and returns the function that stops it, waiting up to
// 5 s for the requests in progress. The web page accepts TLS 1.2, which old
// phones' browsers need; the sync protocol keeps 1.3.
func serveWeb(addr string, srv *server.Server, cert *tls.Certificate, log *slog.Logger, stdout io.Writer) (stop func(), err error) {
	hs := &http.Server{
		Handler:           web.New(web.Config{Server: srv, Secure: cert != nil, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // a county-wide list or workbook as of another day
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	scheme := "http"
	if cert != nil {
		scheme = "https"
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		lis = tls.NewListener(lis, hs.TLSConfig)
	}
	fmt.Fprintf(stdout, "fieldsyncd: web page on %s://%s/ (staff sign in with 'fieldsync admin user add' credentials)\n", scheme, lis.Addr())
	log.Info("serving the web page", "addr", lis.Addr().String(), "tls", cert != nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web page stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
		<-done
	}, nil
}
