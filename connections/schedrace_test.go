package connections

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// disconnectingSubmitter disconnects the connection just before it
// submits, as a DELETE /v1/connections/{id} landing between a scheduler's
// claim of a run and its submission would.
type disconnectingSubmitter struct {
	w  *scheduleWorld
	id string
}

func (d disconnectingSubmitter) Submit(ctx context.Context, sub jobs.Submission) (apiary.Job, bool, error) {
	if _, err := d.w.svc.Disconnect(ctx, acc, d.id); err != nil {
		return apiary.Job{}, false, err
	}
	return d.w.jobs.Submit(ctx, sub)
}

func (d disconnectingSubmitter) Cancel(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error) {
	return d.w.jobs.Cancel(ctx, account, id)
}

// A run claimed before a disconnect and submitted after it does not leave
// a queued job reading with a connection that has no tokens: the
// disconnect canceled the jobs it saw, and the scheduler cancels the one
// it submitted once it sees the connection gone.
func TestScheduledRunRacingADisconnect(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	w.active(t, "con_r")
	spec := connectors.Spec{Provider: "github", Location: "org/repo", Connection: "con_r", Sync: true}
	sc, err := w.svc.SetSchedule(ctx, acc, "con_r", time.Hour, ScheduledSource{Spec: spec})
	require.NoError(t, err)

	s := w.svc.Scheduler(SchedulerConfig{}, w.recs, disconnectingSubmitter{w: w, id: "con_r"})
	submitted, err := s.Tick(ctx, sc.NextRun)
	require.NoError(t, err)
	require.Empty(t, submitted, "no run of a disconnected connection is reported submitted")
	all, _, err := w.recs.Jobs(ctx, acc, records.JobFilter{})
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, apiary.JobCanceled, all[0].Status, "the job submitted after the disconnect is canceled")
}
