package workers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage"
	localvec "github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
	jsqueue "github.com/apiaryhq/apiary/workers/queue/jetstream"
)

// env is a complete worker environment on real parts: an embedded
// nats-server, NATS KV records and blobs, the JetStream queue and event bus,
// the local keyring, vector store and embedder.
type env struct {
	url     string // of the nats-server
	recs    *records.Store
	keys    *keyring.Keyring
	stager  *upload.Stager
	vecs    *localvec.Store
	pipe    *pipeline.Pipeline
	bus     *natsbus.Bus
	q       *jsqueue.Queue
	ingest  *flaky
	jobs    *jobs.Service
	handler *workers.IngestHandler
}

// flaky wraps the real pipeline and fails chosen documents, to model outages.
type flaky struct {
	next      workers.Ingester
	failOnce  map[apiary.DocumentID]error // fail the first time only
	failed    map[apiary.DocumentID]bool
	calls     atomic.Int64
	beforeDoc func(apiary.DocumentID)
}

func (f *flaky) Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error) {
	f.calls.Add(1)
	if f.beforeDoc != nil {
		f.beforeDoc(doc.ID)
	}
	if err, ok := f.failOnce[doc.ID]; ok && !f.failed[doc.ID] {
		f.failed[doc.ID] = true
		return apiary.DocumentRecord{}, err
	}
	return f.next.Ingest(ctx, job, doc)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	nc, _ := natstest.Connect(t)
	return openEnv(t, nc, t.TempDir(), t.TempDir(), 5*time.Second)
}

// openEnv builds an env on nc, with the keyring and vector store kept in
// keyDir and vecDir, and lease as the queue's and the job records' lease.
// Opened again on the same server and directories, it is the same
// deployment after a restart.
func openEnv(t *testing.T, nc *nats.Conn, keyDir, vecDir string, lease time.Duration) *env {
	t.Helper()
	ctx := context.Background()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	recs, err := records.Open(ctx, natskv.NewKVStore(js, natskv.Config{}))
	require.NoError(t, err)
	blobs, err := natskv.NewBlobs(ctx, js, "stage", natskv.Config{})
	require.NoError(t, err)
	keys, err := keyring.New(keyring.Config{Dir: keyDir, RootKey: make([]byte, 32)})
	require.NoError(t, err)
	if err := keys.CreateAccountKey(ctx, "acme"); err != nil {
		require.ErrorIs(t, err, apiary.ErrConflict)
	}
	vecs, err := localvec.Open(vecDir, localvec.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { vecs.Close() })
	pipe, err := pipeline.New(pipeline.Config{}, local.New(local.Config{}), keys, vecs, recs)
	require.NoError(t, err)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(t, err)
	q, err := jsqueue.New(ctx, jsqueue.Config{Conn: nc, Lease: lease, PollWait: 100 * time.Millisecond})
	require.NoError(t, err)
	e := &env{url: nc.ConnectedUrl(), recs: recs, keys: keys, stager: upload.NewStager(blobs, keys), vecs: vecs, pipe: pipe, bus: bus, q: q}
	e.ingest = &flaky{next: pipe, failOnce: map[apiary.DocumentID]error{}, failed: map[apiary.DocumentID]bool{}}
	e.jobs = jobs.New(jobs.Config{ProgressEvery: time.Nanosecond, Lease: lease}, recs, q, bus, e.stager)
	e.handler = workers.NewIngestHandler(workers.IngestConfig{DocConcurrency: 1}, e.jobs, e.stager, e.ingest)
	return e
}

// submit stages docs and creates their job, as the API does.
func (e *env) submit(t *testing.T, docs ...apiary.Document) apiary.Job {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	j := apiary.Job{ID: apiary.NewJobID(), Account: "acme", Status: apiary.JobQueued, Version: uint64(now.UnixNano()),
		Source: "upload", Counts: apiary.Counts{DocumentsTotal: len(docs)}, CreatedAt: now, UpdatedAt: now}
	require.NoError(t, e.stager.Stage(ctx, j.Account, j.ID, docs))
	require.NoError(t, e.recs.CreateJob(ctx, j))
	return j
}

func delivery(j apiary.Job, attempt int) *queue.Delivery {
	return &queue.Delivery{Msg: apiary.JobMessage{Account: j.Account, Job: j.ID}, Attempt: attempt}
}

func (e *env) job(t *testing.T, id apiary.JobID) apiary.Job {
	t.Helper()
	j, err := e.recs.Job(context.Background(), "acme", id)
	require.NoError(t, err)
	return j
}

func (e *env) eventTypes(t *testing.T, id apiary.JobID) []apiary.EventType {
	t.Helper()
	evs, err := e.bus.Replay(context.Background(), events.Filter{Account: "acme", Job: id}, 1000)
	require.NoError(t, err)
	var out []apiary.EventType
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

func doc(id, text string) apiary.Document {
	return apiary.Document{ID: apiary.DocumentID(id), Text: text}
}

func TestIngestHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a job succeeds and counts every chunk", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		j := e.submit(t, doc("a", "alpha beta gamma"), doc("b", "delta epsilon"))
		require.NoError(t, e.handler.Handle(ctx, delivery(j, 1)))
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobSucceeded, got.Status)
		require.Equal(t, 2, got.Counts.DocumentsDone)
		n, err := e.vecs.Count(ctx, "acme", storage.VectorFilter{})
		require.NoError(t, err)
		require.Equal(t, n, got.Counts.Chunks)
		require.NotNil(t, got.FinishedAt)
		require.Equal(t, []apiary.EventType{apiary.EventJobStarted, apiary.EventJobProgress, apiary.EventJobProgress, apiary.EventJobSucceeded}, e.eventTypes(t, j.ID))
		_, err = e.stager.Load(ctx, "acme", j.ID)
		require.ErrorIs(t, err, apiary.ErrNotFound, "staged documents are dropped when the job ends")
	})

	t.Run("bad documents fail alone, with a reason", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		bad := apiary.Document{ID: "broken.csv", ContentType: "text/csv", Raw: []byte{0xff, 0xfe, 0x00}}
		j := e.submit(t, doc("good", "honey and wax"), bad)
		require.NoError(t, e.handler.Handle(ctx, delivery(j, 1)))
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobSucceeded, got.Status)
		require.Equal(t, 1, got.Counts.DocumentsDone)
		require.Equal(t, 1, got.Counts.DocumentsFailed)
		require.Len(t, got.Errors, 1)
		require.Equal(t, apiary.DocumentID("broken.csv"), got.Errors[0].DocumentID)
		require.NotEmpty(t, got.Errors[0].Reason)
	})

	t.Run("a job whose documents all fail ends failed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		j := e.submit(t, doc("empty", "   "), apiary.Document{ID: "x.bin", ContentType: "application/octet-stream", Raw: []byte("zz")})
		require.NoError(t, e.handler.Handle(ctx, delivery(j, 1)))
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobFailed, got.Status)
		require.Equal(t, 2, got.Counts.DocumentsFailed)
		require.Contains(t, got.Error, "all 2 documents failed")
		require.Equal(t, apiary.EventJobFailed, e.eventTypes(t, j.ID)[len(e.eventTypes(t, j.ID))-1])
	})

	t.Run("a retried job skips finished documents and fires its final event once", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.ingest.failOnce["c"] = apiary.RetryAfter(errors.New("embedder overloaded"), time.Second)
		j := e.submit(t, doc("a", "one"), doc("b", "two"), doc("c", "three"))
		err := e.handler.Handle(ctx, delivery(j, 1))
		require.Error(t, err)
		require.False(t, apiary.IsPermanent(err), "an outage is retried")
		require.Equal(t, apiary.JobRunning, e.job(t, j.ID).Status)
		require.EqualValues(t, 3, e.ingest.calls.Load())

		require.NoError(t, e.handler.Handle(ctx, delivery(j, 2)))
		require.EqualValues(t, 4, e.ingest.calls.Load(), "only the unfinished document runs again")
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobSucceeded, got.Status)
		require.Equal(t, 3, got.Counts.DocumentsDone)
		require.Equal(t, 2, got.Attempts)

		// A duplicate delivery of a finished job changes nothing.
		require.NoError(t, e.handler.Handle(ctx, delivery(j, 3)))
		require.EqualValues(t, 4, e.ingest.calls.Load())
		final := 0
		for _, typ := range e.eventTypes(t, j.ID) {
			if typ == apiary.EventJobSucceeded {
				final++
			}
		}
		require.Equal(t, 1, final)
	})

	t.Run("cancel stops a running job between documents", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		var docs []apiary.Document
		for i := range 6 {
			docs = append(docs, doc(fmt.Sprintf("d%d", i), strings.Repeat("word ", 50)))
		}
		j := e.submit(t, docs...)
		cancelErr := make(chan error, 1) // the hook runs on a handler goroutine
		e.ingest.beforeDoc = func(id apiary.DocumentID) {
			if id == "d2" {
				_, err := e.recs.UpdateJob(ctx, "acme", j.ID, func(j *apiary.Job) error {
					j.Status = apiary.JobCanceled
					return nil
				})
				cancelErr <- err
			}
		}
		require.NoError(t, e.handler.Handle(ctx, delivery(j, 1)))
		require.NoError(t, <-cancelErr)
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobCanceled, got.Status)
		require.Less(t, e.ingest.calls.Load(), int64(6))
	})

	t.Run("giving up marks the job failed with its reason", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		j := e.submit(t, doc("a", "one"))
		e.handler.GiveUp(ctx, delivery(j, 5), apiary.E(apiary.KindUnavailable, "vector store unavailable"))
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobFailed, got.Status)
		require.Equal(t, "failed after 5 attempt(s): vector store unavailable", got.Error)
		require.Equal(t, []apiary.EventType{apiary.EventJobFailed}, e.eventTypes(t, j.ID))
		// An unclassified cause is not shown: it may come from a dependency.
		j2 := e.submit(t, doc("b", "two"))
		e.handler.GiveUp(ctx, delivery(j2, 2), errors.New("dial tcp 10.0.0.7:19530: secret-host"))
		require.Equal(t, "failed after 2 attempt(s): internal error", e.job(t, j2.ID).Error)
	})

	t.Run("a job whose record is gone is not retried", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		err := e.handler.Handle(ctx, &queue.Delivery{Msg: apiary.JobMessage{Account: "acme", Job: apiary.NewJobID()}, Attempt: 1})
		require.True(t, apiary.IsPermanent(err))
	})
}

// TestPoolRunsIngestJobs runs jobs through the real queue and pool, and a
// mux of job kinds as the composition root wires it: messages from before
// kinds run as ingest jobs too.
func TestPoolRunsIngestJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	mux := workers.NewMux()
	mux.Register(apiary.JobKindIngest, e.handler)
	pool, err := workers.NewPool(e.q, mux, workers.PoolConfig{Concurrency: 2, MaxAttempts: 3, OnGiveUp: e.handler.GiveUp})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pool.Run(runCtx) }()
	t.Cleanup(func() {
		stopCtx, c := context.WithTimeout(ctx, 10*time.Second)
		defer c()
		_ = pool.Stop(stopCtx)
		cancel()
		<-done
	})

	var jobs []apiary.Job
	for i := range 4 {
		j := e.submit(t, doc(fmt.Sprintf("p%d", i), "pollen and nectar"))
		msg := j.Message()
		if i%2 == 0 {
			msg.Kind = apiary.JobKindIngest
		}
		require.NoError(t, e.q.Enqueue(ctx, msg))
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		require.Eventually(t, func() bool {
			got, err := e.recs.Job(ctx, "acme", j.ID)
			return err == nil && got.Status == apiary.JobSucceeded
		}, 30*time.Second, 20*time.Millisecond)
	}
}

// down is an Ingester whose vector store is unavailable for its first
// calls, then back.
type down struct {
	next    workers.Ingester
	calls   atomic.Int64
	failing int64 // calls that meet the outage
}

func (d *down) Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error) {
	if d.calls.Add(1) <= d.failing {
		return apiary.DocumentRecord{}, apiary.E(apiary.KindUnavailable, "vectors: upsert: milvus unavailable")
	}
	return d.next.Ingest(ctx, job, doc)
}

// TestIngestJobOutlastsAnOutage: a job whose vector store is down for more
// deliveries than MaxAttempts is retried through the outage and succeeds
// once the store is back; no run counts as interrupted.
func TestIngestJobOutlastsAnOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	ing := &down{next: e.pipe, failing: 4}
	h := workers.NewIngestHandler(workers.IngestConfig{DocConcurrency: 1}, e.jobs, e.stager, ing)
	pool, err := workers.NewPool(e.q, h, workers.PoolConfig{Concurrency: 1, MaxAttempts: 2, OnGiveUp: h.GiveUp,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond, Logger: quiet()})
	require.NoError(t, err)
	runPool(t, pool)

	j := e.submit(t, doc("o", "through the outage"))
	require.NoError(t, e.q.Enqueue(ctx, j.Message()))
	require.Eventually(t, func() bool { return e.job(t, j.ID).Status.Final() }, waitFor, 20*time.Millisecond)
	got := e.job(t, j.ID)
	require.Equal(t, apiary.JobSucceeded, got.Status, "job error: %s", got.Error)
	require.Equal(t, 5, got.Attempts)
	require.Zero(t, got.Interrupted)
	require.EqualValues(t, 5, ing.calls.Load())
}

// TestSweeperQueuesJobsThatMissedTheQueue models an API that stopped between
// writing a job and queuing it: the sweeper queues it, once, and a worker
// finishes it.
func TestSweeperQueuesJobsThatMissedTheQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	missed := e.submit(t, doc("m", "lost in the gap"))
	queued := e.submit(t, doc("q", "made it to the queue"))
	_, err := e.recs.UpdateJob(ctx, "acme", queued.ID, func(j *apiary.Job) error { j.Enqueued = true; return nil })
	require.NoError(t, err)

	young := workers.NewSweeper(workers.SweeperConfig{Grace: time.Hour}, e.jobs)
	n, err := young.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a job inside its grace period is left alone")

	s := workers.NewSweeper(workers.SweeperConfig{Grace: time.Nanosecond}, e.jobs)
	n, err = s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = s.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a swept job is queued once")

	ds, err := e.q.Receive(ctx, 10)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, missed.ID, ds[0].Msg.Job)
	require.NoError(t, e.handler.Handle(ctx, ds[0]))
	require.NoError(t, ds[0].Ack(ctx))
	require.Equal(t, apiary.JobSucceeded, e.job(t, missed.ID).Status)
}

// TestDuplicateDeliveryWaitsForTheRunningOne: two deliveries of one job (an
// at-least-once queue may hand out both) never run it at the same time; the
// second waits, and giving it up does not fail the job the first is running.
func TestDuplicateDeliveryWaitsForTheRunningOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	j := e.submit(t, doc("a", "first document"), doc("b", "second document"))
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.ingest.beforeDoc = func(apiary.DocumentID) {
		once.Do(func() {
			close(inside)
			<-release
		})
	}
	first := make(chan error, 1)
	go func() { first <- e.handler.Handle(ctx, delivery(j, 1)) }()
	<-inside

	err := e.handler.Handle(ctx, delivery(j, 2))
	require.Error(t, err)
	require.False(t, apiary.IsPermanent(err), "the duplicate is retried later, not dropped")
	delay, ok := apiary.RetryDelay(err)
	require.True(t, ok)
	require.Positive(t, delay)
	e.handler.GiveUp(ctx, delivery(j, 9), err)
	require.Equal(t, apiary.JobRunning, e.job(t, j.ID).Status, "giving up a duplicate leaves the running job alone")

	close(release)
	require.NoError(t, <-first)
	got := e.job(t, j.ID)
	require.Equal(t, apiary.JobSucceeded, got.Status)
	require.EqualValues(t, 2, e.ingest.calls.Load(), "each document ran once")
	require.Empty(t, got.Owner, "a finished run lets go of the job")

	// The duplicate's retry now finds the job finished and changes nothing.
	require.NoError(t, e.handler.Handle(ctx, delivery(j, 3)))
	require.EqualValues(t, 2, e.ingest.calls.Load())
}

// TestFailedRunFreesTheJob: a run that fails lets go of the job, so its retry
// (or the pool's give-up) need not wait for the lease to run out.
func TestFailedRunFreesTheJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	e.ingest.failOnce["a"] = apiary.RetryAfter(errors.New("embedder overloaded"), time.Second)
	j := e.submit(t, doc("a", "one"))
	require.Error(t, e.handler.Handle(ctx, delivery(j, 1)))
	require.Empty(t, e.job(t, j.ID).Owner)
	e.handler.GiveUp(ctx, delivery(j, 5), apiary.E(apiary.KindUnavailable, "embedder unavailable"))
	require.Equal(t, apiary.JobFailed, e.job(t, j.ID).Status)
}

// dying is an Ingester in a worker process that dies at one document: its
// connection to NATS goes away, so nothing it holds is ever released.
type dying struct {
	next workers.Ingester
	at   apiary.DocumentID
	nc   *nats.Conn
}

func (d dying) Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error) {
	if doc.ID == d.at {
		d.nc.Close()
		return apiary.DocumentRecord{}, errors.New("the worker process is gone")
	}
	return d.next.Ingest(ctx, job, doc)
}

// otherProcess is the job service of another worker process, on a NATS
// connection of its own (closing it is that process dying), with a short
// lease (300 ms).
func (e *env) otherProcess(t *testing.T) (*nats.Conn, *jobs.Service) {
	t.Helper()
	nc, err := nats.Connect(e.url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	recs, err := records.Open(context.Background(), natskv.NewKVStore(js, natskv.Config{}))
	require.NoError(t, err)
	const lease = 300 * time.Millisecond
	return nc, jobs.New(jobs.Config{ProgressEvery: time.Nanosecond, Lease: lease, FinalTimeout: lease}, recs, e.q, e.bus, e.stager)
}

// crashOn runs job j in a worker process of its own that dies at document
// at, and waits until the lease that process left behind has run out.
func (e *env) crashOn(t *testing.T, j apiary.Job, attempt int, at apiary.DocumentID) {
	t.Helper()
	ctx := context.Background()
	nc, svc := e.otherProcess(t)
	h := workers.NewIngestHandler(workers.IngestConfig{DocConcurrency: 1}, svc, e.stager, dying{next: e.ingest, at: at, nc: nc})
	require.Error(t, h.Handle(ctx, delivery(j, attempt)))
	held := e.job(t, j.ID)
	require.NotEmpty(t, held.Owner, "the dead run never let go of the job")
	require.Eventually(t, func() bool { return time.Now().After(*e.job(t, j.ID).LeaseUntil) }, 30*time.Second, 20*time.Millisecond)
}

// TestJobThatStopsItsWorkerTwiceIsGivenUp: a job whose runs ended with their
// worker process twice is failed with that reason instead of running a
// third time; the documents that finished keep their results, and its
// final event is published once.
func TestJobThatStopsItsWorkerTwiceIsGivenUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	j := e.submit(t, doc("a", "alpha beta gamma"), doc("bomb", "kills its worker"), doc("c", "never reached"))
	e.crashOn(t, j, 1, "bomb")
	e.crashOn(t, j, 2, "bomb")
	ran := e.ingest.calls.Load()

	require.NoError(t, e.handler.Handle(ctx, delivery(j, 3)), "the delivery is settled, not retried")
	require.Equal(t, ran, e.ingest.calls.Load(), "the job does not run a third time")
	got := e.job(t, j.ID)
	require.Equal(t, apiary.JobFailed, got.Status)
	require.Equal(t, "the worker stopped twice while running this job", got.Error)
	require.Equal(t, apiary.Counts{DocumentsTotal: 3, DocumentsDone: 1, Chunks: 1}, got.Counts, "document a's result is kept")
	require.True(t, got.Notified)
	_, err := e.recs.Document(ctx, "acme", "a")
	require.NoError(t, err)

	require.NoError(t, e.handler.Handle(ctx, delivery(j, 4)))
	types := e.eventTypes(t, j.ID)
	require.Equal(t, apiary.EventJobFailed, types[len(types)-1])
	finals := 0
	for _, typ := range types {
		if typ == apiary.EventJobFailed {
			finals++
		}
	}
	require.Equal(t, 1, finals, "one final event: %v", types)
}

// TestHandBackIsNotACrash: runs that end under the worker's control (a
// retry, a hard stop) release the job, and do not count towards giving it up.
func TestHandBackIsNotACrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	j := e.submit(t, doc("a", "one"))
	for attempt := 1; attempt <= 3; attempt++ {
		hctx, cancel := context.WithCancel(ctx)
		e.ingest.beforeDoc = func(apiary.DocumentID) { cancel() }
		require.Error(t, e.handler.Handle(hctx, delivery(j, attempt)))
		require.Empty(t, e.job(t, j.ID).Owner)
	}
	e.ingest.beforeDoc = nil
	require.NoError(t, e.handler.Handle(ctx, delivery(j, 4)))
	got := e.job(t, j.ID)
	require.Equal(t, apiary.JobSucceeded, got.Status)
	require.Zero(t, got.Interrupted)
}
