package workers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/queue"
)

// held is the Ingester of a worker process that holds its job until told
// to die, and then loses its connection to NATS.
type held struct {
	inside chan struct{}
	die    chan struct{}
	nc     *nats.Conn
}

func (h held) Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error) {
	close(h.inside)
	<-h.die
	h.nc.Close()
	return apiary.DocumentRecord{}, errors.New("the worker process is gone")
}

// TestGivenUpDuplicateDoesNotStrandTheJob: a delivery at its last attempt
// that finds its job running on another worker (its lease lapsed under
// load, or the job was queued twice) must not take the job's only message
// with it: when that other worker then dies, the job must still end
// (retried or failed), not stay "running" for ever.
func TestGivenUpDuplicateDoesNotStrandTheJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	j := e.submit(t, doc("a", "alpha beta gamma"))

	// Another worker process runs the job.
	nc, svc := e.otherProcess(t)
	h := held{inside: make(chan struct{}), die: make(chan struct{}), nc: nc}
	other := workers.NewIngestHandler(workers.IngestConfig{DocConcurrency: 1}, svc, e.stager, h)
	otherDone := make(chan error, 1)
	go func() { otherDone <- other.Handle(ctx, delivery(j, 1)) }()
	<-h.inside

	// The job's message reaches this worker at its last attempt. The job
	// running elsewhere is no reason to give up on it: the message is kept
	// (retried like an outage, or kept by OnGiveUp).
	handled := make(chan error, 1)
	pool, err := workers.NewPool(e.q, workers.HandlerFunc(func(ctx context.Context, d *queue.Delivery) error {
		err := e.handler.Handle(ctx, d)
		select {
		case handled <- err:
		default:
		}
		return err
	}), workers.PoolConfig{Concurrency: 1, MaxAttempts: 1, Logger: quiet(), OnGiveUp: e.handler.GiveUp})
	require.NoError(t, err)
	runPool(t, pool)
	require.NoError(t, e.q.Enqueue(ctx, j.Message()))
	select {
	case err := <-handled:
		require.Error(t, err, "the job runs on another worker")
	case <-time.After(30 * time.Second):
		require.FailNow(t, "the pool never reached its last attempt")
	}
	require.Equal(t, apiary.JobRunning, e.job(t, j.ID).Status, "the running job is left to its worker")

	// Then that worker dies.
	close(h.die)
	require.Error(t, <-otherDone)
	require.Eventually(t, func() bool { return e.job(t, j.ID).Status.Final() }, 30*time.Second, 50*time.Millisecond,
		"the job's message was dropped with the duplicate: it stays %s for ever", e.job(t, j.ID).Status)
}
