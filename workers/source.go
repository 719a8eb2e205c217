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

// Opener opens the connector a source spec of job names, with the source
// to list. creds is the job's ephemeral credential when the spec needs one
// (Spec.NeedsCredential), else empty; the opener must not keep it: the
// handler wipes it once the connector is open (a connector copies what it
// signs with). A spec with a Connection reads with that connection of the
// job's account, whose token the connector asks for at every request, so
// that a disconnect stops the job at its next one. cmd/apiary builds it
// over the connectors it knows.
type Opener func(ctx context.Context, job apiary.Job, spec connectors.Spec, creds apiary.Credentials) (connectors.Connector, connectors.Source, error)

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
	origins  Origins
	cursors  Cursors
	open     Opener
	custody  Withdrawer
}

// Origins is what source jobs need of the pipeline besides Ingest: the
// account's keyed fingerprints, with which documents record their source
// and version (apiary.Origin), the documents a source brought, and
// deleting one that is gone from its source.
type Origins interface {
	Fingerprinter(ctx context.Context, account apiary.AccountID) (func(parts ...string) string, error)
	SourceDocuments(ctx context.Context, account apiary.AccountID, source string) (map[apiary.DocumentID]string, error)
	DeleteDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error
}

var _ Handler = (*SourceHandler)(nil)

// NewSourceHandler returns a handler over its dependencies. custody
// withdraws the ephemeral credentials of the providers that need one; nil
// fails such jobs.
func NewSourceHandler(cfg IngestConfig, svc *jobs.Service, stage Stage, p Ingester, origins Origins, open Opener, custody Withdrawer) *SourceHandler {
	if cfg.DocConcurrency <= 0 {
		cfg.DocConcurrency = DefaultSourceConcurrency
	}
	return &SourceHandler{cfg: cfg, jobs: svc, stage: stage, pipeline: p, origins: origins, open: open, custody: custody}
}

// WithCursors makes syncs of connectors with a change feed resume from the
// feed's token kept in c, instead of listing their source whole each time.
func (h *SourceHandler) WithCursors(c Cursors) *SourceHandler {
	h.cursors = c
	return h
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
	conn, src, err := h.open(ctx, run.Job(), spec, creds)
	creds.Wipe() // the connector holds what it needs; this copy goes
	if err != nil {
		return apiary.Permanent(err)
	}
	if err := h.ingestSource(ctx, run, spec, conn, src); err != nil {
		switch kind := apiary.KindOf(err); {
		case spec.NeedsCredential() && kind == apiary.KindUnauthenticated:
			// Retrying cannot revive an ephemeral token.
			return apiary.Permanent(apiary.Wrap(err, apiary.KindPermanent, "%s", ReasonCredentialRefused))
		case spec.Connection != "" && (kind == apiary.KindUnauthenticated || kind == apiary.KindForbidden):
			// Disconnected, or the grant refused: nothing a retry fixes.
			return apiary.Permanent(err)
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

// Cursors keep, per connection and source, where a sync's change feed
// resumes (connectors.ChangeFeed's token), sealed at rest.
type Cursors interface {
	SyncCursor(ctx context.Context, account apiary.AccountID, connection, source string) (connectors.Cursor, error)
	SaveSyncCursor(ctx context.Context, account apiary.AccountID, connection, source string, c connectors.Cursor) error
}

// sourceRun is one run of a source job: what it listed, and the items in
// flight (g).
type sourceRun struct {
	h      *SourceHandler
	run    *jobs.Run
	spec   connectors.Spec
	conn   connectors.Connector
	src    connectors.Source
	fp     func(parts ...string) string
	origin string                       // the source's fingerprint
	before map[apiary.DocumentID]string // a sync's documents of this source, and their versions
	seen   map[apiary.DocumentID]bool   // what this run listed
	listed int
	g      *errgroup.Group
	gctx   context.Context
	cancel context.CancelCauseFunc
}

// errCanceled ends a run whose job was canceled meanwhile.
var errCanceled = errors.New("job canceled")

func (h *SourceHandler) ingestSource(ctx context.Context, run *jobs.Run, spec connectors.Spec, conn connectors.Connector, src connectors.Source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	account := run.Job().Account
	fp, err := h.origins.Fingerprinter(ctx, account)
	if err != nil {
		return err
	}
	r := &sourceRun{h: h, run: run, spec: spec, conn: conn, src: src, fp: fp,
		origin: fp(append([]string{"source"}, spec.Identity()...)...), seen: map[apiary.DocumentID]bool{}, cancel: cancel}
	if spec.Sync {
		if r.before, err = h.origins.SourceDocuments(ctx, account, r.origin); err != nil {
			return err
		}
	}
	feed, ok := conn.(connectors.ChangeFeed)
	if !spec.Sync || !ok || h.cursors == nil {
		return endOfRun(ctx, r.full(ctx), errCanceled)
	}
	token, err := h.cursors.SyncCursor(ctx, account, spec.Connection, r.origin)
	if err != nil {
		return err
	}
	if token != "" {
		err := r.changes(ctx, feed, token)
		if apiary.KindOf(err) != apiary.KindInvalid {
			return endOfRun(ctx, err, errCanceled)
		}
		// The vendor no longer honours the token: list the source whole.
		r = &sourceRun{h: h, run: run, spec: spec, conn: conn, src: src, fp: fp, origin: r.origin, before: r.before,
			seen: map[apiary.DocumentID]bool{}, cancel: cancel}
	}
	// The token of now, taken before the listing: what changes during it
	// is in the next sync's feed.
	start, err := feed.StartToken(ctx, src)
	if err != nil {
		return err
	}
	if err := r.full(ctx); err != nil {
		return endOfRun(ctx, err, errCanceled)
	}
	return h.cursors.SaveSyncCursor(ctx, account, spec.Connection, r.origin, start)
}

// full lists the whole source and ingests what it lists; a sync then
// removes the documents gone from it.
func (r *sourceRun) full(ctx context.Context) error {
	r.start(ctx)
	var listErr error
	for item, err := range connectors.All(r.gctx, r.conn, r.src, "") {
		if err == nil {
			err = r.item(item)
		}
		if err != nil {
			listErr = err
			break
		}
	}
	if listErr == nil && r.listed == 0 && !r.spec.Sync {
		listErr = apiary.Permanent(apiary.E(apiary.KindInvalid, "the source listed no documents; check the URL and the site's robots.txt"))
	}
	if err := r.wait(listErr); err != nil || !r.spec.Sync {
		return err
	}
	limit := r.spec.MaxItems
	if limit == 0 {
		limit = connectors.DefaultMaxItems
	}
	if r.listed >= limit {
		return nil // the listing may have left items out
	}
	var gone []apiary.DocumentID
	for id := range r.before {
		if !r.seen[id] {
			gone = append(gone, id)
		}
	}
	return r.remove(ctx, gone)
}

// changes runs a sync from the change feed's token: the items changed
// since are ingested, those removed deleted, and the feed's next token
// kept for the next sync.
func (r *sourceRun) changes(ctx context.Context, feed connectors.ChangeFeed, token connectors.Cursor) error {
	r.start(ctx)
	var listErr error
	var gone []apiary.DocumentID
	cur, next := token, connectors.Cursor("")
	for pages := 0; listErr == nil; pages++ {
		ch, err := feed.Changes(r.gctx, r.src, cur)
		if err != nil {
			listErr = err
			break
		}
		for _, it := range ch.Items {
			if listErr = r.item(it); listErr != nil {
				break
			}
		}
		for _, removed := range ch.Removed {
			if id := connectors.DocumentID(removed); !r.seen[id] {
				if _, ours := r.before[id]; ours {
					gone = append(gone, id)
				}
			}
		}
		if ch.Next == "" {
			next = ch.Token
			break
		}
		cur = ch.Next
	}
	if err := r.wait(listErr); err != nil {
		return err
	}
	if err := r.remove(ctx, gone); err != nil {
		return err
	}
	if next == "" {
		return nil
	}
	return r.h.cursors.SaveSyncCursor(ctx, r.run.Job().Account, r.spec.Connection, r.origin, next)
}

func (r *sourceRun) start(ctx context.Context) {
	r.g, r.gctx = errgroup.WithContext(ctx)
	r.g.SetLimit(r.h.cfg.DocConcurrency)
}

// item takes one listed item: skipped when done by an earlier run or
// listed already, recorded unchanged when a sync finds its version
// unchanged, else fetched and ingested (blocking while DocConcurrency
// items are in flight).
func (r *sourceRun) item(item connectors.Item) error {
	id := connectors.DocumentID(item.ID)
	if r.seen[id] {
		return nil // a change feed may name an item twice
	}
	r.seen[id] = true
	r.listed++
	if r.run.Done(id) {
		return nil
	}
	if v, ok := r.before[id]; ok && item.Version != "" && v == r.fp("version", item.Version) {
		stop, err := r.run.Record(r.gctx, apiary.DocumentOutcome{Document: id, Unchanged: true})
		return r.stopped(stop, err)
	}
	r.g.Go(func() error {
		doc, err := fetchItem(r.gctx, r.conn, item, id)
		var stop bool
		switch {
		case err == nil:
			doc.Origin = apiary.Origin{Source: r.origin, Version: r.fp("version", doc.Origin.Version)}
			stop, err = ingestOne(r.gctx, r.h.pipeline, r.run, doc)
		case apiary.IsPermanent(err):
			stop, err = r.run.Record(r.gctx, failedOutcome(id, err))
		}
		return r.stopped(stop, err)
	})
	return nil
}

// stopped turns a Record's answer into the run's: its error, or
// errCanceled (and the run's end) when the job became final.
func (r *sourceRun) stopped(stop bool, err error) error {
	if err != nil {
		return err
	}
	if stop {
		r.cancel(errCanceled)
		return errCanceled
	}
	return nil
}

// wait sets the job's total once the listing ended well and waits for the
// items in flight.
func (r *sourceRun) wait(listErr error) error {
	if listErr == nil {
		listErr = r.stopped(r.run.Expect(r.gctx, r.listed))
	}
	err := r.g.Wait()
	if err == nil {
		err = listErr
	}
	return err
}

// remove deletes the documents of ids, which this source brought and no
// longer names, once the source confirms each is gone (a listing is not a
// snapshot: a vendor's cursor may skip an item edited meanwhile).
func (r *sourceRun) remove(ctx context.Context, ids []apiary.DocumentID) error {
	account := r.run.Job().Account
	for _, id := range ids {
		if r.run.Done(id) {
			continue
		}
		if gone, err := confirmGone(ctx, r.conn, id); err != nil || !gone {
			if err != nil {
				return err
			}
			continue
		}
		if err := r.h.origins.DeleteDocument(ctx, account, id); err != nil && !errors.Is(err, apiary.ErrNotFound) {
			return err
		}
		if stop, err := r.run.Record(ctx, apiary.DocumentOutcome{Document: id, Removed: true}); err != nil || stop {
			return err
		}
	}
	return nil
}

// confirmGone asks the source whether the item of document id is gone. A
// document id that is not its item's id (one cut and hashed) cannot be
// asked about: it counts as gone, since the listing did not name it.
func confirmGone(ctx context.Context, conn connectors.Connector, id apiary.DocumentID) (bool, error) {
	if connectors.DocumentID(string(id)) != id {
		return true, nil
	}
	c, err := conn.Open(ctx, connectors.Item{ID: string(id), Size: -1})
	switch {
	case err == nil:
		c.Body.Close()
		return false, nil
	case errors.Is(err, connectors.ErrGone), apiary.KindOf(err) == apiary.KindInvalid:
		// Invalid: the id is not one this source's connector reads.
		return true, nil
	}
	return false, err
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
	version := item.Version // as a later listing will say it
	if version == "" {
		version = c.Version
	}
	return apiary.Document{
		ID:          id,
		Title:       item.Name,
		ContentType: c.ContentType,
		Raw:         raw,
		Metadata:    map[string]string{"source_url": item.ID},
		// The version fetched, fingerprinted by the caller.
		Origin: apiary.Origin{Version: version},
	}, nil
}
