package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/storage/records"
)

// The scheduler a serve or worker process starts submits a due schedule's
// run as a sync job of the connection.
func TestSchedulerComponent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := serveConfig(t, t.TempDir(), "--schedule-interval", "1s")
	require.Equal(t, time.Second, cfg.Workers.ScheduleInterval)
	a, err := newApp(ctx, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer a.Close()
	_, _, err = api.Bootstrap(ctx, a.recs, a.keys, "")
	require.NoError(t, err)

	now := time.Now().UTC()
	acc := apiary.DefaultAccount
	require.NoError(t, a.recs.CreateConnection(ctx, records.Connection{ID: "con_sched", Account: acc, Provider: "notion",
		Status: records.ConnectionActive, CreatedAt: now, UpdatedAt: now}))
	conns, err := a.connections()
	require.NoError(t, err)
	_, err = conns.SetSchedule(ctx, acc, "con_sched", time.Hour, connections.ScheduledSource{
		Spec: connectors.Spec{Provider: "notion", Connection: "con_sched", Sync: true}})
	require.NoError(t, err)
	_, err = a.recs.UpdateConnection(ctx, acc, "con_sched", func(c *records.Connection) error {
		c.Schedule.NextRun = now.Add(-time.Second) // due
		return nil
	})
	require.NoError(t, err)

	c, err := a.schedulerComponent()
	require.NoError(t, err)
	a.lc.start(ctx, c)

	var job apiary.JobID
	require.Eventually(t, func() bool {
		conn, err := a.recs.Connection(ctx, acc, "con_sched")
		if err != nil || conn.Schedule == nil {
			return false
		}
		job = conn.Schedule.LastJob
		return job != ""
	}, 30*time.Second, 20*time.Millisecond)
	j, err := a.recs.Job(ctx, acc, job)
	require.NoError(t, err)
	require.Equal(t, apiary.JobKindSource, j.Kind)
	require.Equal(t, "con_sched", j.Connection)
	require.Equal(t, "notion", j.Source)
}
