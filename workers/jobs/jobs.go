package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// Records is what the service needs of the record store
// (storage/records).
type Records interface {
	Job(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error)
	CreateJob(ctx context.Context, j apiary.Job) error
	// UpdateJob applies fn to the current record and stores the result
	// with a compare-and-swap; fn returning records.ErrNoChange stores
	// nothing.
	UpdateJob(ctx context.Context, account apiary.AccountID, id apiary.JobID, fn func(*apiary.Job) error) (apiary.Job, error)
	// UnqueuedJobs lists queued jobs never marked enqueued, created before
	// olderThan, across accounts.
	UnqueuedJobs(ctx context.Context, olderThan time.Time, limit int) ([]apiary.Job, error)

	ClaimIdempotencyKey(ctx context.Context, account apiary.AccountID, key, requestHash string, job apiary.JobID) (apiary.JobID, error)
	ReleaseIdempotencyKey(ctx context.Context, account apiary.AccountID, key string, job apiary.JobID) error

	RecordOutcome(ctx context.Context, account apiary.AccountID, job apiary.JobID, o apiary.DocumentOutcome) (bool, error)
	Outcomes(ctx context.Context, account apiary.AccountID, job apiary.JobID) (map[apiary.DocumentID]bool, apiary.Tally, error)
}

// Queue is where jobs wait for a worker (workers/queue).
type Queue interface {
	Enqueue(ctx context.Context, msg apiary.JobMessage) error
}

// batchQueue is a Queue that stores many messages in fewer round trips
// (queue.BatchEnqueuer); Sweep uses it where the queue has it.
type batchQueue interface {
	EnqueueBatch(ctx context.Context, msgs []apiary.JobMessage) error
}

// Events is where job events go (workers/events).
type Events interface {
	Publish(ctx context.Context, ev apiary.Event) error
}

// Stage keeps a job's documents, sealed, until its end
// (connectors/upload.Stager).
type Stage interface {
	Stage(ctx context.Context, account apiary.AccountID, job apiary.JobID, docs []apiary.Document) error
	Drop(ctx context.Context, account apiary.AccountID, job apiary.JobID) error
}

// Config tunes a Service. The zero value of each field means its default.
type Config struct {
	// Lease is how long a running job stays with its run without a renewal
	// (renewed every Lease/3). Use the queue's lease, so that after a crash
	// the job is free again when the queue delivers it again. Default 60 s.
	Lease time.Duration
	// ProgressEvery is the least time between two progress writes (and
	// job.progress events) of a run. Default 500 ms.
	ProgressEvery time.Duration
	// FinalTimeout bounds the writes and events that run even when the
	// caller's context is gone: a job's final status and event, a lease's
	// release, the bookkeeping of a submitted job. Default 10 s.
	FinalTimeout time.Duration
	// Logger gets what could not be done and is not returned (a lost
	// non-final event, a lease renewal). Default: silent.
	Logger *slog.Logger
	// Ended, when set, is told of every job that reached its final state,
	// as its end is announced (possibly more than once), so that what the
	// job held in memory is let go: the custody of its ephemeral
	// credentials (connectors/custody.Custody.Ended).
	Ended func(ctx context.Context, job apiary.Job)
}

func (c *Config) setDefaults() {
	if c.Lease <= 0 {
		c.Lease = 60 * time.Second
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 500 * time.Millisecond
	}
	if c.FinalTimeout <= 0 {
		c.FinalTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Service carries out job transitions with their side effects. Safe for
// concurrent use.
type Service struct {
	cfg     Config
	records Records
	queue   Queue
	events  Events
	stage   Stage
}

// New returns a service over its collaborators, all required.
func New(cfg Config, recs Records, q Queue, bus Events, stage Stage) *Service {
	cfg.setDefaults()
	return &Service{cfg: cfg, records: recs, queue: q, events: bus, stage: stage}
}

// Submission is a job to submit.
type Submission struct {
	Account apiary.AccountID
	// Kind is what the job does. Default apiary.JobKindIngest.
	Kind   apiary.JobKind
	Source string // where the documents come from ("upload")
	// Connection is the OAuth connection the job reads with, if any.
	Connection string
	Documents  []apiary.Document
	// Unlisted says the documents are not known yet: a source job stages
	// its source, and the total is set once the source is listed (Run.Expect).
	Unlisted bool
	// WebhookURL, when set, gets the job's final event.
	WebhookURL string
	// IdempotencyKey, when set, binds the job to the key; RequestHash
	// identifies the request, so that the same key with another request
	// is refused.
	IdempotencyKey, RequestHash string
	// Holder, when set, names the process that holds the job's ephemeral
	// credentials in memory (connectors/custody); it goes into the record.
	Holder string
	// Deposit, when set, is called with the recorded job after its
	// Idempotency-Key is claimed and before it is queued, to hand its
	// ephemeral credentials to custody: a worker may take the job the
	// moment it is queued. An error abandons the job (canceled) and is
	// returned. A replayed request never calls it.
	Deposit func(job apiary.Job) error
}

// Submit stages sub's documents, records a queued job, claims its
// Idempotency-Key, enqueues the job and publishes job.queued. When the key
// already names an earlier job with the same request, Submit cancels the
// record it just made and returns the earlier job with replayed set. A key
// used with another request gives KindConflict; a queue that cannot take
// the job gives KindUnavailable, the job failed and its key released.
func (s *Service) Submit(ctx context.Context, sub Submission) (job apiary.Job, replayed bool, err error) {
	now := time.Now().UTC()
	job = apiary.Job{
		ID:             apiary.NewJobID(),
		Account:        sub.Account,
		Kind:           sub.Kind,
		Status:         apiary.JobQueued,
		Counts:         apiary.Counts{DocumentsTotal: len(sub.Documents)},
		Errors:         []apiary.DocumentError{},
		Version:        uint64(now.UnixNano()),
		Source:         sub.Source,
		Connection:     sub.Connection,
		Holder:         sub.Holder,
		IdempotencyKey: sub.IdempotencyKey,
		RequestHash:    sub.RequestHash,
		WebhookURL:     sub.WebhookURL,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	if job.Kind == "" {
		job.Kind = apiary.JobKindIngest
	}
	if sub.Unlisted {
		job.Counts.DocumentsTotal = 0
	}
	if err := s.stage.Stage(ctx, job.Account, job.ID, sub.Documents); err != nil {
		return job, false, fmt.Errorf("jobs: stage job %s: %w", job.ID, err)
	}
	if err := s.records.CreateJob(ctx, job); err != nil {
		s.dropStage(ctx, job)
		return job, false, fmt.Errorf("jobs: create job %s: %w", job.ID, err)
	}
	if job.IdempotencyKey != "" {
		earlier, err := s.records.ClaimIdempotencyKey(ctx, job.Account, job.IdempotencyKey, job.RequestHash, job.ID)
		if err != nil {
			reason := "request not taken: the Idempotency-Key could not be checked"
			if errors.Is(err, apiary.ErrConflict) {
				reason = "request refused: Idempotency-Key reused with a different body"
			}
			s.abandon(ctx, job, reason)
			return job, false, err
		}
		if earlier != job.ID {
			s.abandon(ctx, job, fmt.Sprintf("duplicate request: Idempotency-Key already used by job %s", earlier))
			prev, err := s.records.Job(ctx, job.Account, earlier)
			if err != nil {
				return job, false, fmt.Errorf("jobs: earlier job %s of idempotency key: %w", earlier, err)
			}
			return prev, true, nil
		}
	}
	if sub.Deposit != nil {
		if err := sub.Deposit(job); err != nil {
			s.abandon(ctx, job, "request not taken: its token could not be held")
			if job.IdempotencyKey != "" {
				s.releaseKey(ctx, job)
			}
			return job, false, err
		}
	}
	if err := s.queue.Enqueue(ctx, job.Message()); err != nil {
		s.failUnqueued(ctx, job)
		return job, false, apiary.Wrap(err, apiary.KindUnavailable, "the job could not be queued; retry later")
	}
	// Failing to mark it costs at most one duplicate message (the sweeper
	// queues it again), which workers take in their stride.
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	if _, _, err := s.update(ctx, job, (*apiary.Job).MarkEnqueued); err != nil {
		s.warn(ctx, "could not mark job enqueued", job, err)
	}
	s.publish(ctx, job, apiary.EventJobQueued)
	return job, false, nil
}

// abandon undoes a job that will never run: its staged documents go and
// its record ends canceled with reason.
func (s *Service) abandon(ctx context.Context, job apiary.Job, reason string) {
	s.dropStage(ctx, job)
	s.end(ctx, job, apiary.JobCanceled, reason)
}

// failUnqueued ends a job that could not be queued as failed and announces
// it. The client is told to retry: its key must get a fresh attempt, not
// this failed job.
func (s *Service) failUnqueued(ctx context.Context, job apiary.Job) {
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	s.dropStage(ctx, job)
	if job.IdempotencyKey != "" {
		s.releaseKey(ctx, job)
	}
	if j, ok := s.end(ctx, job, apiary.JobFailed, "could not be queued"); ok {
		if err := s.announce(ctx, j); err != nil {
			s.warn(ctx, "could not announce the job's end", j, err)
		}
	}
}

// releaseKey lets job's Idempotency-Key go, so that the client's retry
// with it gets a fresh attempt; a failure is logged.
func (s *Service) releaseKey(ctx context.Context, job apiary.Job) {
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	if err := s.records.ReleaseIdempotencyKey(ctx, job.Account, job.IdempotencyKey, job.ID); err != nil {
		s.warn(ctx, "could not release idempotency key", job, err)
	}
}

// Cancel ends account's job id as canceled by request and announces it; a
// job already final gives KindConflict. A run of the job sees the status at
// its next progress write and stops.
func (s *Service) Cancel(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error) {
	var refused error
	j, changed, err := s.update(ctx, apiary.Job{Account: account, ID: id}, func(j *apiary.Job) bool {
		refused = j.Cancel(time.Now().UTC())
		return refused == nil
	})
	if err != nil {
		return j, err
	}
	if !changed {
		return j, refused
	}
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	if err := s.announce(ctx, j); err != nil {
		s.warn(ctx, "could not announce the job's end", j, err)
	}
	return j, nil
}

// GiveUp fails account's job id after attempt deliveries, with cause's
// classified message as its reason (other causes are not shown: they may
// come from a dependency), and announces it. The documents that finished
// keep their outcomes and the counts say so. A job that is final is only
// announced, if that never happened; one that another run holds is left to
// that run, and the error returned (retry after that run's lease) tells the
// pool to keep the delivery: it is the job's only message if that run dies.
func (s *Service) GiveUp(ctx context.Context, account apiary.AccountID, id apiary.JobID, attempt int, cause error) error {
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	ref := apiary.Job{Account: account, ID: id}
	_, tally, terr := s.records.Outcomes(ctx, account, id)
	if terr != nil {
		s.warn(ctx, "could not count document outcomes", ref, terr)
	}
	var heldElsewhere bool
	var heldUntil time.Time
	job, _, err := s.update(ctx, ref, func(j *apiary.Job) bool {
		now := time.Now().UTC()
		if heldElsewhere = j.Leased(now); heldElsewhere {
			heldUntil = *j.LeaseUntil
		}
		if heldElsewhere || j.Status.Final() {
			return false
		}
		if terr == nil {
			j.SetTally(tally)
		}
		j.Fail(failureReason(cause, attempt), now)
		return true
	})
	switch {
	case err != nil:
		s.cfg.Logger.ErrorContext(ctx, "could not mark job failed", "account", account, "job_id", id, "err", err)
	case heldElsewhere && !job.Status.Final():
		// The job's message must outlive this delivery: if the run that
		// holds the job dies, nothing else would ever run or fail it.
		s.cfg.Logger.InfoContext(ctx, "a duplicate delivery gave up; the job runs elsewhere", "account", account, "job_id", id)
		return apiary.RetryAfter(fmt.Errorf("jobs: job %s is running on another worker", id), time.Until(heldUntil)+time.Second)
	default:
		if err := s.conclude(ctx, job); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "could not finish failed job", "account", account, "job_id", id, "err", err)
		}
	}
	return nil
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

// Sweep queues the jobs created before olderThan that are still queued but
// never reached the queue (the API stopped between writing a job and
// queuing it), at most limit of them, and returns how many it queued.
func (s *Service) Sweep(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	jobs, err := s.records.UnqueuedJobs(ctx, olderThan, limit)
	if err != nil || len(jobs) == 0 {
		return 0, err
	}
	msgs := make([]apiary.JobMessage, len(jobs))
	for i, j := range jobs {
		msgs[i] = j.Message()
	}
	if err := s.enqueueAll(ctx, msgs); err != nil {
		return 0, err
	}
	for n, j := range jobs {
		if _, _, err := s.update(ctx, j, (*apiary.Job).MarkEnqueued); err != nil {
			return n, err
		}
	}
	return len(jobs), nil
}

// enqueueAll puts msgs on the queue, in batches where the queue takes them.
func (s *Service) enqueueAll(ctx context.Context, msgs []apiary.JobMessage) error {
	if b, ok := s.queue.(batchQueue); ok {
		return b.EnqueueBatch(ctx, msgs)
	}
	for _, m := range msgs {
		if err := s.queue.Enqueue(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// update applies the transition fn to job's record and writes the result
// when fn reports a change; it returns the record as stored.
func (s *Service) update(ctx context.Context, job apiary.Job, fn func(*apiary.Job) bool) (apiary.Job, bool, error) {
	changed := false
	j, err := s.records.UpdateJob(ctx, job.Account, job.ID, func(j *apiary.Job) error {
		if changed = fn(j); !changed {
			return records.ErrNoChange
		}
		return nil
	})
	return j, changed && err == nil, err
}

// end moves job to the final status with reason unless it is final already,
// and reports whether it did; a failure is logged.
func (s *Service) end(ctx context.Context, job apiary.Job, status apiary.JobStatus, reason string) (apiary.Job, bool) {
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	j, changed, err := s.update(ctx, job, func(j *apiary.Job) bool {
		return j.Finish(status, reason, time.Now().UTC())
	})
	if err != nil {
		s.cfg.Logger.ErrorContext(ctx, "could not finish job", "account", job.Account, "job_id", job.ID, "status", status, "err", err)
	}
	return j, changed
}

// announce publishes a final job's final event, unless its record says
// that was done, and then records that it was. The event's id is the job's
// FinalEventID, so that the bus keeps one however often it is published.
func (s *Service) announce(ctx context.Context, job apiary.Job) error {
	if s.cfg.Ended != nil && job.Status.Final() {
		s.cfg.Ended(ctx, job)
	}
	if job.Notified {
		return nil
	}
	if err := s.events.Publish(ctx, apiary.NewJobEvent(job, job.Status.FinalEvent())); err != nil {
		return fmt.Errorf("jobs: publish final event of job %s: %w", job.ID, err)
	}
	if _, _, err := s.update(ctx, job, (*apiary.Job).MarkNotified); err != nil {
		return fmt.Errorf("jobs: mark job %s notified: %w", job.ID, err)
	}
	return nil
}

// conclude is the end of a final job's life: its end is announced, then its
// staged documents dropped. It runs even when ctx is canceled.
func (s *Service) conclude(ctx context.Context, job apiary.Job) error {
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	if err := s.announce(ctx, job); err != nil {
		return err
	}
	s.dropStage(ctx, job)
	return nil
}

// publish sends a non-final event; losing one is logged, not fatal: the
// record is the truth.
func (s *Service) publish(ctx context.Context, job apiary.Job, typ apiary.EventType) {
	if err := s.events.Publish(ctx, apiary.NewJobEvent(job, typ)); err != nil {
		s.cfg.Logger.WarnContext(ctx, "could not publish job event", "account", job.Account, "job_id", job.ID, "type", typ, "err", err)
	}
}

// dropStage drops job's staged documents, even when ctx is canceled; a
// failure is logged.
func (s *Service) dropStage(ctx context.Context, job apiary.Job) {
	ctx, cancel := s.finalCtx(ctx)
	defer cancel()
	if err := s.stage.Drop(ctx, job.Account, job.ID); err != nil && !errors.Is(err, apiary.ErrNotFound) {
		s.warn(ctx, "could not drop staged documents", job, err)
	}
}

func (s *Service) warn(ctx context.Context, msg string, job apiary.Job, err error) {
	s.cfg.Logger.WarnContext(ctx, msg, "account", job.Account, "job_id", job.ID, "err", err)
}

// finalCtx is for writes that must happen even when the caller is gone.
func (s *Service) finalCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.cfg.FinalTimeout)
}
