package apiary_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

// TestJobTransitions: every transition of a job record, from a given
// record, gives the wanted record and says whether it changed anything.
func TestJobTransitions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	past, future, later := now.Add(-time.Second), now.Add(time.Second), now.Add(time.Minute)
	tally := apiary.Tally{Done: 2, Failed: 1, Chunks: 7, Sample: []apiary.DocumentError{{DocumentID: "x", Reason: "bad"}}}
	counted := apiary.Counts{DocumentsTotal: 4, DocumentsDone: 2, DocumentsFailed: 1, Chunks: 7}
	start := func(j *apiary.Job) bool {
		_, ok, _ := j.Start("run_b", now, time.Minute, 3)
		return ok
	}
	tests := []struct {
		name    string
		from    apiary.Job
		do      func(*apiary.Job) bool
		changed bool
		want    apiary.Job
	}{
		{"start a queued job", apiary.Job{Status: apiary.JobQueued}, start, true,
			apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &later, Attempts: 3, UpdatedAt: now, StartedAt: &now}},
		{"start a job a run handed back", apiary.Job{Status: apiary.JobRunning, Attempts: 5, StartedAt: &past}, start, true,
			apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &later, Attempts: 6, UpdatedAt: now, StartedAt: &past}},
		{"start a job a live run holds", apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future}, start, false,
			apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future}},
		{"start a job whose run died: interrupted", apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &past, Interrupted: 1}, start, true,
			apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &later, Attempts: 3, Interrupted: 2, UpdatedAt: now, StartedAt: &now}},

		{"renew own lease", apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &future},
			func(j *apiary.Job) bool { return j.Renew("run_b", now, time.Minute) }, true,
			apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &later}},
		{"renew a lease taken over", apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future},
			func(j *apiary.Job) bool { return j.Renew("run_b", now, time.Minute) }, false,
			apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future}},
		{"renew the lease of a canceled job: released", apiary.Job{Status: apiary.JobCanceled, Owner: "run_b", LeaseUntil: &future},
			func(j *apiary.Job) bool { return j.Renew("run_b", now, time.Minute) }, true,
			apiary.Job{Status: apiary.JobCanceled}},
		{"release own lease", apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &future},
			func(j *apiary.Job) bool { return j.Release("run_b") }, true,
			apiary.Job{Status: apiary.JobRunning}},
		{"release another run's lease", apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future},
			func(j *apiary.Job) bool { return j.Release("run_b") }, false,
			apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future}},

		{"record outcomes", apiary.Job{Status: apiary.JobRunning, Counts: apiary.Counts{DocumentsTotal: 4}},
			func(j *apiary.Job) bool { return j.Progress(tally, now) }, true,
			apiary.Job{Status: apiary.JobRunning, Counts: counted, Errors: tally.Sample, UpdatedAt: now}},
		{"record outcomes behind a later tally", apiary.Job{Status: apiary.JobRunning, Counts: apiary.Counts{DocumentsTotal: 4, DocumentsDone: 3}},
			func(j *apiary.Job) bool { return j.Progress(tally, now) }, false,
			apiary.Job{Status: apiary.JobRunning, Counts: apiary.Counts{DocumentsTotal: 4, DocumentsDone: 3}}},
		{"record outcomes of a canceled job", apiary.Job{Status: apiary.JobCanceled, Counts: apiary.Counts{DocumentsTotal: 4}},
			func(j *apiary.Job) bool { return j.Progress(tally, now) }, false,
			apiary.Job{Status: apiary.JobCanceled, Counts: apiary.Counts{DocumentsTotal: 4}}},

		{"complete a run", apiary.Job{Status: apiary.JobRunning, Owner: "run_b", Counts: apiary.Counts{DocumentsTotal: 4}},
			func(j *apiary.Job) bool { j.Complete(tally, now); return true }, true,
			apiary.Job{Status: apiary.JobSucceeded, Owner: "run_b", Counts: counted, Errors: tally.Sample, UpdatedAt: now, FinishedAt: &now}},
		{"complete a run whose documents all failed", apiary.Job{Status: apiary.JobRunning, Owner: "run_b", Counts: apiary.Counts{DocumentsTotal: 1}},
			func(j *apiary.Job) bool { j.Complete(apiary.Tally{Failed: 1}, now); return true }, true,
			apiary.Job{Status: apiary.JobFailed, Error: "all 1 documents failed; see errors", Counts: apiary.Counts{DocumentsTotal: 1, DocumentsFailed: 1}, UpdatedAt: now, FinishedAt: &now}},
		{"complete a run of a canceled job: counts only", apiary.Job{Status: apiary.JobCanceled, Counts: apiary.Counts{DocumentsTotal: 4}},
			func(j *apiary.Job) bool { j.Complete(tally, now); return true }, true,
			apiary.Job{Status: apiary.JobCanceled, Counts: counted, Errors: tally.Sample}},

		{"finish", apiary.Job{Status: apiary.JobQueued},
			func(j *apiary.Job) bool { return j.Finish(apiary.JobFailed, "could not be queued", now) }, true,
			apiary.Job{Status: apiary.JobFailed, Error: "could not be queued", UpdatedAt: now, FinishedAt: &now}},
		{"finish a final job", apiary.Job{Status: apiary.JobSucceeded},
			func(j *apiary.Job) bool { return j.Finish(apiary.JobCanceled, "duplicate", now) }, false,
			apiary.Job{Status: apiary.JobSucceeded}},
		{"finish in a status that is not final", apiary.Job{Status: apiary.JobQueued},
			func(j *apiary.Job) bool { return j.Finish(apiary.JobRunning, "", now) }, false,
			apiary.Job{Status: apiary.JobQueued}},
		{"cancel keeps the running lease", apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &future},
			func(j *apiary.Job) bool { return j.Cancel(now) == nil }, true,
			apiary.Job{Status: apiary.JobCanceled, Error: apiary.ReasonCanceled, Owner: "run_b", LeaseUntil: &future, UpdatedAt: now, FinishedAt: &now}},
		{"cancel a final job", apiary.Job{Status: apiary.JobFailed},
			func(j *apiary.Job) bool { return j.Cancel(now) == nil }, false,
			apiary.Job{Status: apiary.JobFailed}},
		{"fail lets go of the lease", apiary.Job{Status: apiary.JobRunning, Owner: "run_b", LeaseUntil: &future},
			func(j *apiary.Job) bool { j.Fail("boom", now); return true }, true,
			apiary.Job{Status: apiary.JobFailed, Error: "boom", UpdatedAt: now, FinishedAt: &now}},

		{"mark enqueued", apiary.Job{Status: apiary.JobQueued}, (*apiary.Job).MarkEnqueued, true,
			apiary.Job{Status: apiary.JobQueued, Enqueued: true}},
		{"mark enqueued twice", apiary.Job{Status: apiary.JobQueued, Enqueued: true}, (*apiary.Job).MarkEnqueued, false,
			apiary.Job{Status: apiary.JobQueued, Enqueued: true}},
		{"mark enqueued a job already running", apiary.Job{Status: apiary.JobRunning}, (*apiary.Job).MarkEnqueued, false,
			apiary.Job{Status: apiary.JobRunning}},
		{"mark notified", apiary.Job{Status: apiary.JobSucceeded}, (*apiary.Job).MarkNotified, true,
			apiary.Job{Status: apiary.JobSucceeded, Notified: true}},
		{"mark notified twice", apiary.Job{Status: apiary.JobSucceeded, Notified: true}, (*apiary.Job).MarkNotified, false,
			apiary.Job{Status: apiary.JobSucceeded, Notified: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := tt.from
			changed := tt.do(&j)
			require.Equal(t, tt.changed, changed)
			if diff := cmp.Diff(tt.want, j); diff != "" {
				t.Errorf("job (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a start refused says until when", func(t *testing.T) {
		t.Parallel()
		j := apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future}
		_, ok, busy := j.Start("run_b", now, time.Minute, 1)
		require.False(t, ok)
		require.Equal(t, future, busy)
		require.True(t, j.Leased(now))
		require.False(t, j.Leased(future))
	})
	t.Run("a cancel refused says why", func(t *testing.T) {
		t.Parallel()
		j := apiary.Job{Status: apiary.JobFailed}
		err := j.Cancel(now)
		require.ErrorIs(t, err, apiary.ErrConflict)
		require.Equal(t, "job already failed", apiary.Message(err))
	})
}

func TestJobMessageKind(t *testing.T) {
	t.Parallel()
	j := apiary.Job{ID: "job_1", Account: "acme"}
	require.Equal(t, apiary.JobMessage{Account: "acme", Job: "job_1"}, j.Message())
	require.Equal(t, apiary.JobKindIngest, j.Message().JobKind(), "a record from before kinds is an ingest job")
	j.Kind = "sync"
	require.Equal(t, apiary.JobKind("sync"), j.Message().JobKind())
}

func TestJobTallyAndEnd(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	var tally apiary.Tally
	for i := range 15 {
		tally.Add(apiary.DocumentOutcome{Document: apiary.DocumentID(fmt.Sprint(i)), Reason: "bad"})
	}
	tally.Add(apiary.DocumentOutcome{Document: "ok", Chunks: 3})
	require.Len(t, tally.Sample, apiary.MaxErrorSample)

	j := apiary.Job{Status: apiary.JobRunning, Counts: apiary.Counts{DocumentsTotal: 16}}
	j.SetTally(tally)
	require.Equal(t, apiary.Counts{DocumentsTotal: 16, DocumentsDone: 1, DocumentsFailed: 15, Chunks: 3}, j.Counts)
	j.Succeed(now)
	require.Equal(t, apiary.JobSucceeded, j.Status, "some documents succeeded")
	require.Equal(t, apiary.EventJobSucceeded, j.Status.FinalEvent())

	all := apiary.Job{Status: apiary.JobRunning, Owner: "run_a", Counts: apiary.Counts{DocumentsTotal: 2, DocumentsFailed: 2}}
	all.Succeed(now)
	require.Equal(t, apiary.JobFailed, all.Status, "every document failed")
	require.Equal(t, "all 2 documents failed; see errors", all.Error)
	require.Empty(t, all.Owner)
	require.Equal(t, &now, all.FinishedAt)

	ev := apiary.NewJobEvent(apiary.Job{ID: "job_x", Status: apiary.JobFailed, Errors: make([]apiary.DocumentError, 50)}, apiary.EventJobFailed)
	require.Len(t, ev.Errors, apiary.MaxErrorSample, "an event carries a bounded sample")
	require.Equal(t, apiary.FinalEventID("job_x"), ev.ID)
	require.True(t, ev.Type.Final())
	require.False(t, apiary.EventJobProgress.Final())
	require.Empty(t, apiary.JobRunning.FinalEvent())
}
