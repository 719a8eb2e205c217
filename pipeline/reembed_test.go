package pipeline_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/storage"
)

// renamed is an embedder under another model name.
type renamed struct {
	embed.Embedder
	model string
}

func (r renamed) Model() string { return r.model }

func TestReembedInPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, func(c *envConfig) { c.emb = renamed{local.New(local.Config{}), "A"} })
	text := strings.Repeat("The queen lays eggs in the comb. Workers forage for nectar and pollen in the meadow, "+
		"and drones wait for the mating flight in late spring. ", 6)
	e.ingest(t, "acme", 1, apiary.Document{ID: "hive", Text: text})
	e.ingest(t, "globex", 1, apiary.Document{ID: "hive", Text: text})
	total := e.count(t, "acme", "hive")
	require.Greater(t, total, 1)

	b, err := pipeline.New(pipeline.Config{Chunk: chunk.Config{Size: 40, Overlap: 5}, EmbedBatch: 1},
		renamed{local.New(local.Config{}), "B"}, e.keys, e.vecs, e.docs)
	require.NoError(t, err)
	q := pipeline.Query{Text: "queen lays eggs", TopK: 3, Mode: pipeline.ModeDense} // words are found whatever the model
	res, err := b.Search(ctx, "acme", q)
	require.NoError(t, err)
	require.Empty(t, res, "a query of model B ranked chunks of model A")
	stale, err := b.StaleChunks(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, total, stale)

	n, err := b.Reembed(ctx, "acme", "hive")
	require.NoError(t, err)
	require.Equal(t, total, n)
	n, err = b.Reembed(ctx, "acme", "hive")
	require.NoError(t, err)
	require.Zero(t, n, "chunks already of model B were embedded again")
	stale, err = b.StaleChunks(ctx, "acme")
	require.NoError(t, err)
	require.Zero(t, stale)
	res, err = b.Search(ctx, "acme", q)
	require.NoError(t, err)
	require.NotEmpty(t, res)
	require.Contains(t, res[0].Text, "queen lays eggs")

	// Another account's chunks stay A; a document with no record is nothing to do.
	a, err := e.vecs.Count(ctx, "globex", storage.VectorFilter{Model: "A"})
	require.NoError(t, err)
	require.Equal(t, e.count(t, "globex", "hive"), a)
	n, err = b.Reembed(ctx, "acme", "never-ingested")
	require.NoError(t, err)
	require.Zero(t, n)

	// Another dimension is refused before anything is written.
	wide, err := pipeline.New(pipeline.Config{}, renamed{local.New(local.Config{Dim: 512}), "C"}, e.keys, e.vecs, e.docs)
	require.NoError(t, err)
	_, err = wide.Reembed(ctx, "globex", "hive")
	require.ErrorIs(t, err, pipeline.ErrDimension)
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.Equal(t, a, e.count(t, "globex", "hive"))
}
