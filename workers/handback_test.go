package workers_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// stall is an Ingester that holds document at until its context ends, as
// a long document does when the worker is stopped.
type stall struct {
	next    workers.Ingester
	at      apiary.DocumentID
	reached chan struct{}
	once    *sync.Once
}

func (s stall) Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error) {
	if doc.ID != s.at {
		return s.next.Ingest(ctx, job, doc)
	}
	s.once.Do(func() { close(s.reached) })
	<-ctx.Done()
	return apiary.DocumentRecord{}, ctx.Err()
}

// TestStoppedWorkerHandsTheJobBackAtOnce: a worker stopped in the middle of
// a job (SIGTERM, shutdown time up) releases the job record's lease and
// returns the queue message before its process exits, so that after a
// restart the job runs again at once, not when a ten-minute lease runs out.
func TestStoppedWorkerHandsTheJobBackAtOnce(t *testing.T) {
	t.Parallel()
	const lease = 10 * time.Minute
	ctx := context.Background()
	storeDir, keyDir, vecDir := t.TempDir(), t.TempDir(), t.TempDir()

	// The first process: runs the job and stops in its middle.
	srv, err := natsserver.Start(natsserver.Config{StoreDir: storeDir})
	require.NoError(t, err)
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	require.NoError(t, err)
	e := openEnv(t, nc, keyDir, vecDir, lease)
	j := e.submit(t, doc("a", "alpha beta"), doc("b", "a long document"))
	require.NoError(t, e.q.Enqueue(ctx, apiary.JobMessage{Account: j.Account, Job: j.ID}))
	reached := make(chan struct{})
	h := workers.NewIngestHandler(workers.IngestConfig{DocConcurrency: 1}, jobs.New(jobs.Config{Lease: lease}, e.recs, e.q, e.bus, e.stager),
		e.stager, stall{next: e.pipe, at: "b", reached: reached, once: &sync.Once{}})
	pool, err := workers.NewPool(e.q, h, workers.PoolConfig{Concurrency: 1, OnGiveUp: h.GiveUp, Logger: quiet()})
	require.NoError(t, err)
	ran := runPool(t, pool)
	select {
	case <-reached:
	case <-time.After(waitFor):
		t.Fatal("the job never reached its long document")
	}
	stopCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, pool.Stop(stopCtx), context.DeadlineExceeded, "a hard stop")
	require.NoError(t, ran())
	// The process exits: its connection and its embedded server go.
	nc.Close()
	srv.Shutdown()
	e.vecs.Close()

	// The restarted process.
	srv, err = natsserver.Start(natsserver.Config{StoreDir: storeDir})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err = nats.Connect("", nats.InProcessServer(srv))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	e = openEnv(t, nc, keyDir, vecDir, lease)
	held := e.job(t, j.ID)
	require.Equal(t, apiary.JobRunning, held.Status)
	require.Empty(t, held.Owner, "the stopped run released the job record's lease")
	require.Nil(t, held.LeaseUntil)
	require.Equal(t, 1, held.Counts.DocumentsDone, "document a stays done")

	pool, err = workers.NewPool(e.q, e.handler, workers.PoolConfig{Concurrency: 1, OnGiveUp: e.handler.GiveUp, Logger: quiet()})
	require.NoError(t, err)
	runPool(t, pool)
	require.Eventually(t, func() bool { return e.job(t, j.ID).Status == apiary.JobSucceeded }, waitFor, 20*time.Millisecond,
		"the handed-back job runs again long before its lease would run out")
	got := e.job(t, j.ID)
	require.Equal(t, apiary.Counts{DocumentsTotal: 2, DocumentsDone: 2, Chunks: 2}, got.Counts)
	require.Zero(t, got.Interrupted, "a hand-back is not a crash")
}
