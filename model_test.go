package apiary_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestJobStart(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	tests := []struct {
		name            string
		job             apiary.Job
		wantOK, started bool
		interrupted     int
	}{
		{"queued", apiary.Job{Status: apiary.JobQueued}, true, true, 0},
		{"released by a run that handed it back", apiary.Job{Status: apiary.JobRunning}, true, false, 0},
		{"held by a live run", apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &future}, false, false, 0},
		{"left by a run that died", apiary.Job{Status: apiary.JobRunning, Owner: "run_a", LeaseUntil: &past, Interrupted: 1}, true, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.job
			started, ok, busy := j.Start("run_b", now, time.Minute, 3)
			require.Equal(t, tt.wantOK, ok)
			if !ok {
				require.Equal(t, future, busy)
				require.Equal(t, tt.job, j, "a held job is left as it is")
				return
			}
			require.Equal(t, tt.started, started)
			require.Equal(t, apiary.JobRunning, j.Status)
			require.Equal(t, "run_b", j.Owner)
			require.Equal(t, now.Add(time.Minute), *j.LeaseUntil)
			require.Equal(t, tt.interrupted, j.Interrupted)
			require.Equal(t, 3, j.Attempts)
			j.Release()
			require.Empty(t, j.Owner)
			require.Nil(t, j.LeaseUntil)
		})
	}
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
