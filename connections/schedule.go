package connections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// Bounds of a schedule's interval.
const (
	MinScheduleEvery = 15 * time.Minute
	MaxScheduleEvery = 30 * 24 * time.Hour
)

// MaxScheduleSource bounds a schedule's source, encoded: it is kept in the
// connection's record, which every token refresh and scheduler pass reads
// and writes, and a record has a size limit of its store's.
const MaxScheduleSource = 256 << 10

// ScheduledSource is what each run of a schedule syncs: the source read
// through the connection and the webhook URL that gets each job's end. It
// is stored sealed under the account's key.
type ScheduledSource struct {
	Spec       connectors.Spec `json:"spec"`
	WebhookURL string          `json:"webhook_url,omitempty"`
}

const schedulePurpose = "schedule"

// SetSchedule makes account's connection id sync src every every, the
// first run one interval from now, replacing any schedule it had (its
// last job is kept, so a run still waits for it). The connection must be
// active; src must be a sync through it.
func (s *Service) SetSchedule(ctx context.Context, account apiary.AccountID, id string, every time.Duration, src ScheduledSource) (records.ConnectionSchedule, error) {
	if every < MinScheduleEvery || every > MaxScheduleEvery {
		return records.ConnectionSchedule{}, apiary.E(apiary.KindInvalid, "every must be from %s to %s, like \"6h\"", fmtEvery(MinScheduleEvery), fmtEvery(MaxScheduleEvery))
	}
	if src.Spec.Connection != id || !src.Spec.Sync {
		return records.ConnectionSchedule{}, apiary.E(apiary.KindInvalid, "a schedule syncs its own connection's source")
	}
	b, err := json.Marshal(src)
	if err != nil {
		return records.ConnectionSchedule{}, fmt.Errorf("connections: encode the schedule of %s: %w", id, err)
	}
	if len(b) > MaxScheduleSource {
		clear(b)
		return records.ConnectionSchedule{}, apiary.E(apiary.KindInvalid,
			"the schedule's source is over %d KiB, the most a schedule keeps; schedule its location (or all items) rather than a long list of items", MaxScheduleSource>>10)
	}
	sealed, err := encrypt.SealEnvelope(ctx, s.keys, account, encCtx(id, schedulePurpose), b)
	clear(b)
	if err != nil {
		return records.ConnectionSchedule{}, fmt.Errorf("connections: seal the schedule of %s: %w", id, err)
	}
	now := time.Now().UTC()
	c, err := s.recs.UpdateConnection(ctx, account, id, func(c *records.Connection) error {
		if err := usable(*c); err != nil {
			return apiary.E(apiary.KindConflict, "%s; only an active connection can be scheduled", err.Error())
		}
		sc := &records.ConnectionSchedule{Every: every, Source: sealed, NextRun: now.Add(every), CreatedAt: now}
		if c.Schedule != nil {
			sc.LastRun, sc.LastJob = c.Schedule.LastRun, c.Schedule.LastJob
		}
		c.Schedule, c.UpdatedAt = sc, now
		return nil
	})
	if err != nil {
		return records.ConnectionSchedule{}, err
	}
	return *c.Schedule, nil
}

// Schedule returns account's connection id's schedule and what it syncs;
// NotFound when it has none.
func (s *Service) Schedule(ctx context.Context, account apiary.AccountID, id string) (records.ConnectionSchedule, ScheduledSource, error) {
	c, err := s.recs.Connection(ctx, account, id)
	if err != nil {
		return records.ConnectionSchedule{}, ScheduledSource{}, err
	}
	if c.Schedule == nil {
		return records.ConnectionSchedule{}, ScheduledSource{}, errNoSchedule
	}
	src, err := s.openSchedule(ctx, c)
	return *c.Schedule, src, err
}

var errNoSchedule = apiary.E(apiary.KindNotFound, "the connection has no schedule; create one with PUT")

// DeleteSchedule removes account's connection id's schedule; NotFound
// when it has none. A job a run submitted goes on.
func (s *Service) DeleteSchedule(ctx context.Context, account apiary.AccountID, id string) error {
	_, err := s.recs.UpdateConnection(ctx, account, id, func(c *records.Connection) error {
		if c.Schedule == nil {
			return errNoSchedule
		}
		c.Schedule, c.UpdatedAt = nil, time.Now().UTC()
		return nil
	})
	return err
}

func (s *Service) openSchedule(ctx context.Context, c records.Connection) (ScheduledSource, error) {
	b, err := encrypt.OpenEnvelope(ctx, s.keys, c.Account, encCtx(c.ID, schedulePurpose), c.Schedule.Source)
	if err != nil {
		return ScheduledSource{}, fmt.Errorf("connections: open the schedule of %s: %w", c.ID, err)
	}
	defer clear(b)
	var src ScheduledSource
	if err := json.Unmarshal(b, &src); err != nil {
		return ScheduledSource{}, fmt.Errorf("connections: decode the schedule of %s: %w", c.ID, err)
	}
	return src, nil
}

func fmtEvery(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd (%s)", d/(24*time.Hour), d)
	}
	return d.String()
}

// ScheduleRecords is what the scheduler reads and writes of the record
// store (records.ConnectionStore and records.JobStore).
type ScheduleRecords interface {
	DueSchedules(ctx context.Context, now time.Time, limit int) ([]records.Connection, error)
	ClaimSchedule(ctx context.Context, account apiary.AccountID, id string, now time.Time) (records.Connection, bool, error)
	UpdateConnection(ctx context.Context, account apiary.AccountID, id string, fn func(*records.Connection) error) (records.Connection, error)
	Job(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error)
	PruneRevokedConnections(ctx context.Context, before time.Time) (int, error)
}

// Submitter submits jobs, and cancels one whose connection went while it
// was submitted (the job service, workers/jobs).
type Submitter interface {
	Submit(ctx context.Context, sub jobs.Submission) (apiary.Job, bool, error)
	Cancel(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error)
}

// SchedulerConfig tunes a Scheduler. The zero value of each field means
// its default.
type SchedulerConfig struct {
	// Interval is how often it looks for due schedules. Default 1 minute.
	Interval time.Duration
	// Batch bounds the schedules one pass claims. Default 100.
	Batch int
	// RevokedRetention is how long a revoked (disconnected) connection is
	// kept, answering with its status, before it is deleted. Default
	// DefaultRevokedRetention.
	RevokedRetention time.Duration
	// PruneEvery is how often a pass also deletes the revoked connections
	// past RevokedRetention. Default 1 hour.
	PruneEvery time.Duration
	// Logger gets each run submitted or skipped and what failed. Default:
	// silent.
	Logger *slog.Logger
}

func (c *SchedulerConfig) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.RevokedRetention <= 0 {
		c.RevokedRetention = DefaultRevokedRetention
	}
	if c.PruneEvery <= 0 {
		c.PruneEvery = time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Scheduler submits the sync jobs of due schedules. Several may run, in
// several processes: each run is claimed by compare-and-swap on the
// connection record (records.ClaimSchedule), so one of them submits it. A
// run whose previous job has not ended is skipped, and so is one of a
// connection that is not active.
//
// Every PruneEvery a pass also deletes the connections revoked more than
// RevokedRetention ago (every process may: a deletion is idempotent).
type Scheduler struct {
	cfg  SchedulerConfig
	svc  *Service
	recs ScheduleRecords
	sub  Submitter

	mu     sync.Mutex
	pruned time.Time // when revoked connections were last pruned
}

// DefaultRevokedRetention is how long a revoked connection is kept by
// default.
const DefaultRevokedRetention = 30 * 24 * time.Hour

// Scheduler returns a scheduler of s's connections that submits through sub.
func (s *Service) Scheduler(cfg SchedulerConfig, recs ScheduleRecords, sub Submitter) *Scheduler {
	cfg.setDefaults()
	return &Scheduler{cfg: cfg, svc: s, recs: recs, sub: sub}
}

// Run passes over the due schedules every interval until ctx ends.
func (sc *Scheduler) Run(ctx context.Context) {
	t := time.NewTicker(sc.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := sc.Tick(ctx, time.Now().UTC()); err != nil && ctx.Err() == nil {
			sc.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "schedules not run", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick claims the schedules due at now and submits their runs; it returns
// the jobs it submitted. A schedule that fails is logged and the others go
// on; the error is the listing's.
func (sc *Scheduler) Tick(ctx context.Context, now time.Time) ([]apiary.Job, error) {
	sc.prune(ctx, now)
	due, err := sc.recs.DueSchedules(ctx, now, sc.cfg.Batch)
	if err != nil {
		return nil, fmt.Errorf("connections: list due schedules: %w", err)
	}
	var out []apiary.Job
	for _, c := range due {
		job, err := sc.run(ctx, c.Account, c.ID, now)
		log := sc.cfg.Logger.With(slog.String("account", string(c.Account)), slog.String("connection", c.ID))
		switch {
		case err != nil:
			log.LogAttrs(ctx, slog.LevelWarn, "scheduled sync not submitted", slog.Any("err", err))
		case job.ID != "":
			log.LogAttrs(ctx, slog.LevelInfo, "scheduled sync submitted", slog.String("job_id", string(job.ID)))
			out = append(out, job)
		}
	}
	return out, nil
}

// prune deletes the connections revoked RevokedRetention before now, once
// every PruneEvery; a failure is logged and tried again at the next pass.
func (sc *Scheduler) prune(ctx context.Context, now time.Time) {
	sc.mu.Lock()
	due := sc.pruned.IsZero() || now.Sub(sc.pruned) >= sc.cfg.PruneEvery
	sc.mu.Unlock()
	if !due {
		return
	}
	n, err := sc.recs.PruneRevokedConnections(ctx, now.Add(-sc.cfg.RevokedRetention))
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		// Tried again at the next PruneEvery: what could not be read now
		// is unlikely to be readable a minute later.
		sc.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "revoked connections not all pruned", slog.Int("connections", n), slog.Any("err", err))
	}
	sc.mu.Lock()
	sc.pruned = now
	sc.mu.Unlock()
	if n > 0 {
		sc.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "revoked connections pruned", slog.Int("connections", n),
			slog.Duration("retention", sc.cfg.RevokedRetention))
	}
}

// run claims the due run of account's connection id and submits it; a
// zero job when another process claimed it or the run is skipped.
func (sc *Scheduler) run(ctx context.Context, account apiary.AccountID, id string, now time.Time) (apiary.Job, error) {
	c, ok, err := sc.recs.ClaimSchedule(ctx, account, id, now)
	if err != nil || !ok {
		return apiary.Job{}, err
	}
	if err := usable(c); err != nil {
		sc.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "scheduled sync skipped: the connection is not active",
			slog.String("account", string(account)), slog.String("connection", id), slog.String("status", string(c.Status)))
		return apiary.Job{}, nil
	}
	if prev := c.Schedule.LastJob; prev != "" {
		j, err := sc.recs.Job(ctx, account, prev)
		switch {
		case err == nil && !j.Status.Final():
			sc.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "scheduled sync skipped: the previous one has not ended",
				slog.String("account", string(account)), slog.String("connection", id), slog.String("job_id", string(prev)))
			return apiary.Job{}, nil
		case err != nil && !errors.Is(err, apiary.ErrNotFound):
			return apiary.Job{}, err
		}
	}
	src, err := sc.svc.openSchedule(ctx, c)
	if err != nil {
		return apiary.Job{}, err
	}
	src.Spec.Connection, src.Spec.Sync = id, true
	job, _, err := sc.sub.Submit(ctx, jobs.SourceSubmission(account, src.Spec, src.WebhookURL))
	if err != nil {
		return apiary.Job{}, err
	}
	ctx = context.WithoutCancel(ctx)
	gone := false
	_, err = sc.recs.UpdateConnection(ctx, account, id, func(c *records.Connection) error {
		if gone = usable(*c) != nil; gone || c.Schedule == nil {
			return records.ErrNoChange // disconnected, or the schedule removed, meanwhile
		}
		c.Schedule.LastJob = job.ID
		return nil
	})
	if gone || errors.Is(err, apiary.ErrNotFound) {
		// Disconnected (or deleted with its account) after the claim: the
		// disconnect canceled the jobs it saw, this one came after.
		if _, err := sc.sub.Cancel(ctx, account, job.ID); err != nil && !errors.Is(err, apiary.ErrConflict) && !errors.Is(err, apiary.ErrNotFound) {
			return apiary.Job{}, fmt.Errorf("connections: cancel the scheduled sync %s of a disconnected connection: %w", job.ID, err)
		}
		sc.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "scheduled sync canceled: the connection was disconnected meanwhile",
			slog.String("account", string(account)), slog.String("connection", id), slog.String("job_id", string(job.ID)))
		return apiary.Job{}, nil
	}
	return job, err
}
