package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	localvec "github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	jsqueue "github.com/apiaryhq/apiary/workers/queue/jetstream"
)

// serve runs everything in one process on embedded defaults until ctx ends,
// then stops in order: HTTP (no new jobs), workers (finish or hand back),
// stores, NATS.
func serve(ctx context.Context, cfg Config, stderr io.Writer) error {
	log := newLogger(cfg.LogLevel, stderr)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}

	// NATS: the job queue, events and records. SyncAlways: an acknowledged
	// job survives a crash.
	ns, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(cfg.DataDir, "nats"), SyncAlways: true})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.URL(), nats.Name("apiary-serve"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to embedded nats: %w", err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	kvs := natskv.NewKVStore(js, natskv.Config{})
	recs, err := records.Open(ctx, kvs)
	if err != nil {
		return err
	}
	blobs, err := natskv.NewBlobs(ctx, js, "stage", natskv.Config{})
	if err != nil {
		return err
	}

	// Keys: one key per account, wrapped by the root key.
	rootKey, err := loadRootKey(cfg)
	if err != nil {
		return err
	}
	keys, err := keyring.New(keyring.Config{Dir: filepath.Join(cfg.DataDir, "keys"), RootKey: rootKey})
	if err != nil {
		return err
	}

	vecs, err := localvec.Open(filepath.Join(cfg.DataDir, "vectors"), localvec.Options{})
	if err != nil {
		return err
	}
	defer vecs.Close()

	pipe, err := pipeline.New(pipeline.Config{
		Chunk:            chunk.Config{Size: cfg.ChunkSize, Overlap: cfg.ChunkOverlap},
		MaxDocumentBytes: cfg.BodyLimitMiB << 20,
	}, local.New(local.Config{Dim: cfg.EmbedDim}), keys, vecs, recs)
	if err != nil {
		return err
	}
	stager := upload.NewStager(blobs, keys)

	q, err := jsqueue.New(ctx, jsqueue.Config{Conn: nc, Lease: cfg.Lease})
	if err != nil {
		return err
	}
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	if err != nil {
		return err
	}

	issued, created, err := api.Bootstrap(ctx, recs, keys, string(cfg.BootstrapToken))
	if err != nil {
		return err
	}
	if created && issued != "" && cfg.BootstrapToken == "" {
		// Printed once, to stderr, on the first start only.
		fmt.Fprintf(stderr, "admin token: %s\n", issued)
	}

	srv, err := api.New(api.Config{
		BodyLimit:    int64(cfg.BodyLimitMiB) << 20,
		MaxDocuments: cfg.MaxDocuments,
		RateLimit:    cfg.RateLimit,
		RateBurst:    cfg.RateBurst,
		Logger:       log,
	}, api.Deps{
		Records: recs,
		Queue:   q,
		Events:  bus,
		Stager:  stager,
		Search:  pipe,
		Keys:    keys,
		Ready: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return errors.New("nats is not connected")
			}
			return nil
		},
	})
	if err != nil {
		return err
	}

	handler := workers.NewIngestHandler(workers.IngestConfig{Logger: log}, recs, stager, pipe, bus)
	pool, err := workers.NewPool(q, handler, workers.PoolConfig{
		Concurrency: cfg.Workers,
		MaxAttempts: cfg.MaxAttempts,
		OnGiveUp:    handler.GiveUp,
		Logger:      log,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("apiary serving", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "workers", cfg.Workers)

	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	poolDone := make(chan error, 1)
	go func() { poolDone <- pool.Run(runCtx) }()
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(ln) }()

	select {
	case <-ctx.Done():
		log.Info("stopping: no new requests or jobs; in-flight jobs may finish", "timeout", cfg.ShutdownTimeout)
	case err := <-httpDone:
		return fmt.Errorf("http server: %w", err)
	case err := <-poolDone:
		return fmt.Errorf("worker pool: %w", err)
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Senders stop before receivers: first the API (no new jobs), then workers.
	if err := httpSrv.Shutdown(stopCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := pool.Stop(stopCtx); err != nil {
		log.Warn("workers handed back unfinished jobs", "err", err)
	}
	cancelRun()
	<-poolDone
	log.Info("stopped")
	return nil
}

func loadRootKey(cfg Config) ([]byte, error) {
	if cfg.RootKey != "" {
		k, err := keyring.ParseRootKey(string(cfg.RootKey))
		if err != nil {
			return nil, fmt.Errorf("APIARY_ROOT_KEY: %w", err)
		}
		return k, nil
	}
	return keyring.LoadOrCreateRootKey(filepath.Join(cfg.DataDir, "root.key"))
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level)) // validated in Config.Validate
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}
