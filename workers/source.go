package workers

import (
	"context"
	"errors"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Opener opens the connector a source spec names, with the source to list.
// creds is the job's ephemeral credential when the spec needs one
// (Spec.NeedsCredential), else empty; the opener must not keep it: the
// handler wipes it once the connector is open. cmd/apiary builds it over
// the connectors it knows (web, s3).
type Opener func(spec connectors.Spec, creds apiary.Credentials) (connectors.Connector, connectors.Source, error)

// Withdrawer hands a job's ephemeral credentials to the run that holds its
// lease (connectors/custody.Custody.Withdraw: in this process, or from the
// holder over NATS). The caller owns, and wipes, the copy.
type Withdrawer interface {
	Withdraw(ctx context.Context, job apiary.Job) (apiary.Credentials, error)
}

// ReasonCredentialRefused is the error of a source job whose ephemeral
// credential the source refused: a token does not get better by retrying.
const ReasonCredentialRefused = "the source refused the ephemeral credential (it expired, was revoked or is wrong); resubmit with a fresh one and a new Idempotency-Key"

// DefaultSourceConcurrency is how many items of one source job are fetched
// and ingested at once when IngestConfig.DocConcurrency is unset: few, as a
// polite crawler's requests to one site are.
const DefaultSourceConcurrency = 4

// SourceHandler runs source jobs (apiary.JobKindSource): it lists the
// job's source page by page and runs each item through the pipeline as it
// is listed, IngestConfig.DocConcurrency at a time (default
// DefaultSourceConcurrency), so that a source is
// never held in memory whole: what is in flight is a page of item metadata
// and the content of the items being ingested (each bounded by the
// connector's size cap). Each item's outcome is recorded like an upload's
// document: an item gone, refused or too large fails alone; a rate limit
// or an outage fails the run, which is retried (after the source's delay),
// listing again and skipping the items already done. The job's total is
// set when the listing ends.
type SourceHandler struct {
	cfg      IngestConfig
	jobs     *jobs.Service
	stage    Stage
	pipeline Ingester
	open     Opener
	custody  Withdrawer
}

var _ Handler = (*SourceHandler)(nil)

// NewSourceHandler returns a handler over its dependencies. custody
// withdraws the ephemeral credentials of the providers that need one; nil
// fails such jobs.
func NewSourceHandler(cfg IngestConfig, svc *jobs.Service, stage Stage, p Ingester, open Opener, custody Withdrawer) *SourceHandler {
	if cfg.DocConcurrency <= 0 {
		cfg.DocConcurrency = DefaultSourceConcurrency
	}
	return &SourceHandler{cfg: cfg, jobs: svc, stage: stage, pipeline: p, open: open, custody: custody}
}

// Handle runs the job of delivery d.
func (h *SourceHandler) Handle(ctx context.Context, d *queue.Delivery) error {
	run, ctx, err := h.jobs.Start(ctx, d.Msg.Account, d.Msg.Job, d.Attempt)
	if run == nil {
		return err
	}
	defer run.Release()

	staged, err := h.stage.Load(ctx, d.Msg.Account, d.Msg.Job)
	if errors.Is(err, apiary.ErrNotFound) {
		return apiary.Permanent(errors.New("the job's source is gone"))
	}
	if err != nil {
		return err
	}
	spec, err := connectors.SpecFrom(staged)
	if err != nil {
		return err
	}
	var creds apiary.Credentials
	if spec.NeedsCredential() {
		if creds, err = h.withdraw(ctx, run.Job()); err != nil {
			return err
		}
	}
	conn, src, err := h.open(spec, creds)
	creds.Wipe() // the connector holds what it needs; this copy goes
	if err != nil {
		return apiary.Permanent(err)
	}
	if err := h.ingestSource(ctx, run, conn, src); err != nil {
		if spec.NeedsCredential() && apiary.KindOf(err) == apiary.KindUnauthenticated {
			// Retrying cannot revive an ephemeral token.
			return apiary.Permanent(apiary.Wrap(err, apiary.KindPermanent, "%s", ReasonCredentialRefused))
		}
		return err
	}
	return run.Finish(ctx)
}

// withdraw gets job's ephemeral credential from custody. A credential that
// is gone (expired, or its holder stopped) fails the job for good with
// custody's reason; others (the holder slow to answer, the lease lost)
// are custody's own errors.
func (h *SourceHandler) withdraw(ctx context.Context, job apiary.Job) (apiary.Credentials, error) {
	if h.custody == nil {
		return apiary.Credentials{}, apiary.Permanent(apiary.E(apiary.KindPermanent, "this worker cannot receive ephemeral tokens"))
	}
	creds, err := h.custody.Withdraw(ctx, job)
	if err != nil {
		return apiary.Credentials{}, err
	}
	return creds, nil
}

func (h *SourceHandler) ingestSource(ctx context.Context, run *jobs.Run, conn connectors.Connector, src connectors.Source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errCanceled := errors.New("job canceled")

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.cfg.DocConcurrency)
	listed := 0
	var listErr error
	for item, err := range connectors.All(gctx, conn, src, "") {
		if err != nil {
			listErr = err
			break
		}
		listed++
		id := connectors.DocumentID(item.ID)
		if run.Done(id) {
			continue
		}
		g.Go(func() error { // blocks while DocConcurrency items are in flight
			doc, err := fetchItem(gctx, conn, item, id)
			var stop bool
			switch {
			case err == nil:
				stop, err = ingestOne(gctx, h.pipeline, run, doc)
			case apiary.IsPermanent(err):
				stop, err = run.Record(gctx, failedOutcome(id, err))
			}
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
	if listErr == nil && listed == 0 {
		listErr = apiary.Permanent(apiary.E(apiary.KindInvalid, "the source listed no documents; check the URL and the site's robots.txt"))
	}
	if listErr == nil {
		if stop, err := run.Expect(gctx, listed); err != nil || stop {
			listErr = err
			if stop {
				cancel(errCanceled)
			}
		}
	}
	err := g.Wait()
	if err == nil {
		err = listErr
	}
	return endOfRun(ctx, err, errCanceled)
}

// fetchItem reads item's content (bounded by the connector's cap) into a
// document to ingest, its id derived from the item's.
func fetchItem(ctx context.Context, conn connectors.Connector, item connectors.Item, id apiary.DocumentID) (apiary.Document, error) {
	c, err := conn.Open(ctx, item)
	if err != nil {
		return apiary.Document{}, err
	}
	defer c.Body.Close()
	raw, err := io.ReadAll(c.Body)
	if err != nil {
		return apiary.Document{}, err
	}
	return apiary.Document{
		ID:          id,
		Title:       item.Name,
		ContentType: c.ContentType,
		Raw:         raw,
		Metadata:    map[string]string{"source_url": item.ID},
	}, nil
}
