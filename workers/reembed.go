package workers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Reembedder is the part of the pipeline a re-embed job needs
// (pipeline.Pipeline).
type Reembedder interface {
	// Model is the embedding model queries search with.
	Model() apiary.EmbeddingModel
	// StaleChunks counts account's chunks of another model.
	StaleChunks(ctx context.Context, account apiary.AccountID) (int, error)
	// Reembed embeds document doc's chunks of another model again and
	// returns how many; idempotent.
	Reembed(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID) (int, error)
}

// ReembedRecords is what re-embedding reads and writes of the record store
// (records.Store): the accounts and their documents.
type ReembedRecords interface {
	Accounts(ctx context.Context) ([]apiary.Account, error)
	UpdateAccount(ctx context.Context, id apiary.AccountID, fn func(*apiary.Account) error) (apiary.Account, error)
	Documents(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]apiary.DocumentRecord, string, error)
}

// ReembedConfig configures the re-embed job handler.
type ReembedConfig struct {
	// DocConcurrency bounds how many documents of one job run at once.
	// Default 1: a re-embed job is background work, and the embedder's
	// budget is shared with ingestion anyway.
	DocConcurrency int
	// Logger gets what Reconcile decides per account. Default: silent.
	Logger *slog.Logger
}

func (c *ReembedConfig) setDefaults() {
	if c.DocConcurrency <= 0 {
		c.DocConcurrency = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ReembedHandler runs re-embed jobs (apiary.JobKindReembed): every document
// of the job's account has its chunks of another model embedded again with
// the pipeline's model, in place (same chunk ids, sealed bytes unchanged).
// Progress is counted in documents, like an ingest job's, and re-embedded
// chunks. It is idempotent: a redelivered job skips the documents it
// finished, and inside a document the chunks already of the new model.
// When the job succeeds with no failed document, the account records the
// new model (apiary.Account.Embedding).
//
// Queries search only chunks of the pipeline's model, so while the job runs
// they find the documents already re-embedded (and everything ingested
// since the model changed); the others come back as the job goes.
type ReembedHandler struct {
	cfg  ReembedConfig
	jobs *jobs.Service
	recs ReembedRecords
	pipe Reembedder
}

var _ Handler = (*ReembedHandler)(nil)

// NewReembedHandler returns a handler over its dependencies.
func NewReembedHandler(cfg ReembedConfig, svc *jobs.Service, recs ReembedRecords, p Reembedder) *ReembedHandler {
	cfg.setDefaults()
	return &ReembedHandler{cfg: cfg, jobs: svc, recs: recs, pipe: p}
}

// Handle runs the re-embed job of delivery d.
func (h *ReembedHandler) Handle(ctx context.Context, d *queue.Delivery) error {
	run, ctx, err := h.jobs.Start(ctx, d.Msg.Account, d.Msg.Job, d.Attempt)
	if run == nil {
		return err
	}
	defer run.Release()
	account := d.Msg.Account
	model := h.pipe.Model()

	docs, err := h.documents(ctx, account)
	if err != nil {
		return err
	}
	stop, err := run.Expect(ctx, len(docs))
	if err != nil {
		return err
	}
	if !stop {
		if err := h.reembedAll(ctx, run, docs); err != nil {
			return err
		}
	}
	job, err := run.Complete(ctx)
	if err != nil || job.Status != apiary.JobSucceeded || job.Counts.DocumentsFailed > 0 {
		return err
	}
	_, err = h.recs.UpdateAccount(ctx, account, func(a *apiary.Account) error {
		a.Embedding = &model
		return nil
	})
	if err != nil {
		return fmt.Errorf("workers: record the embedding model of account %s: %w", account, err)
	}
	return nil
}

// documents lists the ids of account's documents.
func (h *ReembedHandler) documents(ctx context.Context, account apiary.AccountID) ([]apiary.DocumentID, error) {
	var ids []apiary.DocumentID
	cursor := ""
	for {
		page, next, err := h.recs.Documents(ctx, account, 500, cursor)
		if err != nil {
			return nil, fmt.Errorf("workers: list documents of account %s: %w", account, err)
		}
		for _, d := range page {
			ids = append(ids, d.ID)
		}
		if next == "" {
			return ids, nil
		}
		cursor = next
	}
}

// reembedAll re-embeds the documents not done yet, DocConcurrency at a
// time, recording each outcome. It stops early, without error, when the
// job is canceled; stored chunks of another dimension fail the whole job
// (a permanent error); another transient error is returned so that the job
// is retried, and the retry starts where this run stopped.
func (h *ReembedHandler) reembedAll(ctx context.Context, run *jobs.Run, docs []apiary.DocumentID) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errCanceled := errors.New("job canceled")

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.cfg.DocConcurrency)
	account := run.Job().Account
	for _, doc := range docs {
		if run.Done(doc) {
			continue
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				return nil // stopped while this one waited for its turn
			}
			n, err := h.pipe.Reembed(gctx, account, doc)
			o := apiary.DocumentOutcome{Document: doc, Chunks: n}
			switch {
			case err == nil:
			case errors.Is(err, pipeline.ErrDimension):
				return apiary.Permanent(err)
			case apiary.IsPermanent(err):
				if o.Reason = apiary.Message(err); o.Reason == "" {
					o.Reason = "the document's chunks could not be re-embedded"
				}
				o.Chunks = 0
			default:
				return err
			}
			stop, err := run.Record(gctx, o)
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
	err := g.Wait()
	if errors.Is(err, errCanceled) || errors.Is(context.Cause(ctx), errCanceled) || errors.Is(context.Cause(ctx), jobs.ErrJobEnded) {
		return nil
	}
	return err
}

// Reconcile compares every account's chunks with the pipeline's model, as
// the service starts: an account with no chunk of another model records the
// current one (apiary.Account.Embedding); an account with some gets a
// re-embed job and records its id (apiary.Account.Reembed). It counts the
// chunks rather than trusting the record, so that chunks written by a
// worker still on the old model (a rolling upgrade) are found too.
//
// One job per account and model: the job's Idempotency-Key names the model,
// so processes starting at once, or again, find the same job. When that job
// has ended and chunks of another model remain, the next job's key names
// the one before it, so again one job is started however many processes
// start. It returns the jobs it submitted or found running. An account that
// cannot be checked is logged and skipped.
func (h *ReembedHandler) Reconcile(ctx context.Context) ([]apiary.Job, error) {
	accounts, err := h.recs.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("workers: reconcile embedding models: %w", err)
	}
	model := h.pipe.Model()
	var out []apiary.Job
	for _, a := range accounts {
		job, err := h.reconcile(ctx, a, model)
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			h.cfg.Logger.ErrorContext(ctx, "could not check the account's embedding model", "account", a.ID, "err", err)
			continue
		}
		if job.ID != "" {
			out = append(out, job)
		}
	}
	return out, nil
}

// maxReembedChain bounds how many ended re-embed jobs Reconcile walks past
// to find the account's current one.
const maxReembedChain = 100

// reconcile brings one account to model: it records it, or starts (or
// finds) the account's re-embed job to it.
func (h *ReembedHandler) reconcile(ctx context.Context, a apiary.Account, model apiary.EmbeddingModel) (apiary.Job, error) {
	stale, err := h.pipe.StaleChunks(ctx, a.ID)
	if err != nil {
		return apiary.Job{}, err
	}
	if stale == 0 {
		if a.Embedding != nil && *a.Embedding == model {
			return apiary.Job{}, nil
		}
		_, err := h.recs.UpdateAccount(ctx, a.ID, func(a *apiary.Account) error {
			a.Embedding = &model
			return nil
		})
		return apiary.Job{}, err
	}
	var job apiary.Job
	for key, n := ReembedKey(model.Model, ""), 0; ; key, n = ReembedKey(model.Model, job.ID), n+1 {
		replayed := false
		job, replayed, err = h.jobs.Submit(ctx, jobs.Submission{
			Account: a.ID, Kind: apiary.JobKindReembed, Source: "reembed",
			IdempotencyKey: key, RequestHash: key,
		})
		if err != nil {
			return apiary.Job{}, err
		}
		if !replayed || !job.Status.Final() {
			break
		}
		if n == maxReembedChain {
			return apiary.Job{}, fmt.Errorf("workers: more than %d re-embed jobs of account %s to %s have ended", maxReembedChain, a.ID, model.Model)
		}
	}
	if a.Reembed != job.ID {
		if _, err := h.recs.UpdateAccount(ctx, a.ID, func(a *apiary.Account) error {
			a.Reembed = job.ID
			return nil
		}); err != nil {
			return job, err
		}
		h.cfg.Logger.InfoContext(ctx, "re-embedding the account's chunks of another model; until done, queries find only chunks of the current model",
			"account", a.ID, "job_id", job.ID, "model", model.Model, "stale_chunks", stale)
	}
	return job, nil
}

// ReembedKey is the Idempotency-Key of an account's re-embed job to model
// that follows the job after ("" for the first): one job per account, model
// and predecessor.
func ReembedKey(model string, after apiary.JobID) string {
	sum := sha256.Sum256([]byte(model + "\x00" + string(after)))
	return "reembed-" + hex.EncodeToString(sum[:16])
}
