package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/apiaryhq/apiary/api"
)

// Roles of a process.
const (
	roleServe  = "serve"  // API and workers, embedded defaults
	roleAPI    = "api"    // HTTP only
	roleWorker = "worker" // workers and webhook dispatch only
)

// runRole runs the parts of Apiary that role names until ctx ends, then
// stops them in reverse order of starting: HTTP first (no new jobs), then
// the workers (finish or hand back), the webhook dispatcher and the sweeper,
// then the engines. The HTTP server and the workers each stop within their
// own budget.
func runRole(ctx context.Context, role string, cfg Config, stderr io.Writer) error {
	log := newLogger(cfg.LogLevel, stderr).With("role", role)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()

	a.lc.start(ctx, a.deletedSweeperComponent())
	// Receivers start before senders, so they stop after them.
	if role != roleAPI {
		parts := []func() (component, error){
			func() (component, error) { return a.sweeperComponent(), nil },
			a.schedulerComponent,
			a.webhookComponent,
			a.poolComponent,
		}
		for _, part := range parts {
			c, err := part()
			if err != nil {
				return err
			}
			a.lc.start(ctx, c)
		}
		log.Info("workers started", append([]any{"workers", cfg.Workers.Count, "allow_private_webhooks", cfg.Webhooks.AllowPrivate}, a.cfg.engines()...)...)
	}
	serve := a.apiComponent
	if role == roleWorker {
		serve = a.healthComponent
	} else {
		a.lc.start(ctx, a.auditPrunerComponent(auditPruneEvery))
	}
	c, err := serve(ctx, stderr)
	if err != nil {
		return err
	}
	a.lc.start(ctx, c)
	if role != roleAPI {
		// After the API's bootstrap, so that a first start checks the
		// account it made.
		a.lc.start(ctx, a.modelCheckComponent())
	}

	select {
	case <-ctx.Done():
		log.Info("stopping: no new requests or jobs; in-flight jobs may finish",
			"http_timeout", cfg.HTTP.ShutdownTimeout, "timeout", cfg.Workers.ShutdownTimeout)
	case err := <-a.lc.failed:
		return err
	}
	a.Close()
	log.Info("stopped")
	return nil
}

// apiComponent bootstraps the first account if there is none, and serves
// the API on --addr.
func (a *app) apiComponent(ctx context.Context, stderr io.Writer) (component, error) {
	issued, created, err := api.Bootstrap(ctx, a.recs, a.keys, string(a.cfg.API.BootstrapToken))
	if err != nil {
		return component{}, err
	}
	if created && a.cfg.API.BootstrapToken == "" {
		// Printed once, to stderr, on the first start only.
		fmt.Fprintf(stderr, "admin token: %s\n", issued)
	}
	srv, err := a.newAPI()
	if err != nil {
		return component{}, err
	}
	ln, err := listen(a.cfg.HTTP)
	if err != nil {
		return component{}, err
	}
	if err := checkListener(ln, a.cfg.HTTP); err != nil {
		return component{}, err
	}
	httpSrv := newHTTPServer(srv.Handler(), a.cfg.HTTP)
	httpSrv.RegisterOnShutdown(srv.StopStreams) // open event streams end at once
	a.log.Info("apiary serving", "addr", ln.Addr().String(), "tls", a.cfg.HTTP.TLSCert != "", "data_dir", a.cfg.DataDir)
	return httpComponent("http server", httpSrv, ln, a.cfg.HTTP), nil
}

// newAPI returns the API over the app's engines.
func (a *app) newAPI() (*api.Server, error) {
	cfg := a.cfg.API
	conns, err := a.connections()
	if err != nil {
		return nil, err
	}
	return api.New(api.Config{
		BodyLimit:    int64(cfg.BodyLimitMiB) << 20,
		MaxDocuments: cfg.MaxDocuments,
		RateLimit:    cfg.RateLimit,
		RateBurst:    cfg.RateBurst,
		Logger:       a.log,

		AccountRateLimit: cfg.AccountRate,
		AccountRateBurst: cfg.AccountBurst,

		AllowPrivateWebhooks: a.cfg.Webhooks.AllowPrivate,
		AllowPrivateSources:  a.cfg.Sources.AllowPrivate,
		DrivePickedOnly:      a.cfg.Sources.DriveScope == "drive.file",
		Model:                a.pipe.Model(),
	}, api.Deps{
		Records:     a.recs,
		Queue:       a.queue,
		Events:      a.bus,
		Stager:      a.stager,
		Search:      a.pipe,
		Keys:        a.keys,
		Ready:       a.ready,
		Custody:     a.custody,
		Connections: conns,
		Deletions:   a.bus,
	})
}

// healthComponent serves only /healthz and /readyz on --addr, for a
// worker's container health checks; a worker has no API.
func (a *app) healthComponent(context.Context, io.Writer) (component, error) {
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
	ln, err := listen(a.cfg.HTTP)
	if err != nil {
		return component{}, err
	}
	health := a.cfg.HTTP
	health.TLSCert, health.TLSKey = "", "" // plain HTTP: the container's health check calls it
	return httpComponent("health server", newHTTPServer(mux, a.cfg.HTTP), ln, health), nil
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
