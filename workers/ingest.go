package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Stage is where an upload's documents wait for their job.
type Stage interface {
	Load(ctx context.Context, account apiary.AccountID, job apiary.JobID) ([]apiary.Document, error)
	Drop(ctx context.Context, account apiary.AccountID, job apiary.JobID) error
}

// Ingester runs one document through extract, chunk, embed, encrypt, store.
type Ingester interface {
	Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error)
}

// IngestConfig configures the ingestion job handler.
type IngestConfig struct {
	// DocConcurrency bounds how many documents of one job run at once. Default 2.
	DocConcurrency int
	// ProgressEvery is the least time between two job.progress events of a job. Default 500 ms.
	ProgressEvery time.Duration
	// FinalTimeout bounds the final status write and event, which run even
	// when the job's context is canceled. Default 10 s.
	FinalTimeout time.Duration
	// Lease is how long a running job stays with its worker run without a
	// renewal (renewed every Lease/3). Use the queue's lease, so that after a
	// crash the job is free again when the queue delivers it again. Default 60 s.
	Lease  time.Duration
	Logger *slog.Logger
}

func (c *IngestConfig) setDefaults() {
	if c.DocConcurrency <= 0 {
		c.DocConcurrency = 2
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 500 * time.Millisecond
	}
	if c.FinalTimeout <= 0 {
		c.FinalTimeout = 10 * time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// IngestHandler processes ingestion jobs. It is idempotent: a redelivered job
// skips the documents it already finished, rewrites the others under the same
// chunk ids, and publishes the job's final event once.
type IngestHandler struct {
	cfg      IngestConfig
	records  JobRecords
	stage    Stage
	pipeline Ingester
	events   events.Bus
}

var _ Handler = (*IngestHandler)(nil)

// NewIngestHandler returns a handler over its dependencies.
func NewIngestHandler(cfg IngestConfig, recs JobRecords, stage Stage, p Ingester, bus events.Bus) *IngestHandler {
	cfg.setDefaults()
	return &IngestHandler{cfg: cfg, records: recs, stage: stage, pipeline: p, events: bus}
}

// Handle runs the job of delivery d.
func (h *IngestHandler) Handle(ctx context.Context, d *queue.Delivery) error {
	account, id := d.Msg.Account, d.Msg.Job
	job, err := h.records.Job(ctx, account, id)
	if errors.Is(err, apiary.ErrNotFound) {
		return apiary.Permanent(fmt.Errorf("workers: job %s not found", id))
	}
	if err != nil {
		return err
	}
	if job.Status.Final() {
		return h.finish(ctx, job)
	}
	// The outcomes stored by earlier runs: their documents are skipped and
	// the counts start from them, exact after any redelivery.
	done, tally, err := h.records.Outcomes(ctx, account, id)
	if err != nil {
		return err
	}

	owner := apiary.RandomID("run_")
	var started, gaveUp bool
	var busyUntil time.Time
	job, err = h.records.UpdateJob(ctx, account, id, func(j *apiary.Job) error {
		if j.Status.Final() {
			return records.ErrNoChange
		}
		now := time.Now().UTC()
		var ok bool
		if started, ok, busyUntil = j.Start(owner, now, h.cfg.Lease, d.Attempt); !ok {
			return errBusy
		}
		j.SetTally(tally)
		if gaveUp = j.Interrupted >= apiary.MaxInterrupted; gaveUp {
			j.Fail(apiary.ReasonInterrupted, now)
		}
		return nil
	})
	if errors.Is(err, errBusy) {
		// Another delivery of this job is running it: come back when its
		// lease would have run out.
		return apiary.RetryAfter(fmt.Errorf("workers: job %s is running on another worker", id), time.Until(busyUntil)+time.Second)
	}
	if err != nil {
		return err
	}
	if gaveUp {
		h.cfg.Logger.Warn("giving up on a job whose runs ended with their worker", "job", id, "account", account, "interrupted", job.Interrupted)
	}
	if job.Status.Final() {
		return h.finish(ctx, job)
	}
	ctx, stopHolding := h.hold(ctx, job, owner)
	defer stopHolding()
	if started {
		h.publish(ctx, job, apiary.EventJobStarted)
	}

	docs, err := h.stage.Load(ctx, account, id)
	if errors.Is(err, apiary.ErrNotFound) {
		return apiary.Permanent(errors.New("the job's staged documents are gone"))
	}
	if err != nil {
		return err
	}
	defer func() {
		for i := range docs {
			docs[i] = apiary.Document{} // drop the text as soon as we can
		}
	}()

	tally, err = h.ingestAll(ctx, job, docs, done, tally)
	if err != nil {
		return err
	}
	job, err = h.records.UpdateJob(ctx, account, id, func(j *apiary.Job) error {
		// A canceled job keeps its status; its counts become exact too.
		j.SetTally(tally)
		if !j.Status.Final() {
			j.Succeed(time.Now().UTC())
		}
		return nil
	})
	if err != nil {
		return err
	}
	return h.finish(ctx, job)
}

// errBusy ends a start attempt on a job another worker run holds.
var errBusy = errors.New("workers: job held by another run")

// errLostJob cancels a run whose job was taken over by another run.
var errLostJob = errors.New("workers: the job's lease passed to another run")

// hold renews owner's lease on job every Lease/3 until the returned stop is
// called; stop also releases the lease, so that a failed run's job is free
// for its retry at once. If another run has taken the job over, the
// returned context is canceled.
func (h *IngestHandler) hold(ctx context.Context, job apiary.Job, owner string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	renew := func(ctx context.Context, release bool) {
		_, err := h.records.UpdateJob(ctx, job.Account, job.ID, func(j *apiary.Job) error {
			if j.Owner != owner {
				return errLostJob
			}
			if release || j.Status.Final() {
				j.Release()
				return nil
			}
			until := time.Now().UTC().Add(h.cfg.Lease)
			j.LeaseUntil = &until
			return nil
		})
		if errors.Is(err, errLostJob) {
			cancel(errLostJob)
		} else if err != nil {
			h.cfg.Logger.Warn("renew job lease", "job", job.ID, "err", err)
		}
	}
	wg.Go(func() {
		t := time.NewTicker(h.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				renew(ctx, false)
			}
		}
	})
	return ctx, func() {
		close(done)
		wg.Wait()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.FinalTimeout)
		renew(rctx, true)
		rcancel()
		cancel(nil)
	}
}

// ingestAll runs the job's documents not in done, DocConcurrency at a time,
// storing each outcome on its own and adding it to tally, which it returns.
// At most every ProgressEvery it writes the counts to the job record and
// publishes a progress event. It stops early, without error, when the job is
// canceled; it returns the first transient error so that the job is retried.
func (h *IngestHandler) ingestAll(ctx context.Context, job apiary.Job, docs []apiary.Document, done map[apiary.DocumentID]bool, tally apiary.Tally) (apiary.Tally, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errCanceled := errors.New("job canceled")

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.cfg.DocConcurrency)
	var mu sync.Mutex // guards tally and lastProgress
	lastProgress := time.Time{}
	for i := range docs {
		if done[docs[i].ID] {
			continue
		}
		if gctx.Err() != nil {
			break
		}
		doc := docs[i]
		g.Go(func() error {
			rec, err := h.pipeline.Ingest(gctx, job, doc)
			o := apiary.DocumentOutcome{Document: doc.ID, Chunks: rec.Chunks}
			switch {
			case err == nil, errors.Is(err, apiary.ErrConflict):
				// Conflict: a newer version of the document is already stored.
			case apiary.IsPermanent(err):
				if o.Reason = apiary.Message(err); o.Reason == "" {
					o.Reason = "the document could not be processed"
				}
				o.Chunks = 0
			default:
				return err
			}
			stored, err := h.records.RecordOutcome(gctx, job.Account, job.ID, o)
			if err != nil {
				return err
			}
			mu.Lock()
			if stored {
				tally.Add(o)
			}
			now := time.Now()
			due := now.Sub(lastProgress) >= h.cfg.ProgressEvery
			if due {
				lastProgress = now
			}
			snap := tally
			snap.Sample = slices.Clone(tally.Sample)
			mu.Unlock()
			if !due {
				return nil
			}
			if canceled := h.progress(gctx, job, snap); canceled {
				cancel(errCanceled)
				return errCanceled
			}
			return nil
		})
	}
	err := g.Wait()
	mu.Lock()
	defer mu.Unlock()
	if errors.Is(err, errCanceled) || errors.Is(context.Cause(ctx), errCanceled) {
		return tally, nil
	}
	return tally, err
}

// progress writes t's counts to the job record, unless a later tally is
// already there, and publishes a progress event. It reports whether the
// job was canceled meanwhile. A failed write is logged: the next one, or
// the final one, carries the counts.
func (h *IngestHandler) progress(ctx context.Context, job apiary.Job, t apiary.Tally) (canceled bool) {
	updated, err := h.records.UpdateJob(ctx, job.Account, job.ID, func(j *apiary.Job) error {
		if j.Status.Final() || j.Counts.DocumentsDone+j.Counts.DocumentsFailed >= t.Done+t.Failed {
			return records.ErrNoChange
		}
		j.SetTally(t)
		j.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		h.cfg.Logger.Warn("write job progress", "job", job.ID, "err", err)
		return false
	}
	if updated.Status == apiary.JobCanceled {
		return true
	}
	h.publish(ctx, updated, apiary.EventJobProgress)
	return false
}

// finish publishes a final job's event unless that was already done, then
// drops its staged documents.
func (h *IngestHandler) finish(ctx context.Context, job apiary.Job) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.FinalTimeout)
	defer cancel()
	if !job.Notified {
		if err := h.events.Publish(ctx, finalEvent(job)); err != nil {
			return fmt.Errorf("workers: publish final event of job %s: %w", job.ID, err)
		}
		if _, err := h.records.UpdateJob(ctx, job.Account, job.ID, func(j *apiary.Job) error {
			if j.Notified {
				return records.ErrNoChange
			}
			j.Notified = true
			return nil
		}); err != nil {
			return err
		}
	}
	if err := h.stage.Drop(ctx, job.Account, job.ID); err != nil && !errors.Is(err, apiary.ErrNotFound) {
		h.cfg.Logger.Warn("drop staged documents", "job", job.ID, "err", err)
	}
	return nil
}

// GiveUp marks the job of d failed with err's reason. Use it as the pool's
// OnGiveUp: it runs once, before the delivery is terminated.
func (h *IngestHandler) GiveUp(ctx context.Context, d *queue.Delivery, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.FinalTimeout)
	defer cancel()
	// The documents that finished keep their outcomes, and the counts say so.
	_, tally, terr := h.records.Outcomes(ctx, d.Msg.Account, d.Msg.Job)
	if terr != nil {
		h.cfg.Logger.Warn("count document outcomes", "job", d.Msg.Job, "err", terr)
	}
	heldElsewhere := false
	job, err := h.records.UpdateJob(ctx, d.Msg.Account, d.Msg.Job, func(j *apiary.Job) error {
		if j.Status.Final() {
			return records.ErrNoChange
		}
		now := time.Now().UTC()
		if j.Owner != "" && j.LeaseUntil != nil && j.LeaseUntil.After(now) {
			// This delivery gives up, but another run holds the job and
			// will finish it (or free it when it dies).
			heldElsewhere = true
			return records.ErrNoChange
		}
		if terr == nil {
			j.SetTally(tally)
		}
		j.Fail(failureReason(cause, d.Attempt), now)
		return nil
	})
	if err != nil {
		h.cfg.Logger.Error("mark job failed", "job", d.Msg.Job, "account", d.Msg.Account, "err", err)
		return
	}
	if heldElsewhere {
		h.cfg.Logger.Info("a duplicate delivery gave up; the job runs elsewhere", "job", d.Msg.Job, "account", d.Msg.Account)
		return
	}
	if err := h.finish(ctx, job); err != nil {
		h.cfg.Logger.Error("finish failed job", "job", job.ID, "err", err)
	}
}

// failureReason is what a failed job says about its cause: the classified
// message when there is one, otherwise a generic line. The causes below a
// classified message (SDK errors, addresses, ARNs) are logged, not shown.
func failureReason(err error, attempts int) string {
	msg := apiary.Message(err)
	if msg == "" {
		msg = "internal error"
	}
	return fmt.Sprintf("failed after %d attempt(s): %s", attempts, msg)
}

func finalEvent(job apiary.Job) apiary.Event {
	return apiary.NewJobEvent(job, job.Status.FinalEvent())
}

// publish sends a non-final event; losing one is logged, not fatal.
func (h *IngestHandler) publish(ctx context.Context, job apiary.Job, typ apiary.EventType) {
	if err := h.events.Publish(ctx, apiary.NewJobEvent(job, typ)); err != nil {
		h.cfg.Logger.Warn("publish event", "job", job.ID, "type", typ, "err", err)
	}
}
