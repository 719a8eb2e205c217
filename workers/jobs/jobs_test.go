package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

// world is a job service on real parts: an embedded nats-server with the
// record store, the JetStream queue and the event bus, and an upload stage
// sealed by the local keyring. Its queue can be taken down.
type world struct {
	recs   *records.Store
	q      *jetstream.Queue
	down   *atomic.Bool // Enqueue fails while set
	bus    *natsbus.Bus
	stager *upload.Stager
	svc    *jobs.Service
}

// outage is the real queue whose Enqueue fails while down is set.
type outage struct {
	*jetstream.Queue
	down *atomic.Bool
}

func (o outage) Enqueue(ctx context.Context, m apiary.JobMessage) error {
	if o.down.Load() {
		return errors.New("jetstream: publish: nats: no responders available for request")
	}
	return o.Queue.Enqueue(ctx, m)
}

func newWorld(t *testing.T, cfg jobs.Config) *world {
	t.Helper()
	ctx := t.Context()
	nc, js := natstest.Connect(t)
	recs, err := records.Open(ctx, natskv.NewKVStore(js, natskv.Config{}))
	require.NoError(t, err)
	q, err := jetstream.New(ctx, jetstream.Config{Conn: nc, PollWait: 100 * time.Millisecond})
	require.NoError(t, err)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(t, err)
	keys, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: make([]byte, 32)})
	require.NoError(t, err)
	require.NoError(t, keys.CreateAccountKey(ctx, "acme"))
	blobs, err := local.OpenBlobs(t.TempDir())
	require.NoError(t, err)
	w := &world{recs: recs, q: q, down: &atomic.Bool{}, bus: bus, stager: upload.NewStager(blobs, keys)}
	w.svc = jobs.New(cfg, recs, outage{Queue: q, down: w.down}, bus, w.stager)
	return w
}

func (w *world) submit(t *testing.T, key, hash string) (apiary.Job, bool, error) {
	t.Helper()
	return w.svc.Submit(t.Context(), jobs.Submission{
		Account: "acme", Source: "upload", IdempotencyKey: key, RequestHash: hash,
		Documents: []apiary.Document{{ID: "a", Text: "alpha"}, {ID: "b", Text: "beta"}, {ID: "c", Text: "gamma"}},
	})
}

// started submits a job and starts its first run; the run is released
// when the test ends.
func (w *world) started(t *testing.T) (apiary.Job, *jobs.Run, context.Context) {
	t.Helper()
	job, _, err := w.submit(t, "", "")
	require.NoError(t, err)
	run, ctx, err := w.svc.Start(t.Context(), "acme", job.ID, 1)
	require.NoError(t, err)
	require.NotNil(t, run)
	t.Cleanup(run.Release)
	return job, run, ctx
}

func (w *world) job(t *testing.T, id apiary.JobID) apiary.Job {
	t.Helper()
	j, err := w.recs.Job(t.Context(), "acme", id)
	require.NoError(t, err)
	return j
}

func (w *world) events(t *testing.T, id apiary.JobID) []apiary.EventType {
	t.Helper()
	evs, err := w.bus.Replay(t.Context(), events.Filter{Account: "acme", Job: id}, 100)
	require.NoError(t, err)
	var out []apiary.EventType
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

func (w *world) received(t *testing.T) []apiary.JobMessage {
	t.Helper()
	ds, err := w.q.Receive(t.Context(), 10)
	require.NoError(t, err)
	var out []apiary.JobMessage
	for _, d := range ds {
		out = append(out, d.Msg)
		require.NoError(t, d.Ack(t.Context()))
	}
	return out
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{})
	ctx := t.Context()

	job, replayed, err := w.submit(t, "k-1", "hash-1")
	require.NoError(t, err)
	require.False(t, replayed)
	got := w.job(t, job.ID)
	require.Equal(t, apiary.JobQueued, got.Status)
	require.Equal(t, apiary.JobKindIngest, got.Kind)
	require.Equal(t, 3, got.Counts.DocumentsTotal)
	require.True(t, got.Enqueued, "the sweeper leaves it alone")
	docs, err := w.stager.Load(ctx, "acme", job.ID)
	require.NoError(t, err)
	require.Len(t, docs, 3)
	require.Equal(t, []apiary.JobMessage{job.Message()}, w.received(t))
	require.Equal(t, apiary.JobKindIngest, job.Message().Kind)
	require.Equal(t, []apiary.EventType{apiary.EventJobQueued}, w.events(t, job.ID))

	t.Run("the same key and request replay the first job", func(t *testing.T) {
		again, replayed, err := w.submit(t, "k-1", "hash-1")
		require.NoError(t, err)
		require.True(t, replayed)
		require.Equal(t, job.ID, again.ID)
		require.Empty(t, w.received(t), "nothing more is queued")
	})
	t.Run("the same key with another request is refused", func(t *testing.T) {
		refused, _, err := w.submit(t, "k-1", "hash-2")
		require.ErrorIs(t, err, apiary.ErrConflict)
		j := w.job(t, refused.ID)
		require.Equal(t, apiary.JobCanceled, j.Status, "the refused request's record ends")
		require.Equal(t, "request refused: Idempotency-Key reused with a different body", j.Error)
		_, err = w.stager.Load(ctx, "acme", refused.ID)
		require.ErrorIs(t, err, apiary.ErrNotFound, "its documents are dropped")
	})
}

func TestSubmitToAQueueThatIsDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{})
	w.down.Store(true)
	failed, _, err := w.submit(t, "retry-me", "h")
	require.ErrorIs(t, err, apiary.ErrUnavailable)
	require.Equal(t, "the job could not be queued; retry later", apiary.Message(err))
	j := w.job(t, failed.ID)
	require.Equal(t, apiary.JobFailed, j.Status)
	require.Equal(t, "could not be queued", j.Error)
	require.True(t, j.Notified)
	require.Equal(t, []apiary.EventType{apiary.EventJobFailed}, w.events(t, failed.ID))

	w.down.Store(false)
	retried, replayed, err := w.submit(t, "retry-me", "h")
	require.NoError(t, err)
	require.False(t, replayed, "the key was released: the retry is a fresh attempt")
	require.NotEqual(t, failed.ID, retried.ID)
}

func TestCancel(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{})
	job, _, err := w.submit(t, "", "")
	require.NoError(t, err)

	canceled, err := w.svc.Cancel(t.Context(), "acme", job.ID)
	require.NoError(t, err)
	require.Equal(t, apiary.JobCanceled, canceled.Status)
	require.Equal(t, apiary.ReasonCanceled, canceled.Error)
	require.True(t, w.job(t, job.ID).Notified)

	_, err = w.svc.Cancel(t.Context(), "acme", job.ID)
	require.ErrorIs(t, err, apiary.ErrConflict)
	require.Equal(t, "job already canceled", apiary.Message(err))
	_, err = w.svc.Cancel(t.Context(), "other", job.ID)
	require.ErrorIs(t, err, apiary.ErrNotFound, "another account's job")

	// The worker that takes its message finds it final: nothing runs, its
	// final event is not published again, and its documents go.
	run, _, err := w.svc.Start(t.Context(), "acme", job.ID, 1)
	require.NoError(t, err)
	require.Nil(t, run)
	require.Equal(t, []apiary.EventType{apiary.EventJobQueued, apiary.EventJobCanceled}, w.events(t, job.ID))
	_, err = w.stager.Load(t.Context(), "acme", job.ID)
	require.ErrorIs(t, err, apiary.ErrNotFound)
}

// TestRun: a run holds the job, records outcomes with its progress
// throttled, finishes it, and publishes the final event once.
func TestRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{ProgressEvery: time.Hour, Lease: time.Minute})
	ctx := t.Context()
	job, _, err := w.submit(t, "", "")
	require.NoError(t, err)

	run, runCtx, err := w.svc.Start(ctx, "acme", job.ID, 1)
	require.NoError(t, err)
	require.NotNil(t, run)
	held := w.job(t, job.ID)
	require.Equal(t, apiary.JobRunning, held.Status)
	require.NotEmpty(t, held.Owner)

	_, _, err = w.svc.Start(ctx, "acme", job.ID, 2)
	delay, ok := apiary.RetryDelay(err)
	require.True(t, ok, "a second delivery waits: %v", err)
	require.Greater(t, delay, 30*time.Second, "until the lease would end")

	for _, o := range []apiary.DocumentOutcome{{Document: "a", Chunks: 2}, {Document: "b", Reason: "bad"}, {Document: "c", Chunks: 1}} {
		canceled, err := run.Record(runCtx, o)
		require.NoError(t, err)
		require.False(t, canceled)
	}
	require.Equal(t, apiary.Counts{DocumentsTotal: 3, DocumentsDone: 1, Chunks: 2}, w.job(t, job.ID).Counts,
		"one progress write within ProgressEvery: the first")
	require.NoError(t, run.Finish(runCtx))
	run.Release()
	require.ErrorIs(t, context.Cause(runCtx), context.Canceled, "the run's context ends with it")

	got := w.job(t, job.ID)
	require.Equal(t, apiary.JobSucceeded, got.Status)
	require.Equal(t, apiary.Counts{DocumentsTotal: 3, DocumentsDone: 2, DocumentsFailed: 1, Chunks: 3}, got.Counts)
	require.Equal(t, []apiary.DocumentError{{DocumentID: "b", Reason: "bad"}}, got.Errors)
	require.Empty(t, got.Owner, "released")
	require.True(t, got.Notified)
	_, err = w.stager.Load(ctx, "acme", job.ID)
	require.ErrorIs(t, err, apiary.ErrNotFound)
	want := []apiary.EventType{apiary.EventJobQueued, apiary.EventJobStarted, apiary.EventJobProgress, apiary.EventJobSucceeded}
	require.Equal(t, want, w.events(t, job.ID))

	// A redelivery of the finished job changes nothing.
	again, _, err := w.svc.Start(ctx, "acme", job.ID, 3)
	require.NoError(t, err)
	require.Nil(t, again)
	require.Equal(t, want, w.events(t, job.ID))

	_, _, err = w.svc.Start(ctx, "acme", apiary.NewJobID(), 1)
	require.True(t, apiary.IsPermanent(err), "a job whose record is gone")
}

// TestRunOutcomesStandAcrossRuns: a second run skips the documents an
// earlier one recorded, and counts them.
func TestRunOutcomesStandAcrossRuns(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{ProgressEvery: time.Nanosecond})
	job, first, runCtx := w.started(t)
	_, err := first.Record(runCtx, apiary.DocumentOutcome{Document: "a", Chunks: 4})
	require.NoError(t, err)
	first.Release() // a retry: the run hands the job back

	second, runCtx, err := w.svc.Start(t.Context(), "acme", job.ID, 2)
	require.NoError(t, err)
	defer second.Release()
	require.True(t, second.Done("a"))
	require.False(t, second.Done("b"))
	// Two runs racing on one document: the first outcome stored counts.
	_, err = second.Record(runCtx, apiary.DocumentOutcome{Document: "a", Chunks: 4})
	require.NoError(t, err)
	require.NoError(t, second.Finish(runCtx))
	got := w.job(t, job.ID)
	require.Equal(t, apiary.Counts{DocumentsTotal: 3, DocumentsDone: 1, Chunks: 4}, got.Counts, "an outcome counts once")
	require.Equal(t, 2, got.Attempts)
	require.Zero(t, got.Interrupted, "a hand-back is not a crash")
}

// TestRunStopsOnCancel: a run learns at its next progress write that its
// job was canceled; its end keeps the canceled status with exact counts.
func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{ProgressEvery: time.Nanosecond})
	job, run, runCtx := w.started(t)
	_, err := w.svc.Cancel(t.Context(), "acme", job.ID)
	require.NoError(t, err)
	canceled, err := run.Record(runCtx, apiary.DocumentOutcome{Document: "a", Chunks: 1})
	require.NoError(t, err)
	require.True(t, canceled)
	require.NoError(t, run.Finish(runCtx))
	got := w.job(t, job.ID)
	require.Equal(t, apiary.JobCanceled, got.Status)
	require.Equal(t, 1, got.Counts.DocumentsDone)
	types := w.events(t, job.ID)
	require.Equal(t, apiary.EventJobCanceled, types[len(types)-1], "one final event, the cancel's")
}

func TestGiveUp(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{})
	ctx := t.Context()
	job, run, runCtx := w.started(t)
	_, err := run.Record(runCtx, apiary.DocumentOutcome{Document: "a", Chunks: 1})
	require.NoError(t, err)

	w.svc.GiveUp(ctx, "acme", job.ID, 9, errors.New("a duplicate delivery's error"))
	require.Equal(t, apiary.JobRunning, w.job(t, job.ID).Status, "a job another run holds is left to it")

	run.Release()
	w.svc.GiveUp(ctx, "acme", job.ID, 5, apiary.E(apiary.KindUnavailable, "vector store unavailable"))
	got := w.job(t, job.ID)
	require.Equal(t, apiary.JobFailed, got.Status)
	require.Equal(t, "failed after 5 attempt(s): vector store unavailable", got.Error)
	require.Equal(t, 1, got.Counts.DocumentsDone, "finished documents keep their outcomes")
	w.svc.GiveUp(ctx, "acme", job.ID, 6, errors.New("dial tcp 10.0.0.7:19530"))
	require.Equal(t, "failed after 5 attempt(s): vector store unavailable", w.job(t, job.ID).Error, "a final job stays as it is")
	types := w.events(t, job.ID)
	require.Equal(t, apiary.EventJobFailed, types[len(types)-1])
	require.NotContains(t, types[:len(types)-1], apiary.EventJobFailed, "one final event")
}

func TestSweep(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{})
	ctx := t.Context()
	old := time.Now().UTC().Add(-time.Hour)
	missed := apiary.Job{ID: apiary.NewJobID(), Account: "acme", Status: apiary.JobQueued, CreatedAt: old, UpdatedAt: old}
	require.NoError(t, w.recs.CreateJob(ctx, missed))

	n, err := w.svc.Sweep(ctx, old.Add(-time.Minute), 10)
	require.NoError(t, err)
	require.Zero(t, n, "a job inside its grace period is left alone")
	n, err = w.svc.Sweep(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.True(t, w.job(t, missed.ID).Enqueued)
	n, err = w.svc.Sweep(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.Zero(t, n, "a swept job is queued once")
	require.Equal(t, []apiary.JobMessage{{Account: "acme", Job: missed.ID}}, w.received(t),
		"a record from before kinds is queued without one: an ingest job")
}

// TestRunEndsWhenItsJobIsCanceled: a job canceled through the API while it
// runs ends its run's context at the next lease renewal with ErrJobEnded,
// not as a lease lost to another run, and Finish still records the counts
// although that context is over.
func TestRunEndsWhenItsJobIsCanceled(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{Lease: 300 * time.Millisecond})
	job, run, runCtx := w.started(t)
	_, err := run.Record(runCtx, apiary.DocumentOutcome{Document: "a", Chunks: 1})
	require.NoError(t, err)
	_, err = w.svc.Cancel(t.Context(), "acme", job.ID)
	require.NoError(t, err)
	select {
	case <-runCtx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the run went on after its job was canceled")
	}
	require.ErrorIs(t, context.Cause(runCtx), jobs.ErrJobEnded)
	require.NoError(t, run.Finish(runCtx))
	got := w.job(t, job.ID)
	require.Equal(t, apiary.JobCanceled, got.Status)
	require.Equal(t, 1, got.Counts.DocumentsDone)
}
