package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/testutil"
)

// shortLimits are the HTTP limits of these tests: short, so that a cut-off
// comes quickly; no test asserts how quickly. The header timeout is the
// longest: the tests that send their headers at once need the server to
// read them within it, which a loaded machine under -race may take well
// over 200 ms to get to.
func shortLimits() HTTPConfig {
	return HTTPConfig{
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       200 * time.Millisecond,
		MaxHeaderKiB:      4,
		BodyTimeout:       200 * time.Millisecond,
		BodyMinRateKiB:    1,
		ShutdownTimeout:   100 * time.Millisecond,
	}
}

// bodyReader is a handler that reads the whole body and reports the result.
type bodyReader struct {
	started chan struct{}
	results chan error
	sizes   chan int
}

func newBodyReader() *bodyReader {
	return &bodyReader{started: make(chan struct{}, 8), results: make(chan error, 8), sizes: make(chan int, 8)}
}

func (h *bodyReader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.started <- struct{}{}
	b, err := io.ReadAll(r.Body)
	h.results <- err
	h.sizes <- len(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "ok")
}

// within receives from ch, failing the test after a generous polling deadline.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never happened", what)
		panic("unreachable")
	}
}

// serveHTTPTest serves h with cfg's limits on a loopback port.
func serveHTTPTest(t *testing.T, h http.Handler, cfg HTTPConfig) (*http.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := newHTTPServer(h, cfg)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return srv, ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireClosedByServer reads c until the server closes it; it fails if the
// connection is still open after a generous polling deadline.
func requireClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open: %v", err)
}

func TestSlowHeadersAreCutOff(t *testing.T) {
	t.Parallel()
	h := newBodyReader()
	_, addr := serveHTTPTest(t, h, shortLimits())
	c := dial(t, addr)
	_, err := io.WriteString(c, "POST /v1/ingest HTTP/1.1\r\nHost: apiary\r\n") // and nothing more
	require.NoError(t, err)
	requireClosedByServer(t, c)
	require.Empty(t, h.started, "no handler ran")
}

func TestSlowBodiesAreCutOff(t *testing.T) {
	t.Parallel()
	for name, send := range map[string]func(c net.Conn, stop <-chan struct{}){
		"stalled": func(c net.Conn, _ <-chan struct{}) {
			_, _ = io.WriteString(c, "0123456789")
		},
		"trickle": func(c net.Conn, stop <-chan struct{}) {
			tick := time.NewTicker(10 * time.Millisecond) // pacing, ~100 B/s
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte{'x'}); err != nil {
						return
					}
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newBodyReader()
			_, addr := serveHTTPTest(t, h, shortLimits())
			c := dial(t, addr)
			_, err := io.WriteString(c, "POST /v1/ingest HTTP/1.1\r\nHost: apiary\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
			require.NoError(t, err)
			stop := make(chan struct{})
			sent := make(chan struct{})
			go func() { defer close(sent); send(c, stop) }()
			defer func() { close(stop); <-sent }()
			err = within(t, h.results, "the body read ending")
			require.Error(t, err, "the handler's body read fails")
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
			require.Contains(t, err.Error(), "slower than 1 KiB/s")
			requireClosedByServer(t, c)
		})
	}
}

func TestFastLargeBodyPasses(t *testing.T) {
	t.Parallel()
	cfg := shortLimits()
	cfg.BodyTimeout = 10 * time.Second
	h := newBodyReader()
	_, addr := serveHTTPTest(t, h, cfg)
	const size = 4 << 20
	resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("a", size)))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, <-h.results)
	require.Equal(t, size, <-h.sizes)
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	_, addr := serveHTTPTest(t, newBodyReader(), shortLimits())
	c := dial(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: apiary\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	requireClosedByServer(t, c) // kept alive, then closed when idle
}

func TestOversizedHeadersAreRefused(t *testing.T) {
	t.Parallel()
	_, addr := serveHTTPTest(t, newBodyReader(), shortLimits())
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	require.NoError(t, err)
	req.Header.Set("X-Big", strings.Repeat("b", 16<<10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// A client stuck sending a body holds the HTTP stop for its own budget
// only: the workers, started before the HTTP server and so stopped after
// it, still get a fresh, whole budget of their own.
func TestShutdownBudgetsAreSeparate(t *testing.T) {
	t.Parallel()
	cfg := shortLimits()
	cfg.BodyTimeout = time.Hour // the client is stuck, not cut off by rate
	h := newBodyReader()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	type budget struct {
		err  error
		left time.Duration
	}
	const workersBudget = time.Hour
	workers := make(chan budget, 1)
	logs := &testutil.Buffer{}
	lc := newLifecycle(slog.New(slog.NewTextHandler(logs, nil)))
	lc.start(t.Context(), component{name: "workers", budget: workersBudget, stop: func(ctx context.Context) error {
		d, _ := ctx.Deadline()
		workers <- budget{ctx.Err(), time.Until(d)}
		return nil
	}})
	lc.start(t.Context(), httpComponent("http server", newHTTPServer(h, cfg), ln, cfg))

	c := dial(t, ln.Addr().String())
	_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: apiary\r\nContent-Length: 100\r\n\r\nhalf")
	require.NoError(t, err)
	within(t, h.started, "the handler starting")

	done := make(chan struct{})
	go func() {
		defer close(done)
		lc.stopAll()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown did not return while a client was stuck")
	}
	b := <-workers
	require.NoError(t, b.err, "the workers' budget was not used up by the HTTP stop")
	require.Greater(t, b.left, workersBudget/2, "the workers get their own budget")
	require.Contains(t, logs.String(), "closing the connections still open")
	requireClosedByServer(t, c)
	require.Error(t, within(t, h.results, "the stuck request ending"), "the stuck request ended")
}

// TestPlainHTTPOnlyOnLoopback: serve and api refuse to listen in the clear
// on anything but a loopback address unless TLS is configured or
// --insecure-http says a proxy terminates it; a worker's health listener
// is exempt (it serves /healthz and /readyz only).
func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	cases := []struct {
		role string
		args []string
		ok   bool
	}{
		{roleServe, []string{"--addr", "127.0.0.1:8080"}, true},
		{roleServe, []string{"--addr", "localhost:8080"}, true},
		{roleServe, []string{"--addr", "[::1]:8080"}, true},
		{roleServe, []string{"--addr", "0.0.0.0:8080"}, false},
		{roleServe, []string{"--addr", ":8080"}, false},
		{roleAPI, []string{"--addr", "10.0.0.5:8080"}, false},
		{roleAPI, []string{"--addr", "api.internal:8080"}, false},
		{roleServe, []string{"--addr", "0.0.0.0:8080", "--insecure-http"}, true},
		{roleServe, []string{"--addr", "0.0.0.0:8080", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, true},
		{roleWorker, []string{"--addr", "0.0.0.0:8080", "--nats-url", "nats://127.0.0.1:4222", "--queue", "jetstream"}, true},
	}
	for _, c := range cases {
		var cfg Config
		fs, envErr := flagSet(c.role, &cfg)
		require.NoError(t, envErr)
		require.NoError(t, fs.Parse(append(c.args, "--embedder", "local")))
		err := cfg.Validate(c.role)
		if c.ok {
			if err != nil {
				require.NotContains(t, err.Error(), "--insecure-http", "%s %v", c.role, c.args)
			}
			continue
		}
		require.Error(t, err, "%s %v", c.role, c.args)
		require.Contains(t, err.Error(), "is not a loopback address", "%s %v", c.role, c.args)
		require.Contains(t, err.Error(), "--insecure-http", "%s %v", c.role, c.args)
	}

	// The binary refuses before it opens anything.
	out, err := exec.Command(apiaryBin, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--addr", "0.0.0.0:0", "--embedder", "local").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--insecure-http")
}

// TestListenerCheckedAfterListening: --addr is judged again by the address
// the listener got, so a host name that resolves off loopback is refused
// however its text reads; TLS or --insecure-http let it be.
func TestListenerCheckedAfterListening(t *testing.T) {
	all, err := net.Listen("tcp", "0.0.0.0:0") // every interface: what a name could resolve to
	require.NoError(t, err)
	err = checkListener(all, HTTPConfig{Addr: "localhost:8080"})
	require.ErrorContains(t, err, "not a loopback address")
	require.ErrorContains(t, err, "--insecure-http")
	_, err = all.Accept()
	require.ErrorIs(t, err, net.ErrClosed, "the refused listener is closed")

	for _, cfg := range []HTTPConfig{{InsecureHTTP: true}, {TLSCert: "c.pem", TLSKey: "k.pem"}} {
		ln, err := net.Listen("tcp", "0.0.0.0:0")
		require.NoError(t, err)
		require.NoError(t, checkListener(ln, cfg))
		ln.Close()
	}
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lo.Close()
	require.NoError(t, checkListener(lo, HTTPConfig{Addr: "localhost:8080"}))
}
