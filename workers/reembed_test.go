package workers_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/workers"
)

// model is the local hashing embedder under another model name; reversed
// also reverses its vectors, so that a model's vectors differ from
// another's for the same text.
// before, when set, runs first and may fail the call.
type model struct {
	embed.Embedder
	name     string
	reversed bool
	before   func() error
}

func (m model) Model() string { return m.name }

func (m model) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if m.before != nil {
		if err := m.before(); err != nil {
			return nil, err
		}
	}
	vecs, err := m.Embedder.Embed(ctx, texts)
	if err == nil && m.reversed {
		for _, v := range vecs {
			slices.Reverse(v)
		}
	}
	return vecs, err
}

// pipelineOf returns a pipeline over e's stores that embeds with m, in
// small chunks and batches so that documents span several pages.
func (e *env) pipelineOf(t *testing.T, m embed.Embedder) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.New(pipeline.Config{Chunk: chunk.Config{Size: 16, Overlap: -1}, EmbedBatch: 3}, m, e.keys, e.vecs, e.recs)
	require.NoError(t, err)
	return p
}

// account creates account id with its key and record.
func (e *env) account(t *testing.T, id apiary.AccountID) {
	t.Helper()
	if err := e.keys.CreateAccountKey(t.Context(), id); err != nil {
		require.ErrorIs(t, err, apiary.ErrConflict)
	}
	require.NoError(t, e.recs.CreateAccount(t.Context(), apiary.Account{ID: id, Name: string(id), CreatedAt: time.Now().UTC()}))
}

// ingestWith stores docs in account through p, as an ingest job would.
func ingestWith(t *testing.T, p *pipeline.Pipeline, account apiary.AccountID, docs ...apiary.Document) {
	t.Helper()
	job := apiary.Job{ID: apiary.NewJobID(), Account: account, Version: uint64(time.Now().UnixNano())}
	for _, d := range docs {
		_, err := p.Ingest(t.Context(), job, d)
		require.NoError(t, err)
	}
}

func (e *env) chunksOf(t *testing.T, account apiary.AccountID, model string) int {
	t.Helper()
	n, err := e.vecs.Count(t.Context(), account, storage.VectorFilter{Model: model})
	require.NoError(t, err)
	return n
}

func longText(topic string, words int) string {
	var b strings.Builder
	for i := range words {
		fmt.Fprintf(&b, "%s%d ", topic, i%7)
	}
	return b.String()
}

// counting wraps a Reembedder, recording the documents it re-embeds and how
// many chunks each took; before, when set, runs first and may fail the call.
type counting struct {
	workers.Reembedder
	mu     sync.Mutex
	chunks map[apiary.DocumentID]int
	calls  []apiary.DocumentID
	before func(ctx context.Context, doc apiary.DocumentID) error
}

func (c *counting) Reembed(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID) (int, error) {
	if c.before != nil {
		if err := c.before(ctx, doc); err != nil {
			return 0, err
		}
	}
	n, err := c.Reembedder.Reembed(ctx, account, doc)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, doc)
	if c.chunks == nil {
		c.chunks = map[apiary.DocumentID]int{}
	}
	c.chunks[doc] += n
	return n, err
}

func TestReembedJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	const acme, globex = apiary.AccountID("acme"), apiary.AccountID("globex")
	e.account(t, acme)
	e.account(t, globex)

	local := local.New(local.Config{})
	pipeA := e.pipelineOf(t, model{Embedder: local, name: "A"})
	docs := []apiary.Document{
		doc("bees", longText("honeybee", 60)),
		doc("wasps", longText("yellowjacket", 45)),
		doc("ants", longText("formicidae", 50)),
	}
	ingestWith(t, pipeA, acme, docs...)
	ingestWith(t, pipeA, globex, doc("theirs", longText("honeybee", 30)))
	total, theirs := e.chunksOf(t, acme, "A"), e.chunksOf(t, globex, "A")
	require.Greater(t, total, 3*3, "each document spans several pages of chunks")

	// The model changes: queries search chunks of B only, and find none.
	// B's embedder stops its worker (ends the run's context) at its call
	// crashAt, which is in the middle of the second document ("ants" goes
	// first, then "bees").
	var calls int
	crashCtx, crash := context.WithCancel(ctx)
	ants, err := e.vecs.Count(ctx, acme, storage.VectorFilter{Document: "ants"})
	require.NoError(t, err)
	bees, err := e.vecs.Count(ctx, acme, storage.VectorFilter{Document: "bees"})
	require.NoError(t, err)
	require.Greater(t, bees, 3, "bees spans several pages")
	crashAt := (ants+2)/3 + 2
	pipeB := e.pipelineOf(t, model{Embedder: local, name: "B", reversed: true, before: func() error {
		if calls++; calls == crashAt {
			crash()
			return context.Canceled
		}
		return nil
	}})
	query := pipeline.Query{Text: "honeybee3", TopK: 5, Mode: pipeline.ModeDense} // the words of every chunk are found whatever its model
	hits, err := pipeB.Search(ctx, acme, query)
	require.NoError(t, err)
	require.Empty(t, hits, "chunks of model A were searched with model B")
	calls = 0 // the query's

	// The service starts: one re-embed job per account with chunks of A,
	// the same one however often it starts.
	rec := &counting{Reembedder: pipeB}
	h := workers.NewReembedHandler(workers.ReembedConfig{}, e.jobs, e.recs, rec)
	started, err := h.Reconcile(ctx)
	require.NoError(t, err)
	require.Len(t, started, 2)
	again, err := h.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, []apiary.JobID{started[0].ID, started[1].ID}, []apiary.JobID{again[0].ID, again[1].ID})
	job := started[0]
	require.Equal(t, acme, job.Account)
	require.Equal(t, apiary.JobKindReembed, job.Kind)
	acc, err := e.recs.Account(ctx, acme)
	require.NoError(t, err)
	require.Equal(t, job.ID, acc.Reembed)
	require.Nil(t, acc.Embedding, "the account records model B before its chunks are B")

	// A run that stops part way, inside a document.
	err = h.Handle(crashCtx, delivery(job, 1))
	require.ErrorIs(t, err, context.Canceled)
	firstRun := e.chunksOf(t, acme, "B")
	require.Greater(t, firstRun, 0)
	require.Less(t, firstRun, total)
	partial := false
	for _, d := range docs {
		n, err := e.vecs.Count(ctx, acme, storage.VectorFilter{Document: d.ID, Model: "B"})
		require.NoError(t, err)
		all, err := e.vecs.Count(ctx, acme, storage.VectorFilter{Document: d.ID})
		require.NoError(t, err)
		partial = partial || n > 0 && n < all
	}
	require.True(t, partial, "the run did not stop inside a document")
	require.Equal(t, apiary.JobRunning, e.job(t, job.ID).Status)
	require.Equal(t, len(docs), e.job(t, job.ID).Counts.DocumentsTotal)

	// The second run does only what is left.
	done := rec.calls[0]
	rec.calls, rec.chunks = nil, nil
	require.NoError(t, h.Handle(ctx, delivery(job, 2)))
	require.NotContains(t, rec.calls, done, "a document finished by the first run was done again")
	secondRun := 0
	for _, n := range rec.chunks {
		secondRun += n
	}
	require.Equal(t, total-firstRun, secondRun, "chunks re-embedded by the first run were done again")

	j := e.job(t, job.ID)
	require.Equal(t, apiary.JobSucceeded, j.Status)
	require.Equal(t, apiary.Counts{DocumentsTotal: 3, DocumentsDone: 3, Chunks: j.Counts.Chunks}, j.Counts)
	require.Contains(t, e.eventTypes(t, job.ID), apiary.EventJobSucceeded)
	require.Equal(t, total, e.chunksOf(t, acme, "B"))
	require.Zero(t, e.chunksOf(t, acme, "A"))
	acc, err = e.recs.Account(ctx, acme)
	require.NoError(t, err)
	require.Equal(t, &apiary.EmbeddingModel{Model: "B", Dim: local.Dim()}, acc.Embedding)

	// The vectors are B's, and queries find the documents again.
	page, err := e.vecs.Scan(ctx, acme, "", 1, storage.VectorFilter{})
	require.NoError(t, err)
	text := openText(t, pipeB, acme, page[0])
	want, err := model{Embedder: local, name: "B", reversed: true}.Embed(ctx, []string{text})
	require.NoError(t, err)
	require.Equal(t, want[0], page[0].Vector)
	hits, err = pipeB.Search(ctx, acme, query)
	require.NoError(t, err)
	require.NotEmpty(t, hits)
	require.Equal(t, apiary.DocumentID("bees"), hits[0].DocumentID)

	// Another account's chunks were not touched.
	require.Equal(t, theirs, e.chunksOf(t, globex, "A"))
	require.Zero(t, e.chunksOf(t, globex, "B"))

	// Once every chunk of acme is B, starting again starts nothing for it.
	again, err = h.Reconcile(ctx)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, globex, again[0].Account)

	// A worker still on A (a rolling upgrade) writes a chunk of A: the next
	// start re-embeds again, in one new job however often it starts.
	ingestWith(t, pipeA, acme, doc("late", "honeybee9 written late by an old worker"))
	again, err = h.Reconcile(ctx)
	require.NoError(t, err)
	require.Len(t, again, 2)
	next := again[0]
	require.Equal(t, acme, next.Account)
	require.NotEqual(t, job.ID, next.ID)
	require.Equal(t, apiary.JobQueued, next.Status)
	again, err = h.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, next.ID, again[0].ID)
}

// openText returns the text of a stored chunk, found through a search with p.
func openText(t *testing.T, p *pipeline.Pipeline, account apiary.AccountID, c storage.VectorRecord) string {
	t.Helper()
	res, err := p.Search(t.Context(), account, pipeline.Query{Text: "honeybee0 honeybee1", TopK: pipeline.MaxTopK, Document: c.Document})
	require.NoError(t, err)
	for _, r := range res {
		if r.ChunkID == c.ChunkID {
			return r.Text
		}
	}
	t.Fatalf("chunk %s is not found", c.ChunkID)
	return ""
}

func TestReconcileRecordsTheModelOfAccountsWithNothingToReembed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.account(t, "acme")
	e.account(t, "globex")
	m := model{Embedder: local.New(local.Config{}), name: "B"}
	ingestWith(t, e.pipelineOf(t, m), "acme", doc("bees", "honeybees make honey"))

	h := workers.NewReembedHandler(workers.ReembedConfig{}, e.jobs, e.recs, e.pipelineOf(t, m))
	started, err := h.Reconcile(ctx)
	require.NoError(t, err)
	require.Empty(t, started)
	for _, id := range []apiary.AccountID{"acme", "globex"} { // chunks all of B; no chunks at all
		acc, err := e.recs.Account(ctx, id)
		require.NoError(t, err)
		require.Equal(t, &apiary.EmbeddingModel{Model: "B", Dim: m.Dim()}, acc.Embedding, "account %s", id)
		require.Empty(t, acc.Reembed)
	}
}

func TestReembedToAnotherDimensionFailsTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.account(t, "acme")
	ingestWith(t, e.pipelineOf(t, model{Embedder: local.New(local.Config{}), name: "A"}), "acme",
		doc("bees", longText("honeybee", 30)), doc("ants", longText("formicidae", 30)))
	before := e.chunksOf(t, "acme", "A")

	wide := model{Embedder: local.New(local.Config{Dim: 512}), name: "C"}
	h := workers.NewReembedHandler(workers.ReembedConfig{}, e.jobs, e.recs, e.pipelineOf(t, wide))
	started, err := h.Reconcile(ctx)
	require.NoError(t, err)
	require.Len(t, started, 1)
	err = h.Handle(ctx, delivery(started[0], 1))
	require.True(t, apiary.IsPermanent(err), "%v", err)
	require.True(t, errors.Is(err, pipeline.ErrDimension), "%v", err)
	require.Contains(t, apiary.Message(err), "re-embedding in place needs the same dimension")

	// The pool gives the job up with that reason; nothing was written.
	e.jobs.GiveUp(ctx, "acme", started[0].ID, 1, err)
	j := e.job(t, started[0].ID)
	require.Equal(t, apiary.JobFailed, j.Status)
	require.Contains(t, j.Error, "the stored chunks have 384 dimensions and the embedder C makes 512")
	require.Equal(t, before, e.chunksOf(t, "acme", "A"))
	acc, err := e.recs.Account(ctx, "acme")
	require.NoError(t, err)
	require.Nil(t, acc.Embedding)
}

func TestCanceledReembedJobStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.account(t, "acme")
	lm := local.New(local.Config{})
	ingestWith(t, e.pipelineOf(t, model{Embedder: lm, name: "A"}), "acme",
		doc("bees", longText("honeybee", 30)), doc("ants", longText("formicidae", 30)), doc("moths", longText("lepidoptera", 30)))

	rec := &counting{Reembedder: e.pipelineOf(t, model{Embedder: lm, name: "B"})}
	h := workers.NewReembedHandler(workers.ReembedConfig{}, e.jobs, e.recs, rec)
	started, err := h.Reconcile(ctx)
	require.NoError(t, err)
	require.Len(t, started, 1)
	rec.before = func(_ context.Context, doc apiary.DocumentID) error {
		if len(rec.calls) == 1 {
			_, err := e.jobs.Cancel(ctx, "acme", started[0].ID)
			return err
		}
		return nil
	}
	require.NoError(t, h.Handle(ctx, delivery(started[0], 1)))
	require.Less(t, len(rec.calls), 3, "the run went on after its job was canceled")
	require.Equal(t, apiary.JobCanceled, e.job(t, started[0].ID).Status)
	acc, err := e.recs.Account(ctx, "acme")
	require.NoError(t, err)
	require.Nil(t, acc.Embedding, "a canceled re-embed recorded the new model")
}
