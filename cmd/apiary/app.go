package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/awskms"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage"
	localvec "github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/milvus"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
	jsqueue "github.com/apiaryhq/apiary/workers/queue/jetstream"
	sqsqueue "github.com/apiaryhq/apiary/workers/queue/sqs"
)

// app holds every adapter a command needs, chosen by Config: the embedded
// defaults, or the distributed engines.
type app struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      natsjs.JetStream
	recs    *records.Store
	blobs   storage.Blobs
	keys    encrypt.KeyProvider
	vecs    storage.VectorStore
	pipe    *pipeline.Pipeline
	stager  *upload.Stager
	queue   queue.Queue
	bus     *natsbus.Bus
	closers []func()
}

// Close releases everything in reverse order of acquisition.
func (a *app) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// newApp connects or starts every engine that cfg names. On error, whatever
// was already started is released.
func newApp(ctx context.Context, cfg Config, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := a.openRecords(ctx); err != nil {
		return nil, err
	}
	kvCfg := natskv.Config{Replicas: cfg.NATSReplicas}
	if a.blobs, err = natskv.NewBlobs(ctx, a.js, "stage", kvCfg); err != nil {
		return nil, err
	}
	if a.bus, err = natsbus.New(ctx, natsbus.Config{Conn: a.nc, Replicas: cfg.NATSReplicas}); err != nil {
		return nil, err
	}

	var awsCfg aws.Config
	if cfg.Queue == "sqs" || cfg.Keys == "awskms" {
		// Region and credentials from the standard AWS environment.
		if awsCfg, err = awsconfig.LoadDefaultConfig(ctx); err != nil {
			return nil, fmt.Errorf("aws configuration: %w", err)
		}
	}
	if a.keys, err = a.openKeys(awsCfg); err != nil {
		return nil, err
	}
	if a.queue, err = a.openQueue(ctx, awsCfg); err != nil {
		return nil, err
	}
	if c, ok := a.queue.(interface{ Close() error }); ok {
		// After the workers stop: pending acks are sent first.
		a.closers = append(a.closers, func() {
			if err := c.Close(); err != nil {
				a.log.Warn("close queue", "err", err)
			}
		})
	}
	emb := local.New(local.Config{Dim: cfg.EmbedDim})
	if a.vecs, err = a.openVectors(ctx, emb.Dim()); err != nil {
		return nil, err
	}
	a.pipe, err = pipeline.New(pipeline.Config{
		Chunk:            chunk.Config{Size: cfg.ChunkSize, Overlap: cfg.ChunkOverlap},
		MaxDocumentBytes: cfg.BodyLimitMiB << 20,
		Logger:           log,
	}, emb, a.keys, a.vecs, a.recs)
	if err != nil {
		return nil, err
	}
	a.stager = upload.NewStager(a.blobs, a.keys)
	return a, nil
}

// openRecords connects to NATS (see connectNATS) and opens the record store.
func (a *app) openRecords(ctx context.Context) (err error) {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := a.connectNATS(); err != nil {
		return err
	}
	a.recs, err = records.Open(ctx, natskv.NewKVStore(a.js, natskv.Config{Replicas: a.cfg.NATSReplicas}))
	return err
}

// connectNATS connects to --nats-url, or starts the embedded server in the
// data dir. The embedded server opens no port: this process is its only
// client, connected in-process. Its job stream fsyncs before it
// acknowledges, so an acknowledged job survives a crash.
func (a *app) connectNATS() error {
	url := a.cfg.NATSURL
	opts := []nats.Option{nats.Name("apiary"), nats.MaxReconnects(-1)}
	if url == "" {
		ns, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(a.cfg.DataDir, "nats"), SyncAlways: true})
		if errors.Is(err, apiary.ErrConflict) {
			return fmt.Errorf("data dir %s is in use by another apiary process: stop it first, or use --nats-url: %w", a.cfg.DataDir, err)
		}
		if err != nil {
			return err
		}
		a.closers = append(a.closers, ns.Shutdown)
		opts = append(opts, nats.InProcessServer(ns))
	}
	if a.cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(a.cfg.NATSCreds))
	}
	if a.cfg.NATSCA != "" {
		opts = append(opts, nats.RootCAs(a.cfg.NATSCA))
	}
	if a.cfg.NATSCert != "" {
		opts = append(opts, nats.ClientCert(a.cfg.NATSCert, a.cfg.NATSKey))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		// The URL may hold credentials: do not repeat it.
		return fmt.Errorf("connect to nats: %w", err)
	}
	a.closers = append(a.closers, nc.Close)
	a.nc = nc
	if a.js, err = natsjs.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

func (a *app) openKeys(awsCfg aws.Config) (encrypt.KeyProvider, error) {
	if a.cfg.Keys == "awskms" {
		return awskms.New(awskms.Config{Client: awskms.NewClient(awsCfg, a.cfg.KMSEndpoint)})
	}
	rootKey, err := loadRootKey(a.cfg)
	if err != nil {
		return nil, err
	}
	return keyring.New(keyring.Config{Dir: filepath.Join(a.cfg.DataDir, "keys"), RootKey: rootKey})
}

func (a *app) openQueue(ctx context.Context, awsCfg aws.Config) (queue.Queue, error) {
	if a.cfg.Queue == "sqs" {
		return sqsqueue.New(ctx, sqsqueue.Config{
			Client: sqsqueue.NewClient(awsCfg, a.cfg.SQSEndpoint),
			Queue:  a.cfg.SQSQueue,
			Lease:  a.cfg.Lease,
			// The redrive backstop stays beyond the workers' own limit, so a
			// job is marked failed (with its reason) before SQS parks it.
			MaxReceiveCount: max(10, a.cfg.MaxAttempts+2),
		})
	}
	return jsqueue.New(ctx, jsqueue.Config{Conn: a.nc, Lease: a.cfg.Lease, Replicas: a.cfg.NATSReplicas})
}

func (a *app) openVectors(ctx context.Context, dim int) (storage.VectorStore, error) {
	var (
		vs  storage.VectorStore
		err error
	)
	if a.cfg.Vectors == "milvus" {
		vs, err = milvus.Open(ctx, milvus.Config{Addr: a.cfg.MilvusAddr, Collection: a.cfg.MilvusCollection, Dim: dim})
	} else {
		vs, err = localvec.Open(filepath.Join(a.cfg.DataDir, "vectors"), localvec.Options{Logger: a.log})
	}
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() {
		if err := vs.Close(); err != nil {
			a.log.Warn("close vector store", "err", err)
		}
	})
	return vs, nil
}

// jobService returns the job lifecycle over the app's records, queue, bus
// and stage.
func (a *app) jobService(log *slog.Logger) *jobs.Service {
	return jobs.New(jobs.Config{Lease: a.cfg.Lease, Logger: log}, a.recs, a.queue, a.bus, a.stager)
}

// newPool returns the worker pool over the app's queue: a mux of the job
// kinds and their handlers.
func (a *app) newPool(log *slog.Logger) (*workers.Pool, error) {
	handler := workers.NewIngestHandler(workers.IngestConfig{}, a.jobService(log), a.stager, a.pipe)
	mux := workers.NewMux()
	mux.Register(apiary.JobKindIngest, handler)
	return workers.NewPool(a.queue, mux, workers.PoolConfig{
		Concurrency: a.cfg.Workers,
		MaxAttempts: a.cfg.MaxAttempts,
		OnGiveUp:    handler.GiveUp,
		Logger:      log,
	})
}

// ready reports whether the process can serve: NATS is connected.
func (a *app) ready(context.Context) error {
	if !a.nc.IsConnected() {
		return errors.New("nats is not connected")
	}
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
