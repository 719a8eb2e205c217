package main

import (
	"context"

	"github.com/apiaryhq/apiary/connections"
)

// schedulerComponent submits the runs of connection schedules as they come
// due, every --schedule-interval. Each worker process runs one; a run is
// claimed on the connection record, so one of them submits it. Hourly it
// also deletes the connections revoked over
// --revoked-connection-retention ago.
func (a *app) schedulerComponent() (component, error) {
	conns, err := a.connections()
	if err != nil {
		return component{}, err
	}
	sc := conns.Scheduler(connections.SchedulerConfig{
		Interval:         a.cfg.Workers.ScheduleInterval,
		RevokedRetention: a.cfg.Workers.RevokedConnectionRetention,
		Logger:           a.log.With("component", "scheduler"),
	}, a.recs, a.jobService())
	return component{name: "scheduler", run: func(ctx context.Context) error { sc.Run(ctx); return nil }}, nil
}
