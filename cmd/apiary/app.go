package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/connectors/custody/natscustody"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/kek"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
)

// chunkConfig is the chunk sizes of cfg for emb. A model reads at most its
// token limit of a chunk and ignores the rest, and the chunker's tokens are
// approximate (about a third off a subword tokenizer's either way), so by
// default a chunk is three quarters of the model's limit.
func chunkConfig(cfg Config, emb embed.Embedder) chunk.Config {
	c := chunk.Config{Size: cfg.Pipeline.ChunkSize, Overlap: cfg.Pipeline.ChunkOverlap}
	if l, ok := emb.(embed.TokenLimited); ok && c.Size == 0 && l.MaxTokens() > 0 {
		c.Size = max(l.MaxTokens()*3/4, 16)
	}
	if c.Overlap >= c.Size && c.Size > 0 {
		c.Overlap = 0 // the default (an eighth of the size)
	}
	return c
}

// app holds every adapter a command needs, chosen by Config from each
// port's table, and the lifecycle of what it opened and started.
type app struct {
	cfg    Config
	log    *slog.Logger
	lc     *lifecycle
	nc     *nats.Conn
	js     natsjs.JetStream
	recs   *records.Store
	blobs  storage.Blobs
	bus    *natsbus.Bus
	keys   encrypt.KeyProvider
	queue  queue.Queue
	emb    embed.Embedder
	vecs   storage.VectorStore
	pipe   *pipeline.Pipeline
	stager *upload.Stager
	// custody holds the ephemeral tokens this process accepted, in memory;
	// other processes' workers ask it over NATS (natscustody).
	custody *custody.Custody
	// keyCalls counts the calls to the --keys provider (keys.go).
	keyCalls *kek.Counter
	// forgets is what lets go of an account announced deleted: every cache
	// of account keys in this process, and the pool's DeletedAccounts
	// (forget.go).
	forgets forgets

	connsOnce sync.Once
	conns     *connections.Service
	connsErr  error

	awsOnce sync.Once
	awsCfg  aws.Config
	awsErr  error
}

// bareApp is an app with nothing opened yet.
func bareApp(cfg Config, log *slog.Logger) *app {
	return &app{cfg: cfg, log: log, lc: newLifecycle(log)}
}

// Close stops every component and releases every engine, in reverse order.
func (a *app) Close() { a.lc.stopAll() }

// newApp connects or starts every engine that cfg names. On error, whatever
// was already started is released.
func newApp(ctx context.Context, cfg Config, log *slog.Logger) (_ *app, err error) {
	a := bareApp(cfg, log)
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := a.openRecords(ctx); err != nil {
		return nil, err
	}
	if a.blobs, err = natskv.NewBlobs(ctx, a.js, "stage", a.kvConfig()); err != nil {
		return nil, err
	}
	if a.bus, err = natsbus.New(ctx, natsbus.Config{Conn: a.nc, Replicas: cfg.NATS.Replicas, MaxAge: cfg.NATS.EventsMaxAge, MaxBytes: int64(cfg.NATS.EventsMaxMiB) << 20}); err != nil {
		return nil, err
	}
	if err := a.openKeys(ctx); err != nil {
		return nil, err
	}
	if a.queue, err = queues.open(ctx, a, cfg.Queue.Name); err != nil {
		return nil, err
	}
	a.closeLater("queue", a.queue)
	if a.emb, err = embedders.open(ctx, a, cfg.Embedder.Name); err != nil {
		return nil, err
	}
	a.closeLater("embedder", a.emb)
	if a.vecs, err = vectorStores.open(ctx, a, cfg.Vectors.Name); err != nil {
		return nil, err
	}
	a.closeLater("vector store", a.vecs)
	a.pipe, err = pipeline.New(pipeline.Config{
		Chunk:            chunkConfig(cfg, a.emb),
		MaxDocumentBytes: cfg.API.BodyLimitMiB << 20,
		Logger:           log,
	}, a.emb, a.keys, a.vecs, a.recs)
	if err != nil {
		return nil, err
	}
	a.forgets.add(a.pipe)
	a.stager = upload.NewStager(a.blobs, a.keys)
	if err := a.openCustody(); err != nil {
		return nil, err
	}
	if err := a.listenForDeletions(); err != nil {
		return nil, err
	}
	return a, nil
}

// openCustody starts this process's custody of ephemeral tokens: it
// answers on its own NATS subject, and everything it holds is wiped when
// the app closes.
func (a *app) openCustody() error {
	tr, err := natscustody.New(natscustody.Config{Conn: a.nc})
	if err != nil {
		return err
	}
	if a.custody, err = custody.New(custody.Config{Leases: a.recs, Transport: tr, Logger: a.log}); err != nil {
		return err
	}
	a.closeLater("custody", a.custody)
	return nil
}

// closeLater closes v, if it has a Close method, when the app closes: after
// every component started later (the workers), before those opened earlier.
func (a *app) closeLater(name string, v any) {
	if c, ok := v.(interface{ Close() error }); ok {
		a.lc.start(context.Background(), closer(name, c.Close))
	}
}

// aws returns the shared AWS configuration (region and credentials from the
// standard AWS environment), loaded once, by the first adapter that needs it.
func (a *app) aws(ctx context.Context) (aws.Config, error) {
	a.awsOnce.Do(func() {
		a.awsCfg, a.awsErr = awsconfig.LoadDefaultConfig(ctx)
		if a.awsErr != nil {
			a.awsErr = fmt.Errorf("aws configuration: %w", a.awsErr)
		}
	})
	return a.awsCfg, a.awsErr
}

// jobService returns the job lifecycle over the app's records, queue, bus
// and stage.
func (a *app) jobService() *jobs.Service {
	cfg := jobs.Config{Lease: a.cfg.Workers.Lease, Logger: a.log}
	if a.custody != nil {
		cfg.Ended = a.custody.Ended // an ended job's token is wiped, here or at its holder
	}
	return jobs.New(cfg, a.recs, a.queue, a.bus, a.stager)
}

// withdrawer is the custody the source handler asks for a job's
// ephemeral credential: this process's own, which answers for the jobs it
// holds and asks their holder over NATS for the others.
func (a *app) withdrawer() workers.Withdrawer {
	if a.custody == nil {
		return nil
	}
	return a.custody
}

// poolComponent is the worker pool over the app's queue, a mux of the job
// kinds and their handlers. Its stop lets jobs in flight finish within
// --shutdown-timeout, then hands the rest back.
func (a *app) poolComponent() (component, error) {
	log := a.log
	handler := workers.NewIngestHandler(workers.IngestConfig{}, a.jobService(), a.stager, a.pipe)
	mux := workers.NewMux()
	deleted := workers.NewDeletedAccounts(0) // a deleted account's jobs stop, here too
	a.forgets.add(deleted)
	mux.Use(deleted.Middleware)
	mux.Register(apiary.JobKindIngest, handler)
	mux.Register(apiary.JobKindReembed, a.reembedHandler())
	conns, err := a.connections()
	if err != nil {
		return component{}, err
	}
	mux.Register(apiary.JobKindSource, workers.NewSourceHandler(workers.IngestConfig{}, a.jobService(), a.stager, a.pipe, a.pipe, a.openSource, a.withdrawer()).WithCursors(conns))
	pool, err := workers.NewPool(a.queue, mux, workers.PoolConfig{
		Concurrency:  a.cfg.Workers.Count,
		Fair:         workers.FairConfig{MaxPerAccount: a.cfg.Workers.JobsPerAccount},
		MaxAttempts:  a.cfg.Workers.MaxAttempts,
		OutageGiveUp: a.cfg.Workers.OutageGiveUp,
		OnGiveUp:     handler.GiveUp,
		Logger:       log,
	})
	if err != nil {
		return component{}, err
	}
	return component{
		name: "worker pool",
		run:  pool.Run,
		stop: func(ctx context.Context) error {
			if err := pool.Stop(ctx); err != nil {
				return fmt.Errorf("workers handed back unfinished jobs: %w", err)
			}
			return nil
		},
		budget: a.cfg.Workers.ShutdownTimeout,
	}, nil
}

func (a *app) reembedHandler() *workers.ReembedHandler {
	return workers.NewReembedHandler(workers.ReembedConfig{Logger: a.log}, a.jobService(), a.recs, a.pipe)
}

// modelCheckComponent compares each account's embedding model with the
// embedder's, once, as the workers start: an account with chunks of
// another model gets a re-embed job (one per account and model).
func (a *app) modelCheckComponent() component {
	h := a.reembedHandler()
	return component{name: "model check", run: func(ctx context.Context) error {
		started, err := h.Reconcile(ctx)
		if err != nil {
			a.log.Error("could not check the accounts' embedding models", "err", err)
			return nil // queries still answer; the next start checks again
		}
		if len(started) > 0 {
			a.log.Info("accounts with chunks of another embedding model are being re-embedded", "accounts", len(started), "model", a.emb.Model())
		}
		return nil
	}}
}

// sweeperComponent re-enqueues jobs that were recorded but never queued.
func (a *app) sweeperComponent() component {
	sw := workers.NewSweeper(workers.SweeperConfig{Logger: a.log}, a.jobService())
	return component{name: "sweeper", run: func(ctx context.Context) error { sw.Run(ctx); return nil }}
}
