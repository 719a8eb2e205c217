package connections

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue/jetstream"
)

// scheduleWorld is the connection service and the job service on real
// parts: an embedded nats-server holding the records, the queue and the
// bus, a keyring and a staging area.
type scheduleWorld struct {
	svc    *Service
	recs   *records.Store
	jobs   *jobs.Service
	stager *upload.Stager
	keys   *keyring.Keyring
}

func newScheduleWorld(t *testing.T) *scheduleWorld {
	t.Helper()
	ctx := t.Context()
	nc, js := natstest.Connect(t)
	recs, err := records.Open(ctx, natskv.NewKVStore(js, natskv.Config{}))
	require.NoError(t, err)
	q, err := jetstream.New(ctx, jetstream.Config{Conn: nc, PollWait: 100 * time.Millisecond})
	require.NoError(t, err)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(t, err)
	keys, err := keyring.New(keyring.Config{Dir: filepath.Join(t.TempDir(), "keys"), RootKey: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	require.NoError(t, keys.CreateAccountKey(ctx, acc))
	blobs, err := local.OpenBlobs(t.TempDir())
	require.NoError(t, err)
	w := &scheduleWorld{recs: recs, stager: upload.NewStager(blobs, keys), keys: keys}
	w.jobs = jobs.New(jobs.Config{}, recs, q, bus, w.stager)
	w.svc, err = New(Config{}, recs, keys, bus)
	require.NoError(t, err)
	return w
}

// active records an active connection of acc, as a completed flow leaves it.
func (w *scheduleWorld) active(t *testing.T, id string) {
	t.Helper()
	now := time.Now().UTC()
	require.NoError(t, w.recs.CreateConnection(t.Context(), records.Connection{ID: id, Account: acc, Provider: "github",
		Status: records.ConnectionActive, CreatedAt: now, UpdatedAt: now}))
}

func (w *scheduleWorld) scheduler() *Scheduler {
	return w.svc.Scheduler(SchedulerConfig{}, w.recs, w.jobs)
}

func TestSetSchedule(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	w.active(t, "con_s")
	src := ScheduledSource{Spec: connectors.Spec{Provider: "github", Location: "canary-org/canary-repo", Items: []string{"canary-item"},
		Connection: "con_s", Sync: true}, WebhookURL: "https://hooks.example.com/canary"}

	for _, every := range []time.Duration{time.Minute, 14 * time.Minute, 31 * 24 * time.Hour} {
		_, err := w.svc.SetSchedule(ctx, acc, "con_s", every, src)
		require.ErrorIs(t, err, apiary.ErrInvalid, every.String())
	}
	other := src
	other.Spec.Connection = "con_other"
	_, err := w.svc.SetSchedule(ctx, acc, "con_s", time.Hour, other)
	require.ErrorIs(t, err, apiary.ErrInvalid)
	_, err = w.svc.SetSchedule(ctx, "acc_two", "con_s", time.Hour, src)
	require.ErrorIs(t, err, apiary.ErrNotFound, "another account's connection")

	before := time.Now().UTC()
	sc, err := w.svc.SetSchedule(ctx, acc, "con_s", 6*time.Hour, src)
	require.NoError(t, err)
	require.Equal(t, 6*time.Hour, sc.Every)
	require.False(t, sc.NextRun.Before(before.Add(6*time.Hour)), "the first run is one interval on")

	// The source is stored sealed: none of its names in the record.
	c, err := w.recs.Connection(ctx, acc, "con_s")
	require.NoError(t, err)
	require.NotNil(t, c.Schedule)
	for _, canary := range []string{"canary-org", "canary-repo", "canary-item", "hooks.example.com"} {
		require.NotContains(t, string(c.Schedule.Source), canary)
	}
	got, gotSrc, err := w.svc.Schedule(ctx, acc, "con_s")
	require.NoError(t, err)
	require.Equal(t, sc.NextRun, got.NextRun)
	require.Equal(t, src, gotSrc)
	_, _, err = w.svc.Schedule(ctx, "acc_two", "con_s")
	require.ErrorIs(t, err, apiary.ErrNotFound)

	require.NoError(t, w.svc.DeleteSchedule(ctx, acc, "con_s"))
	require.ErrorIs(t, w.svc.DeleteSchedule(ctx, acc, "con_s"), apiary.ErrNotFound)
	_, _, err = w.svc.Schedule(ctx, acc, "con_s")
	require.ErrorIs(t, err, apiary.ErrNotFound)

	// Disconnect removes the schedule; a revoked connection takes none.
	_, err = w.svc.SetSchedule(ctx, acc, "con_s", time.Hour, src)
	require.NoError(t, err)
	_, err = w.svc.Disconnect(ctx, acc, "con_s")
	require.NoError(t, err)
	c, err = w.recs.Connection(ctx, acc, "con_s")
	require.NoError(t, err)
	require.Nil(t, c.Schedule)
	_, err = w.svc.SetSchedule(ctx, acc, "con_s", time.Hour, src)
	require.ErrorIs(t, err, apiary.ErrConflict)
}

// TestScheduler: a due schedule submits exactly one sync job however many
// schedulers pass over it; while that job is unfinished the next run is
// skipped; once it ended the next run submits again.
func TestScheduler(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	w.active(t, "con_s")
	spec := connectors.Spec{Provider: "github", Location: "org/repo", Items: []string{"README.md"}, Connection: "con_s", Sync: true}
	sc, err := w.svc.SetSchedule(ctx, acc, "con_s", time.Hour, ScheduledSource{Spec: spec})
	require.NoError(t, err)

	submitted, err := w.scheduler().Tick(ctx, time.Now().UTC())
	require.NoError(t, err)
	require.Empty(t, submitted, "not due yet")

	// Three schedulers (as in three worker processes) at the due time.
	due := sc.NextRun
	var mu sync.Mutex
	var all []apiary.Job
	var wg sync.WaitGroup
	for range 3 {
		s := w.scheduler()
		wg.Go(func() {
			jobs, err := s.Tick(ctx, due)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			all = append(all, jobs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	require.Len(t, all, 1, "exactly one sync job per run")
	first, err := w.recs.Job(ctx, acc, all[0].ID)
	require.NoError(t, err)
	require.Equal(t, apiary.JobKindSource, first.Kind)
	require.Equal(t, "github", first.Source)
	require.Equal(t, "con_s", first.Connection)
	require.Equal(t, apiary.JobQueued, first.Status)
	docs, err := w.stager.Load(ctx, acc, first.ID)
	require.NoError(t, err)
	staged, err := connectors.SpecFrom(docs)
	require.NoError(t, err)
	require.Equal(t, spec, staged, "the job syncs the scheduled source, as POST /sync would")
	c, err := w.recs.Connection(ctx, acc, "con_s")
	require.NoError(t, err)
	require.Equal(t, first.ID, c.Schedule.LastJob)
	require.Equal(t, due.Add(time.Hour), c.Schedule.NextRun)

	// The next run comes while the first job is still queued: skipped.
	submitted, err = w.scheduler().Tick(ctx, due.Add(time.Hour))
	require.NoError(t, err)
	require.Empty(t, submitted, "the previous scheduled job is unfinished")
	c, err = w.recs.Connection(ctx, acc, "con_s")
	require.NoError(t, err)
	require.Equal(t, first.ID, c.Schedule.LastJob)
	require.Equal(t, due.Add(2*time.Hour), c.Schedule.NextRun, "a skipped run is not made up")

	// Once it ended, the next run submits.
	_, err = w.jobs.Cancel(ctx, acc, first.ID)
	require.NoError(t, err)
	submitted, err = w.scheduler().Tick(ctx, due.Add(2*time.Hour))
	require.NoError(t, err)
	require.Len(t, submitted, 1)
	require.NotEqual(t, first.ID, submitted[0].ID)

	// A connection that needs authorizing again syncs nothing.
	_, err = w.jobs.Cancel(ctx, acc, submitted[0].ID)
	require.NoError(t, err)
	_, err = w.recs.UpdateConnection(ctx, acc, "con_s", func(c *records.Connection) error {
		c.Status = records.ConnectionReauthRequired
		return nil
	})
	require.NoError(t, err)
	submitted, err = w.scheduler().Tick(ctx, due.Add(3*time.Hour))
	require.NoError(t, err)
	require.Empty(t, submitted)
}

// TestSchedulerRun: the loop submits a due run on its own.
func TestSchedulerRun(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	w.active(t, "con_s")
	_, err := w.svc.SetSchedule(ctx, acc, "con_s", time.Hour, ScheduledSource{Spec: connectors.Spec{Provider: "github", Connection: "con_s", Sync: true}})
	require.NoError(t, err)
	_, err = w.recs.UpdateConnection(ctx, acc, "con_s", func(c *records.Connection) error {
		c.Schedule.NextRun = time.Now().UTC().Add(-time.Second)
		return nil
	})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.svc.Scheduler(SchedulerConfig{Interval: 10 * time.Millisecond}, w.recs, w.jobs).Run(runCtx)
	}()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool {
		c, err := w.recs.Connection(ctx, acc, "con_s")
		return err == nil && c.Schedule.LastJob != ""
	}, 30*time.Second, 10*time.Millisecond)
}
