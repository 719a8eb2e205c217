package jobs_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// endedLog records the jobs the service says ended.
type endedLog struct {
	mu   sync.Mutex
	jobs []apiary.JobID
}

func (l *endedLog) ended(_ context.Context, j apiary.Job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.jobs = append(l.jobs, j.ID)
}

func (l *endedLog) has(id apiary.JobID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, j := range l.jobs {
		if j == id {
			return true
		}
	}
	return false
}

// A submission with ephemeral credentials deposits them with the recorded
// job, holder and all, before the job is queued; the job service tells
// Ended of every job that ends, by cancel or by its run.
func TestSubmitDepositsAndEndedIsTold(t *testing.T) {
	t.Parallel()
	var log endedLog
	w := newWorld(t, jobs.Config{Ended: log.ended})
	var deposited apiary.Job
	sub := jobs.Submission{
		Account: "acme", Source: "s3", Holder: "hld_a", IdempotencyKey: "k", RequestHash: "h",
		Documents: []apiary.Document{{ID: "a", Text: "alpha"}},
		Deposit: func(j apiary.Job) error {
			deposited = j
			return nil
		},
	}
	job, _, err := w.svc.Submit(t.Context(), sub)
	require.NoError(t, err)
	require.Equal(t, job.ID, deposited.ID)
	require.Equal(t, "hld_a", deposited.Holder)
	require.Equal(t, "hld_a", w.job(t, job.ID).Holder, "the record names the holder")
	require.False(t, log.has(job.ID))

	deposited = apiary.Job{}
	again, replayed, err := w.svc.Submit(t.Context(), sub)
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, job.ID, again.ID)
	require.Empty(t, deposited.ID, "a replay deposits nothing")

	_, err = w.svc.Cancel(t.Context(), "acme", job.ID)
	require.NoError(t, err)
	require.True(t, log.has(job.ID), "a canceled job ended")

	_, run, ctx := w.started(t)
	require.NoError(t, run.Finish(ctx))
	require.True(t, log.has(run.Job().ID), "a finished job ended")
}

// A deposit that is refused (custody full) abandons the job and frees its
// Idempotency-Key, so that the client's retry is a fresh attempt.
func TestSubmitWithARefusedDeposit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, jobs.Config{})
	full := apiary.E(apiary.KindRateLimited, "too many tokens held")
	sub := jobs.Submission{
		Account: "acme", Source: "s3", Holder: "hld_a", IdempotencyKey: "k", RequestHash: "h",
		Documents: []apiary.Document{{ID: "a", Text: "alpha"}},
		Deposit:   func(apiary.Job) error { return full },
	}
	refused, _, err := w.svc.Submit(t.Context(), sub)
	require.ErrorIs(t, err, full)
	require.Equal(t, apiary.JobCanceled, w.job(t, refused.ID).Status)
	require.Empty(t, w.received(t), "nothing was queued")

	sub.Deposit = func(apiary.Job) error { return nil }
	retried, replayed, err := w.svc.Submit(t.Context(), sub)
	require.NoError(t, err)
	require.False(t, replayed)
	require.NotEqual(t, refused.ID, retried.ID)
}
