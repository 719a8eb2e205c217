package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiaryhq/apiary"
)

// newHTTPServer returns an http.Server for h with cfg's connection limits:
// headers within ReadHeaderTimeout and MaxHeaderKiB, bodies at
// BodyMinRateKiB or faster after BodyTimeout, idle keep-alive connections
// closed after IdleTimeout. No write timeout: event streams stay open.
func newHTTPServer(h http.Handler, cfg Config) *http.Server {
	return &http.Server{
		Handler:           minBodyRate(h, cfg.BodyTimeout, int64(cfg.BodyMinRateKiB)<<10),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderKiB << 10,
	}
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

// shutdown stops in order, each step with its own budget, so that a slow
// client can never use up the workers' time: first the HTTP server (no new
// requests or jobs; connections still open after HTTPShutdownTimeout are
// closed), then the workers (stopWorkers gets ShutdownTimeout to let jobs
// finish or hand them back). Either may be nil.
func shutdown(log *slog.Logger, srv *http.Server, cfg Config, stopWorkers func(context.Context)) {
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.HTTPShutdownTimeout)
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			log.Warn("http shutdown: closing the connections still open", "err", err)
			if err := srv.Close(); err != nil {
				log.Warn("http close", "err", err)
			}
		}
	}
	if stopWorkers != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		stopWorkers(ctx)
	}
}
