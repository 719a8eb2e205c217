package workers

import (
	"context"
	"log/slog"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/queue"
)

// SweeperConfig configures the sweeper.
type SweeperConfig struct {
	// Every is the time between two sweeps. Default 1 min.
	Every time.Duration
	// Grace is how long a job may sit queued without its queue message before
	// the sweeper queues it. Default 1 min: far longer than the API takes
	// between writing the job and queuing it.
	Grace time.Duration
	// Batch bounds the jobs queued by one sweep. Default 500.
	Batch  int
	Logger *slog.Logger
}

func (c *SweeperConfig) setDefaults() {
	if c.Every <= 0 {
		c.Every = time.Minute
	}
	if c.Grace <= 0 {
		c.Grace = time.Minute
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Sweeper keeps invariant 1 — every job reaches a final state — when the API
// stops between writing a job and putting it on the queue: it finds queued
// jobs that never reached the queue and queues them.
type Sweeper struct {
	cfg     SweeperConfig
	records SweepRecords
	q       queue.Queue
}

// NewSweeper returns a sweeper over recs and q.
func NewSweeper(cfg SweeperConfig, recs SweepRecords, q queue.Queue) *Sweeper {
	cfg.setDefaults()
	return &Sweeper{cfg: cfg, records: recs, q: q}
}

// Run sweeps every cfg.Every until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	for {
		if n, err := s.Sweep(ctx); err != nil {
			s.cfg.Logger.Warn("sweep for unqueued jobs", "err", err)
		} else if n > 0 {
			s.cfg.Logger.Info("queued jobs that had missed the queue", "jobs", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep queues the jobs that missed the queue and returns how many it queued.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	jobs, err := s.records.UnqueuedJobs(ctx, time.Now().Add(-s.cfg.Grace), s.cfg.Batch)
	if err != nil {
		return 0, err
	}
	if len(jobs) == 0 {
		return 0, nil
	}
	msgs := make([]apiary.JobMessage, len(jobs))
	for i, j := range jobs {
		msgs[i] = apiary.JobMessage{Account: j.Account, Job: j.ID}
	}
	if err := enqueueAll(ctx, s.q, msgs); err != nil {
		return 0, err
	}
	n := 0
	for _, j := range jobs {
		if _, err := s.records.UpdateJob(ctx, j.Account, j.ID, func(j *apiary.Job) error {
			if j.Enqueued || j.Status != apiary.JobQueued {
				return records.ErrNoChange
			}
			j.Enqueued = true
			return nil
		}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// enqueueAll puts msgs on q, in batches where the queue takes them.
func enqueueAll(ctx context.Context, q queue.Queue, msgs []apiary.JobMessage) error {
	if b, ok := q.(queue.BatchEnqueuer); ok {
		return b.EnqueueBatch(ctx, msgs)
	}
	for _, m := range msgs {
		if err := q.Enqueue(ctx, m); err != nil {
			return err
		}
	}
	return nil
}
