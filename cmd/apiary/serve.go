package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/workers"
)

// Roles of a process.
const (
	roleServe  = "serve"  // API and workers, embedded defaults
	roleAPI    = "api"    // HTTP only
	roleWorker = "worker" // workers and webhook dispatch only
)

// run runs the parts of Apiary that role names until ctx ends, then stops in
// order: HTTP first (no new jobs), then workers (finish or hand back), then
// the engines.
func runRole(ctx context.Context, role string, cfg Config, stderr io.Writer) error {
	log := newLogger(cfg.LogLevel, stderr).With("role", role)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()

	var (
		httpSrv *http.Server
		pool    *workers.Pool
		errs    = make(chan error, 4)
	)
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()

	if role != roleWorker {
		if httpSrv, err = startHTTP(ctx, a, stderr, errs); err != nil {
			return err
		}
	} else if httpSrv, err = startHealth(a, errs); err != nil {
		return err
	}
	var poolDone chan struct{}
	if role != roleAPI {
		if pool, err = a.newPool(log); err != nil {
			return err
		}
		poolDone = make(chan struct{})
		go func() {
			defer close(poolDone)
			if err := pool.Run(runCtx); err != nil {
				errs <- fmt.Errorf("worker pool: %w", err)
			}
		}()
		sweeperDone := make(chan struct{})
		go func() {
			defer close(sweeperDone)
			workers.NewSweeper(workers.SweeperConfig{Logger: log}, a.jobService(log)).Run(runCtx)
		}()
		defer func() { cancelRun(); <-sweeperDone }()
		defer startWebhooks(runCtx, a, log, errs)()
		log.Info("workers started", "workers", cfg.Workers, "queue", cfg.Queue, "vectors", cfg.Vectors, "keys", cfg.Keys)
	}

	select {
	case <-ctx.Done():
		log.Info("stopping: no new requests or jobs; in-flight jobs may finish",
			"http_timeout", cfg.HTTPShutdownTimeout, "timeout", cfg.ShutdownTimeout)
	case err := <-errs:
		return err
	}
	// Senders stop before receivers: first the API (no new jobs), then workers.
	var stopWorkers func(context.Context)
	if pool != nil {
		stopWorkers = func(stopCtx context.Context) {
			if err := pool.Stop(stopCtx); err != nil {
				log.Warn("workers handed back unfinished jobs", "err", err)
			}
			cancelRun()
			<-poolDone
		}
	}
	shutdown(log, httpSrv, cfg, stopWorkers)
	log.Info("stopped")
	return nil
}

// startHTTP bootstraps the first account if there is none, then serves the
// API until Shutdown.
func startHTTP(ctx context.Context, a *app, stderr io.Writer, errs chan<- error) (*http.Server, error) {
	issued, created, err := api.Bootstrap(ctx, a.recs, a.keys, string(a.cfg.BootstrapToken))
	if err != nil {
		return nil, err
	}
	if created && a.cfg.BootstrapToken == "" {
		// Printed once, to stderr, on the first start only.
		fmt.Fprintf(stderr, "admin token: %s\n", issued)
	}
	srv, err := api.New(api.Config{
		BodyLimit:    int64(a.cfg.BodyLimitMiB) << 20,
		MaxDocuments: a.cfg.MaxDocuments,
		RateLimit:    a.cfg.RateLimit,
		RateBurst:    a.cfg.RateBurst,
		Logger:       a.log,

		AllowPrivateWebhooks: a.cfg.AllowPrivateWebhooks,
	}, api.Deps{
		Records: a.recs,
		Queue:   a.queue,
		Events:  a.bus,
		Stager:  a.stager,
		Search:  a.pipe,
		Keys:    a.keys,
		Ready:   a.ready,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	httpSrv := newHTTPServer(srv.Handler(), a.cfg)
	httpSrv.RegisterOnShutdown(srv.StopStreams) // open event streams end at once
	a.log.Info("apiary serving", "addr", ln.Addr().String(), "tls", a.cfg.TLSCert != "", "data_dir", a.cfg.DataDir)
	go func() {
		if err := serveHTTP(httpSrv, ln, a.cfg); err != nil && err != http.ErrServerClosed {
			errs <- fmt.Errorf("http server: %w", err)
		}
	}()
	return httpSrv, nil
}

// serveHTTP serves srv on ln, over TLS (1.2 and up) when a certificate is
// configured.
func serveHTTP(srv *http.Server, ln net.Listener, cfg Config) error {
	if cfg.TLSCert == "" {
		return srv.Serve(ln)
	}
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
}

// startHealth serves only /healthz and /readyz on --addr, for a worker's
// container health checks; a worker has no API.
func startHealth(a *app, errs chan<- error) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := a.ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"unavailable"}`)
			return
		}
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	srv := newHTTPServer(mux, a.cfg)
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			errs <- fmt.Errorf("health server: %w", err)
		}
	}()
	return srv, nil
}

// healthcheck GETs url and succeeds on 200: the container health check of
// the distroless image, which has no shell or curl.
func healthcheck(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "URL that answers 200 when healthy")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %d", *url, resp.StatusCode)
	}
	return nil
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level)) // validated in Config.Validate
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}
