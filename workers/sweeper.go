package workers

import (
	"context"
	"log/slog"
	"time"

	"github.com/apiaryhq/apiary/workers/jobs"
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
// stops between writing a job and putting it on the queue: every Every it
// has the job service queue the jobs that never reached the queue.
type Sweeper struct {
	cfg  SweeperConfig
	jobs *jobs.Service
}

// NewSweeper returns a sweeper over svc.
func NewSweeper(cfg SweeperConfig, svc *jobs.Service) *Sweeper {
	cfg.setDefaults()
	return &Sweeper{cfg: cfg, jobs: svc}
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

// Sweep queues the jobs that missed the queue for longer than Grace, at most
// Batch of them, and returns how many it queued.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	return s.jobs.Sweep(ctx, time.Now().Add(-s.cfg.Grace), s.cfg.Batch)
}
