package workers

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Stage is where an upload's documents wait for their job.
type Stage interface {
	Load(ctx context.Context, account apiary.AccountID, job apiary.JobID) ([]apiary.Document, error)
}

// Ingester runs one document through extract, chunk, embed, encrypt, store.
type Ingester interface {
	Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error)
}

// IngestConfig configures the ingestion job handler.
type IngestConfig struct {
	// DocConcurrency bounds how many documents of one job run at once.
	// Default 16: the pipeline coalesces the chunks of documents in flight
	// into full embedder batches, and short documents (a chunk or two each)
	// only fill a batch when many are in flight. The job's documents are in
	// memory already (the stage loads them all); what each one in flight
	// adds is its extracted text, bounded by the pipeline.
	DocConcurrency int
}

// DefaultDocConcurrency is IngestConfig.DocConcurrency's default.
const DefaultDocConcurrency = 16

func (c *IngestConfig) setDefaults() {
	if c.DocConcurrency <= 0 {
		c.DocConcurrency = DefaultDocConcurrency
	}
}

// IngestHandler runs ingestion jobs (apiary.JobKindIngest). It is
// idempotent: a redelivered job skips the documents it already finished,
// rewrites the others under the same chunk ids, and publishes the job's
// final event once. The job's record is written by the job service only.
type IngestHandler struct {
	cfg      IngestConfig
	jobs     *jobs.Service
	stage    Stage
	pipeline Ingester
}

var _ Handler = (*IngestHandler)(nil)

// NewIngestHandler returns a handler over its dependencies.
func NewIngestHandler(cfg IngestConfig, svc *jobs.Service, stage Stage, p Ingester) *IngestHandler {
	cfg.setDefaults()
	return &IngestHandler{cfg: cfg, jobs: svc, stage: stage, pipeline: p}
}

// Handle runs the job of delivery d.
func (h *IngestHandler) Handle(ctx context.Context, d *queue.Delivery) error {
	run, ctx, err := h.jobs.Start(ctx, d.Msg.Account, d.Msg.Job, d.Attempt)
	if run == nil {
		return err
	}
	defer run.Release()

	docs, err := h.stage.Load(ctx, d.Msg.Account, d.Msg.Job)
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
	if err := h.ingestAll(ctx, run, docs); err != nil {
		return err
	}
	return run.Finish(ctx)
}

// ingestAll runs the run's documents not done yet, DocConcurrency at a
// time, recording each outcome. It stops early, without error, when the
// job is canceled (seen by a progress write, or by the lease renewal:
// jobs.ErrJobEnded); it returns the first transient error so that the job
// is retried.
func (h *IngestHandler) ingestAll(ctx context.Context, run *jobs.Run, docs []apiary.Document) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errCanceled := errors.New("job canceled")

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.cfg.DocConcurrency)
	for i := range docs {
		if run.Done(docs[i].ID) {
			continue
		}
		if gctx.Err() != nil {
			break
		}
		doc := docs[i]
		g.Go(func() error {
			stop, err := ingestOne(gctx, h.pipeline, run, doc)
			if err != nil {
				return err
			}
			if stop {
				cancel(errCanceled)
				return errCanceled
			}
			return nil
		})
	}
	return endOfRun(ctx, g.Wait(), errCanceled)
}

// endOfRun is a run's error once its documents are done: nil when the run
// stopped because its job was canceled (errCanceled, or the lease renewal
// saw the job end), else err.
func endOfRun(ctx context.Context, err, errCanceled error) error {
	if errors.Is(err, errCanceled) || errors.Is(context.Cause(ctx), errCanceled) || errors.Is(context.Cause(ctx), jobs.ErrJobEnded) {
		return nil
	}
	return err
}

// ingestOne runs doc through the pipeline and records its outcome: done,
// or failed for good with a reason safe to show. A transient error is
// returned, unrecorded, so that the job is retried. stop reports that the
// job ended meanwhile (canceled).
func ingestOne(ctx context.Context, p Ingester, run *jobs.Run, doc apiary.Document) (stop bool, err error) {
	rec, err := p.Ingest(ctx, run.Job(), doc)
	o := apiary.DocumentOutcome{Document: doc.ID, Chunks: rec.Chunks}
	switch {
	case err == nil, errors.Is(err, apiary.ErrConflict):
		// Conflict: a newer version of the document is already stored.
	case apiary.IsPermanent(err):
		o = failedOutcome(doc.ID, err)
	default:
		return false, err
	}
	return run.Record(ctx, o)
}

// failedOutcome is the outcome of a document that failed for good.
func failedOutcome(id apiary.DocumentID, err error) apiary.DocumentOutcome {
	o := apiary.DocumentOutcome{Document: id, Reason: apiary.Message(err)}
	if o.Reason == "" {
		o.Reason = "the document could not be processed"
	}
	return o
}

// GiveUp marks the job of d failed with cause's reason. Use it as the
// pool's OnGiveUp: it runs once, before the delivery is terminated. Its
// error, when the job is still running elsewhere, keeps the delivery.
func (h *IngestHandler) GiveUp(ctx context.Context, d *queue.Delivery, cause error) error {
	return h.jobs.GiveUp(ctx, d.Msg.Account, d.Msg.Job, d.Attempt, cause)
}
