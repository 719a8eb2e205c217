package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/apiaryhq/apiary"
)

// HTTPConfig is the HTTP listener: address, TLS, connection limits
// (newHTTPServer) and the HTTP server's own stop budget, apart from the
// workers' WorkersConfig.ShutdownTimeout.
type HTTPConfig struct {
	Addr    string
	TLSCert string // PEM certificate (chain) for HTTPS
	TLSKey  string // PEM private key for HTTPS
	// InsecureHTTP lets the API listen on a non-loopback address without
	// TLS, for a TLS-terminating proxy or load balancer in front of it.
	InsecureHTTP bool

	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderKiB      int
	BodyTimeout       time.Duration
	BodyMinRateKiB    int
	ShutdownTimeout   time.Duration // --http-shutdown-timeout
}

func (c *HTTPConfig) register(f *flags) {
	f.str(&c.Addr, "addr", "127.0.0.1:8080", "HTTP listen address")
	f.str(&c.TLSCert, "tls-cert", "", "PEM certificate chain: serve HTTPS (TLS 1.2+) instead of HTTP")
	f.str(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	f.bool(&c.InsecureHTTP, "insecure-http", "serve plain HTTP on a non-loopback --addr (only behind a proxy or load balancer that terminates TLS)")
	f.dur(&c.ShutdownTimeout, "http-shutdown-timeout", 10*time.Second, "how long open HTTP requests may finish after SIGTERM before their connections are closed; the workers' --shutdown-timeout starts after it")
	f.dur(&c.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers")
	f.dur(&c.IdleTimeout, "idle-timeout", 30*time.Second, "how long an idle keep-alive connection stays open")
	f.int(&c.MaxHeaderKiB, "max-header-kib", 64, "largest request header block in KiB (431 beyond)")
	f.dur(&c.BodyTimeout, "body-timeout", 10*time.Second, "time a request body gets on top of --body-min-rate-kib before it is cut off")
	f.int(&c.BodyMinRateKiB, "body-min-rate-kib", 16, "slowest accepted request body, in KiB/s (after --body-timeout)")
}

func (c HTTPConfig) validate(role string) error {
	var errs []error
	if role != roleWorker && c.TLSCert == "" && !c.InsecureHTTP && !loopback(c.Addr) {
		// The worker's listener serves only /healthz and /readyz.
		errs = append(errs, fmt.Errorf("--addr %s is not a loopback address and there is no --tls-cert: API tokens would cross the network in the clear; "+
			"serve HTTPS with --tls-cert and --tls-key, or, behind a proxy or load balancer that terminates TLS, set --insecure-http", c.Addr))
	}
	if c.ReadHeaderTimeout <= 0 || c.IdleTimeout <= 0 || c.BodyTimeout <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--read-header-timeout, --idle-timeout, --body-timeout and --http-shutdown-timeout must be positive"))
	}
	if c.MaxHeaderKiB < 1 || c.BodyMinRateKiB < 1 {
		errs = append(errs, errors.New("--max-header-kib and --body-min-rate-kib must be at least 1"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	return errors.Join(errs...)
}

// loopback reports whether addr (HOST:PORT) listens on a loopback address
// only: localhost or a 127.0.0.0/8 or ::1 address. An empty host (every
// interface) is not.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkListener refuses a plain-HTTP API listener bound to a non-loopback
// address unless --insecure-http: validate judged --addr by its text, and a
// host name (localhost above all) is only as loopback as the resolver makes
// it. It closes ln when it refuses.
func checkListener(ln net.Listener, cfg HTTPConfig) error {
	if cfg.TLSCert != "" || cfg.InsecureHTTP {
		return nil
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return nil
	}
	ln.Close()
	return fmt.Errorf("--addr %s listens on %s, not a loopback address, and there is no --tls-cert: "+
		"serve HTTPS with --tls-cert and --tls-key, or, behind a proxy or load balancer that terminates TLS, set --insecure-http", cfg.Addr, ln.Addr())
}

// newHTTPServer returns an http.Server for h with cfg's connection limits:
// headers within ReadHeaderTimeout and MaxHeaderKiB, bodies at
// BodyMinRateKiB or faster after BodyTimeout, idle keep-alive connections
// closed after IdleTimeout. No write timeout: event streams stay open.
func newHTTPServer(h http.Handler, cfg HTTPConfig) *http.Server {
	return &http.Server{
		Handler:           minBodyRate(h, cfg.BodyTimeout, int64(cfg.BodyMinRateKiB)<<10),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderKiB << 10,
	}
}

// httpComponent serves srv on ln, over TLS (1.2 and up) when cfg has a
// certificate, until it stops: no new requests; requests still open after
// cfg.ShutdownTimeout have their connections closed. The workers, stopped
// after it, have a budget of their own, so a slow client never eats theirs.
func httpComponent(name string, srv *http.Server, ln net.Listener, cfg HTTPConfig) component {
	return component{
		name: name,
		run: func(context.Context) error {
			var err error
			if cfg.TLSCert == "" {
				err = srv.Serve(ln)
			} else {
				srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				err = srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
		stop: func(ctx context.Context) error {
			if err := srv.Shutdown(ctx); err != nil {
				return errors.Join(fmt.Errorf("closing the connections still open: %w", err), srv.Close())
			}
			return nil
		},
		budget: cfg.ShutdownTimeout,
	}
}

// listen listens on cfg.Addr.
func listen(cfg HTTPConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	return ln, nil
}

// minBodyRate holds every request body to a minimum transfer rate: the
// connection's read deadline is the request's start + grace + (bytes read so
// far) / bytesPerSec, moved on as bytes arrive. An upload at the rate or
// faster goes through however large it is; a trickle (a slow loris) is cut
// off. At the body's end the deadline is lifted for the handler's own work.
func minBodyRate(next http.Handler, grace time.Duration, bytesPerSec int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			b := &rateBody{ReadCloser: r.Body, ctl: http.NewResponseController(w), start: time.Now(), grace: grace, rate: bytesPerSec}
			b.extend()
			r.Body = b
		}
		next.ServeHTTP(w, r)
	})
}

type rateBody struct {
	io.ReadCloser
	ctl   *http.ResponseController
	start time.Time
	grace time.Duration
	rate  int64
	read  int64
}

func (b *rateBody) extend() {
	allowed := b.grace + time.Duration(float64(b.read)/float64(b.rate)*float64(time.Second))
	// ErrNotSupported (a writer that is not a connection's) leaves it unbounded.
	_ = b.ctl.SetReadDeadline(b.start.Add(allowed))
}

func (b *rateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	switch {
	case err == io.EOF:
		_ = b.ctl.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, apiary.Wrap(err, apiary.KindInvalid, "the request body arrived slower than %d KiB/s; send it faster", b.rate>>10)
	case n > 0:
		b.extend()
	}
	return n, err
}
