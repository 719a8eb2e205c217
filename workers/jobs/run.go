package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
)

// ErrLostJob is the cause of a run's context when another run took its job
// over (this run's lease ran out while it was still going).
var ErrLostJob = errors.New("jobs: the job's lease passed to another run")

// ErrJobEnded is the cause of a run's context when its job became final
// while it ran (canceled through the API): the run should stop and Finish.
var ErrJobEnded = errors.New("jobs: the job ended while it ran")

// Run is one run of a job: it holds the job record's lease from Start to
// Release, records the outcomes of the job's documents and finishes it.
type Run struct {
	s     *Service
	job   apiary.Job
	owner string
	done  map[apiary.DocumentID]bool
	stop  func() // ends the lease renewals and releases the lease
	once  sync.Once

	mu           sync.Mutex // guards tally and lastProgress
	tally        apiary.Tally
	lastProgress time.Time
}

// Start begins a run of account's job id for the attempt-th delivery of
// its message. It returns a nil Run, and nothing is left to do, when the
// job is final (it was finished before, or it is given up now because
// apiary.MaxInterrupted runs ended with their process): its end is
// announced, unless that was done, and its staged documents dropped; the
// error says whether that went through. A job whose record is gone gives a
// permanent error; a job another run holds, a retryable one whose delay
// lasts until that run's lease would end.
//
// Otherwise the run holds the job's lease, renewed every Lease/3 until
// Release, and publishes job.started when the job was queued. The returned
// context ends with Release, or with cause ErrLostJob when another run
// takes the job over. The caller must call Release.
func (s *Service) Start(ctx context.Context, account apiary.AccountID, id apiary.JobID, attempt int) (*Run, context.Context, error) {
	job, err := s.records.Job(ctx, account, id)
	if errors.Is(err, apiary.ErrNotFound) {
		return nil, ctx, apiary.Permanent(fmt.Errorf("jobs: job %s not found", id))
	}
	if err != nil {
		return nil, ctx, err
	}
	if job.Status.Final() {
		return nil, ctx, s.conclude(ctx, job)
	}
	// The outcomes stored by earlier runs: their documents are skipped and
	// the counts start from them, exact after any redelivery.
	done, tally, err := s.records.Outcomes(ctx, account, id)
	if err != nil {
		return nil, ctx, err
	}

	owner := apiary.RandomID("run_")
	var started, busy, gaveUp bool
	var busyUntil time.Time
	job, _, err = s.update(ctx, job, func(j *apiary.Job) bool {
		busy, gaveUp = false, false
		if j.Status.Final() {
			return false
		}
		now := time.Now().UTC()
		var ok bool
		if started, ok, busyUntil = j.Start(owner, now, s.cfg.Lease, attempt); !ok {
			busy = true
			return false
		}
		j.SetTally(tally)
		if gaveUp = j.Interrupted >= apiary.MaxInterrupted; gaveUp {
			j.Fail(apiary.ReasonInterrupted, now)
		}
		return true
	})
	switch {
	case err != nil:
		return nil, ctx, err
	case busy:
		// Another delivery of this job is running it: come back when its
		// lease would have run out.
		return nil, ctx, apiary.RetryAfter(fmt.Errorf("jobs: job %s is running on another worker", id), time.Until(busyUntil)+time.Second)
	case gaveUp:
		s.cfg.Logger.WarnContext(ctx, "giving up on a job whose runs ended with their worker", "account", account, "job_id", id, "interrupted", job.Interrupted)
	}
	if job.Status.Final() {
		return nil, ctx, s.conclude(ctx, job)
	}
	r := &Run{s: s, job: job, owner: owner, done: done, tally: tally}
	ctx = r.hold(ctx)
	if started {
		s.publish(ctx, job, apiary.EventJobStarted)
	}
	return r, ctx, nil
}

// Job is the job's record as the run started it.
func (r *Run) Job() apiary.Job { return r.job }

// Done reports whether document id's outcome was recorded by an earlier
// run: it is skipped.
func (r *Run) Done(id apiary.DocumentID) bool { return r.done[id] }

// hold renews the run's lease every Lease/3 until Release; the returned
// context is canceled when another run has taken the job over.
func (r *Run) hold(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	write := func(ctx context.Context, fn func(*apiary.Job) bool) (final bool) {
		job, changed, err := r.s.update(ctx, r.job, fn)
		switch {
		case err != nil:
			r.s.warn(ctx, "could not renew job lease", r.job, err)
		case !changed:
			cancel(ErrLostJob)
		}
		return changed && job.Status.Final()
	}
	renew := func(j *apiary.Job) bool { return j.Renew(r.owner, time.Now().UTC(), r.s.cfg.Lease) }
	release := func(j *apiary.Job) bool { return j.Release(r.owner) }
	wg.Go(func() {
		t := time.NewTicker(r.s.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if write(ctx, renew) {
					// Renew let the lease go: nothing runs a final job.
					cancel(ErrJobEnded)
					return
				}
			}
		}
	})
	r.stop = func() {
		close(stopped)
		wg.Wait()
		rctx, rcancel := r.s.finalCtx(ctx)
		write(rctx, release)
		rcancel()
		cancel(nil)
	}
	return ctx
}

// Release ends the run: the lease renewals stop and the lease is let go,
// so that the job's next run, if it needs one, starts at once and is not
// counted as interrupted. It runs even when the run's context is canceled;
// calls after the first do nothing.
func (r *Run) Release() { r.once.Do(r.stop) }

// Record stores how one document of the job ended; an outcome an earlier
// run stored stands. At most every ProgressEvery it also writes the counts
// so far to the job record and publishes job.progress. It reports whether
// the job became final meanwhile (canceled): the run should stop. A failed
// progress write is logged: the next one, or the final one, carries the
// counts.
func (r *Run) Record(ctx context.Context, o apiary.DocumentOutcome) (stop bool, err error) {
	stored, err := r.s.records.RecordOutcome(ctx, r.job.Account, r.job.ID, o)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	if stored {
		r.tally.Add(o)
	}
	now := time.Now()
	due := now.Sub(r.lastProgress) >= r.s.cfg.ProgressEvery
	if due {
		r.lastProgress = now
	}
	t := r.tally
	t.Sample = slices.Clone(r.tally.Sample)
	r.mu.Unlock()
	if !due {
		return false, nil
	}
	job, changed, err := r.s.update(ctx, r.job, func(j *apiary.Job) bool { return j.Progress(t, time.Now().UTC()) })
	if err != nil {
		r.s.warn(ctx, "could not write job progress", r.job, err)
		return false, nil
	}
	if job.Status.Final() {
		return true, nil
	}
	if changed {
		r.s.publish(ctx, job, apiary.EventJobProgress)
	}
	return false, nil
}

// Finish ends a run that went through all the job's documents: the record
// gets the exact counts and, unless the job was canceled meanwhile, its
// final status (apiary.Job.Complete); then its end is announced and its
// staged documents dropped. It runs even when the run's context has ended
// (ErrJobEnded), under its own short timeout.
func (r *Run) Finish(ctx context.Context) error {
	_, err := r.Complete(ctx)
	return err
}

// Complete is Finish that also returns the job's record as it ended, so
// that a handler can act on its final status.
func (r *Run) Complete(ctx context.Context) (apiary.Job, error) {
	ctx, cancel := r.s.finalCtx(ctx)
	defer cancel()
	r.mu.Lock()
	t := r.tally
	r.mu.Unlock()
	job, _, err := r.s.update(ctx, r.job, func(j *apiary.Job) bool {
		j.Complete(t, time.Now().UTC())
		return true
	})
	if err != nil {
		return job, err
	}
	return job, r.s.conclude(ctx, job)
}

// Expect records how many documents the job goes through, for a job whose
// run learns it (apiary.Job.Expect), and publishes job.progress when that
// changed the record. It reports whether the job became final meanwhile
// (canceled): the run should stop.
func (r *Run) Expect(ctx context.Context, total int) (stop bool, err error) {
	job, changed, err := r.s.update(ctx, r.job, func(j *apiary.Job) bool { return j.Expect(total, time.Now().UTC()) })
	if err != nil {
		return false, err
	}
	if job.Status.Final() {
		return true, nil
	}
	if changed {
		r.s.publish(ctx, job, apiary.EventJobProgress)
	}
	return false, nil
}
