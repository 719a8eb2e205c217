package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage"
	vlocal "github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ pipeline.Docs = (*records.Store)(nil)

// env is a pipeline over real adapters: the local vector store in a
// temporary directory, the record store over an in-memory KV, the local
// keyring and the local embedder.
type env struct {
	p        *pipeline.Pipeline
	vecs     *vlocal.Store
	vecDir   string
	docs     pipeline.Docs
	keys     *keyring.Keyring
	accounts []apiary.AccountID
}

type envOption func(*envConfig)

type envConfig struct {
	cfg  pipeline.Config
	emb  embed.Embedder // default: the local embedder
	docs func(pipeline.Docs) pipeline.Docs
	vecs func(storage.VectorStore) storage.VectorStore
}

func newEnv(tb testing.TB, opts ...envOption) *env {
	tb.Helper()
	ec := envConfig{cfg: pipeline.Config{Chunk: chunk.Config{Size: 40, Overlap: 5}}}
	for _, o := range opts {
		o(&ec)
	}
	ctx := context.Background()
	dir := tb.TempDir()
	vecs, err := vlocal.Open(filepath.Join(dir, "vectors"), vlocal.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, vecs.Close()) })
	recs, err := records.Open(ctx, memkv.New())
	require.NoError(tb, err)
	var docs pipeline.Docs = recs
	if ec.docs != nil {
		docs = ec.docs(docs)
	}
	keys, err := keyring.New(keyring.Config{Dir: filepath.Join(dir, "keys"), RootKey: bytes.Repeat([]byte{9}, 32)})
	require.NoError(tb, err)
	accounts := []apiary.AccountID{"acme", "globex"}
	for _, a := range accounts {
		require.NoError(tb, keys.CreateAccountKey(ctx, a))
	}
	var vs storage.VectorStore = vecs
	if ec.vecs != nil {
		vs = ec.vecs(vs)
	}
	if ec.emb == nil {
		ec.emb = local.New(local.Config{})
	}
	p, err := pipeline.New(ec.cfg, ec.emb, keys, vs, docs)
	require.NoError(tb, err)
	return &env{p: p, vecs: vecs, vecDir: filepath.Join(dir, "vectors"), docs: docs, keys: keys, accounts: accounts}
}

func job(account apiary.AccountID, version uint64) apiary.Job {
	return apiary.Job{ID: apiary.NewJobID(), Account: account, Version: version}
}

func (e *env) ingest(t testing.TB, account apiary.AccountID, version uint64, doc apiary.Document) apiary.DocumentRecord {
	t.Helper()
	rec, err := e.p.Ingest(context.Background(), job(account, version), doc)
	require.NoError(t, err)
	return rec
}

func (e *env) count(t testing.TB, account apiary.AccountID, doc apiary.DocumentID) int {
	t.Helper()
	n, err := e.vecs.Count(context.Background(), account, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	return n
}

const (
	gardening = "Tomatoes need full sun, rich compost and deep watering twice a week. " +
		"Prune the suckers of tomato plants and stake them before the fruit sets. " +
		"Mulch keeps the soil moist and the tomato roots cool in summer."
	databases = "A database index speeds up queries by keeping sorted keys. " +
		"B-tree indexes suit range scans; hash indexes suit equality lookups. " +
		"Vacuum the database tables regularly so that the indexes stay small."
	sailing = "Reef the mainsail early when the wind rises above twenty knots. " +
		"Keep the jib sheet ready and watch the telltales while sailing upwind."
)

func longText(topic string, paragraphs int) string {
	var b strings.Builder
	for i := range paragraphs {
		fmt.Fprintf(&b, "Paragraph %d about %s. %s\n\n", i, topic, strings.Repeat(topic+" words and more words. ", 6))
	}
	return b.String()
}

func TestIngestThenSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.ingest(t, "acme", 1, apiary.Document{ID: "garden.txt", Title: "Garden notes", Text: gardening, Metadata: map[string]string{"team": "green"}})
	e.ingest(t, "acme", 1, apiary.Document{ID: "db.md", Text: databases})
	e.ingest(t, "acme", 1, apiary.Document{ID: "sail.txt", Text: sailing})

	for q, want := range map[string]apiary.DocumentID{
		"how often should I water tomato plants": "garden.txt",
		"hash index for equality lookups":        "db.md",
		"reef the mainsail in strong wind":       "sail.txt",
	} {
		res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: q, TopK: 5})
		require.NoError(t, err, q)
		require.NotEmpty(t, res, q)
		require.Equal(t, want, res[0].DocumentID, q)
		require.LessOrEqual(t, len(res), 5)
		for i := 1; i < len(res); i++ {
			require.GreaterOrEqual(t, res[i-1].Score, res[i].Score, "results not best first")
		}
	}
	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato compost", TopK: 1})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, "Garden notes", res[0].Title)
	require.Equal(t, map[string]string{"team": "green"}, res[0].Metadata)
	require.Contains(t, gardening, res[0].Text)
	require.NotEmpty(t, res[0].ChunkID)
}

func TestIngestRawFormats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	page := `<html><head><title>Release notes</title><script>var secret = "zzz";</script></head>
<body><h1>Version 2</h1><p>The exporter now writes parquet files.</p></body></html>`
	rec := e.ingest(t, "acme", 1, apiary.Document{ID: "notes", ContentType: "text/html; charset=utf-8", Raw: []byte(page)})
	require.Equal(t, len(page), rec.Bytes)
	info, err := e.p.Describe(ctx, rec)
	require.NoError(t, err)
	require.Equal(t, "Release notes", info.Title)

	e.ingest(t, "acme", 1, apiary.Document{ID: "people.csv", Raw: []byte("name,role\nAnn,pilot\nBob,baker\n")})

	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "parquet exporter", TopK: 5})
	require.NoError(t, err)
	require.Equal(t, apiary.DocumentID("notes"), res[0].DocumentID)
	require.Equal(t, "Release notes", res[0].Title)
	require.NotContains(t, res[0].Text, "secret", "script text was indexed")

	res, err = e.p.Search(ctx, "acme", pipeline.Query{Text: "who is the pilot", Document: "people.csv", TopK: 5})
	require.NoError(t, err)
	require.NotEmpty(t, res)
	require.Contains(t, res[0].Text, "name: Ann; role: pilot")
}

// TestIngestRealDocuments ingests a PDF and a DOCX made by LibreOffice
// (pipeline/extract/testdata), sent without a useful content type or
// extension, and finds their text; a PDF chunk knows its pages.
func TestIngestRealDocuments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for id, file := range map[apiary.DocumentID]string{"hive-pdf": "hive.pdf", "hive-docx": "hive.docx"} {
		raw, err := os.ReadFile(filepath.Join("extract", "testdata", file))
		require.NoError(t, err)
		rec := e.ingest(t, "acme", 1, apiary.Document{ID: id, ContentType: "application/octet-stream", Raw: raw})
		info, err := e.p.Describe(ctx, rec)
		require.NoError(t, err)
		require.Equal(t, "Keeping Bees in Small Gardens", info.Title)
	}
	for id, want := range map[apiary.DocumentID]struct {
		query string
		pages *pipeline.PageRange
	}{
		"hive-pdf":  {"swarm hanging from a branch, shake the cluster into a cardboard box", &pipeline.PageRange{First: 2, Last: 2}},
		"hive-docx": {"swarm hanging from a branch, shake the cluster into a cardboard box", nil},
	} {
		res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: want.query, TopK: 3, Document: id})
		require.NoError(t, err)
		require.NotEmpty(t, res, id)
		require.Contains(t, res[0].Text, "cardboard box", id)
		require.Equal(t, want.pages, res[0].Pages, id)
	}
	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "single hive behind terraced houses", TopK: 1, Document: "hive-pdf"})
	require.NoError(t, err)
	require.Equal(t, &pipeline.PageRange{First: 1, Last: 1}, res[0].Pages)
}

func TestNewerVersionReplacesChunks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	rec1 := e.ingest(t, "acme", 1, apiary.Document{ID: "doc", Text: longText("tomato", 12)})
	require.Greater(t, rec1.Chunks, 3)
	require.Equal(t, rec1.Chunks, e.count(t, "acme", "doc"))

	rec2 := e.ingest(t, "acme", 2, apiary.Document{ID: "doc", Text: databases})
	require.Equal(t, uint64(2), rec2.Version)
	require.Less(t, rec2.Chunks, rec1.Chunks)
	require.Equal(t, rec2.Chunks, e.count(t, "acme", "doc"))
	require.NotEqual(t, rec1.WrappedKey, rec2.WrappedKey, "a new version gets a new data key")
	require.Equal(t, rec1.CreatedAt, rec2.CreatedAt)

	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato words", TopK: 100})
	require.NoError(t, err)
	for _, r := range res {
		require.NotContains(t, r.Text, "tomato", "a chunk of the old version is still found")
	}
}

func TestRedeliveredSameVersionIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	doc := apiary.Document{ID: "doc", Text: longText("sailing", 8)}
	j := job("acme", 7)
	rec1, err := e.p.Ingest(ctx, j, doc)
	require.NoError(t, err)
	ids1 := chunkIDs(t, e, "acme", "doc")

	rec2, err := e.p.Ingest(ctx, j, doc)
	require.NoError(t, err)
	require.Equal(t, rec1.WrappedKey, rec2.WrappedKey, "a redelivery reuses the data key")
	require.Equal(t, rec1.Chunks, rec2.Chunks)
	require.Equal(t, rec1.Chunks, e.count(t, "acme", "doc"))
	require.Equal(t, ids1, chunkIDs(t, e, "acme", "doc"))
	want := make([]apiary.ChunkID, rec1.Chunks)
	for i := range want {
		want[i] = apiary.ChunkIDFor("acme", "doc", 7, i)
	}
	slices.Sort(want)
	require.Equal(t, want, ids1)
}

// failingDocs fails PutDocument while fail is set (a worker that crashes
// after writing vectors but before its record), and can run a hook once,
// before a PutDocument goes through.
type failingDocs struct {
	pipeline.Docs
	fail   atomic.Bool
	before atomic.Pointer[func()]
}

func (f *failingDocs) PutDocument(ctx context.Context, rec apiary.DocumentRecord) error {
	if hook := f.before.Swap(nil); hook != nil {
		(*hook)()
	}
	if f.fail.Load() {
		return apiary.E(apiary.KindUnavailable, "record store down")
	}
	return f.Docs.PutDocument(ctx, rec)
}

func TestRetryAfterFailedRecordWrite(t *testing.T) {
	t.Parallel()
	var fd *failingDocs
	e := newEnv(t, func(c *envConfig) {
		c.docs = func(d pipeline.Docs) pipeline.Docs { fd = &failingDocs{Docs: d}; return fd }
	})
	ctx := t.Context()
	e.ingest(t, "acme", 1, apiary.Document{ID: "doc", Text: gardening})

	fd.fail.Store(true)
	j := job("acme", 2)
	_, err := e.p.Ingest(ctx, j, apiary.Document{ID: "doc", Text: longText("sailing", 6)})
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
	// The half-written version 2 is invisible: search still answers from version 1.
	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "sailing words", TopK: 100})
	require.NoError(t, err)
	for _, r := range res {
		require.NotContains(t, r.Text, "sailing")
	}

	fd.fail.Store(false)
	rec, err := e.p.Ingest(ctx, j, apiary.Document{ID: "doc", Text: longText("sailing", 6)})
	require.NoError(t, err)
	require.Equal(t, rec.Chunks, e.count(t, "acme", "doc"))
	res, err = e.p.Search(ctx, "acme", pipeline.Query{Text: "sailing words", TopK: 5})
	require.NoError(t, err)
	require.NotEmpty(t, res)
	require.Contains(t, res[0].Text, "sailing")
}

func chunkIDs(t *testing.T, e *env, account apiary.AccountID, doc apiary.DocumentID) []apiary.ChunkID {
	t.Helper()
	hits, err := e.vecs.Search(t.Context(), account, queryVector(t, "words"), 1000, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	ids := make([]apiary.ChunkID, len(hits))
	for i, h := range hits {
		ids[i] = h.ChunkID
	}
	slices.Sort(ids)
	return ids
}

func queryVector(t *testing.T, text string) []float32 {
	t.Helper()
	v, err := local.New(local.Config{}).Embed(t.Context(), []string{text})
	require.NoError(t, err)
	return v[0]
}

// countingVectors counts writes to the vector store.
// and can run a hook once, before the first write goes through.
type countingVectors struct {
	storage.VectorStore
	upserts atomic.Int64
	before  atomic.Pointer[func()]
}

func (c *countingVectors) Upsert(ctx context.Context, account apiary.AccountID, recs []storage.VectorRecord) error {
	c.upserts.Add(1)
	if hook := c.before.Swap(nil); hook != nil {
		(*hook)()
	}
	return c.VectorStore.Upsert(ctx, account, recs)
}

func TestOlderVersionConflicts(t *testing.T) {
	t.Parallel()
	var cv *countingVectors
	e := newEnv(t, func(c *envConfig) {
		c.vecs = func(v storage.VectorStore) storage.VectorStore { cv = &countingVectors{VectorStore: v}; return cv }
	})
	ctx := t.Context()
	rec2 := e.ingest(t, "acme", 2, apiary.Document{ID: "doc", Text: databases})
	upserts := cv.upserts.Load()

	_, err := e.p.Ingest(ctx, job("acme", 1), apiary.Document{ID: "doc", Text: longText("tomato", 5)})
	require.Error(t, err)
	require.Equal(t, apiary.KindConflict, apiary.KindOf(err))
	require.ErrorContains(t, err, "superseded by a newer version")
	require.Equal(t, upserts, cv.upserts.Load(), "an older version wrote vectors")

	got, err := e.docs.Document(ctx, "acme", "doc")
	require.NoError(t, err)
	require.Equal(t, rec2.Version, got.Version)
	require.Equal(t, rec2.WrappedKey, got.WrappedKey)
	require.Equal(t, rec2.Chunks, e.count(t, "acme", "doc"))
	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "database index", TopK: 5})
	require.NoError(t, err)
	require.NotEmpty(t, res)
	require.Equal(t, apiary.DocumentID("doc"), res[0].DocumentID)
}

// A newer version lands while an older one is in flight: before the older
// one's chunk writes, or after its last look at the record and before its
// record write (where the record store's compare-and-swap refuses it). The
// older one returns Conflict and removes its own chunks only.
func TestNewerVersionLandsMidway(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		hook func(*countingVectors, *failingDocs) *atomic.Pointer[func()]
	}{
		{"before the chunk writes", func(cv *countingVectors, _ *failingDocs) *atomic.Pointer[func()] { return &cv.before }},
		{"before the record write", func(_ *countingVectors, fd *failingDocs) *atomic.Pointer[func()] { return &fd.before }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var cv *countingVectors
			var fd *failingDocs
			e := newEnv(t, func(c *envConfig) {
				c.vecs = func(v storage.VectorStore) storage.VectorStore { cv = &countingVectors{VectorStore: v}; return cv }
				c.docs = func(d pipeline.Docs) pipeline.Docs { fd = &failingDocs{Docs: d}; return fd }
			})
			ctx := t.Context()
			var rec2 apiary.DocumentRecord
			hook := func() { rec2 = e.ingest(t, "acme", 2, apiary.Document{ID: "doc", Text: databases}) }
			at := tt.hook(cv, fd)
			at.Store(&hook)

			_, err := e.p.Ingest(ctx, job("acme", 1), apiary.Document{ID: "doc", Text: longText("tomato", 5)})
			require.Equal(t, apiary.KindConflict, apiary.KindOf(err), "%v", err)
			require.Nil(t, at.Load(), "the hook did not run")

			got, err := e.docs.Document(ctx, "acme", "doc")
			require.NoError(t, err)
			require.Equal(t, uint64(2), got.Version)
			require.Equal(t, rec2.WrappedKey, got.WrappedKey)
			require.Equal(t, rec2.Chunks, e.count(t, "acme", "doc"), "version 1 chunks left behind, or version 2 chunks removed")
			res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "database index", TopK: 100})
			require.NoError(t, err)
			require.Len(t, res, rec2.Chunks)
			for _, r := range res {
				require.NotContains(t, r.Text, "tomato")
			}
		})
	}
}

// A chunk sealed with another key than its record's (two attempts of one
// version racing, see Ingest) or damaged is skipped: the query answers from
// the other chunks, fills TopK, and logs one warning without text.
func TestSearchSkipsChunksThatDoNotOpen(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	e := newEnv(t, func(c *envConfig) { c.cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	ctx := t.Context()
	rec := e.ingest(t, "acme", 1, apiary.Document{ID: "doc", Text: longText("tomato", 20)})
	require.Greater(t, rec.Chunks, 7)
	e.ingest(t, "acme", 1, apiary.Document{ID: "other", Text: gardening})

	// Replace the two best hits for the query in place, by chunk id.
	const topK = 3
	hits, err := e.vecs.Search(ctx, "acme", queryVector(t, "tomato"), topK, storage.VectorFilter{Document: "doc"})
	require.NoError(t, err)
	require.Len(t, hits, topK)
	garbage, losing := hits[0].VectorRecord, hits[1].VectorRecord
	garbage.Sealed = bytes.Repeat([]byte{0xAB}, 64)
	losing.Sealed, err = encrypt.Seal(bytes.Repeat([]byte{7}, encrypt.KeySize), []byte(`{"text":"tomato"}`),
		encrypt.AAD("acme", "doc", string(losing.ChunkID)))
	require.NoError(t, err)
	require.NoError(t, e.vecs.Upsert(ctx, "acme", []storage.VectorRecord{garbage, losing}))
	bad := []apiary.ChunkID{garbage.ChunkID, losing.ChunkID}

	// Dense, so that the two replaced chunks are the best hits.
	res, err := e.p.Search(ctx, "acme", pipeline.Query{Mode: pipeline.ModeDense, Text: "tomato", TopK: topK, Document: "doc"})
	require.NoError(t, err)
	require.Len(t, res, topK, "TopK not filled from the remaining hits")
	for _, r := range res {
		require.NotContains(t, bad, r.ChunkID)
		require.Contains(t, r.Text, "tomato")
	}
	res, err = e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato", TopK: 100})
	require.NoError(t, err)
	require.Len(t, res, rec.Chunks-len(bad)+e.count(t, "acme", "other"))

	var lines []map[string]any
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		lines = append(lines, m)
	}
	require.Len(t, lines, 2, "one warning per query:\n%s", logs.String())
	for _, m := range lines {
		require.Equal(t, "WARN", m["level"])
		require.Equal(t, "acme", m["account"])
		require.Equal(t, []any{"doc"}, m["documents"])
		require.EqualValues(t, len(bad), m["chunks"])
	}
	require.NotContains(t, logs.String(), "tomato", "document text in a log line")
	require.NotContains(t, logs.String(), string(bad[0]), "only account and document ids are logged")
}

func TestAccountsAreIsolated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.ingest(t, "acme", 1, apiary.Document{ID: "secret-plan", Text: gardening})

	res, err := e.p.Search(ctx, "globex", pipeline.Query{Text: "tomato compost", TopK: 5})
	require.NoError(t, err)
	require.Empty(t, res)
	res, err = e.p.Search(ctx, "globex", pipeline.Query{Text: "tomato compost", Document: "secret-plan", TopK: 5})
	require.NoError(t, err)
	require.Empty(t, res)

	err = e.p.DeleteDocument(ctx, "globex", "secret-plan")
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
	require.Positive(t, e.count(t, "acme", "secret-plan"))

	// Same document id in both accounts: two independent documents.
	e.ingest(t, "globex", 1, apiary.Document{ID: "secret-plan", Text: sailing})
	res, err = e.p.Search(ctx, "globex", pipeline.Query{Text: "tomato compost", TopK: 100})
	require.NoError(t, err)
	for _, r := range res {
		require.NotContains(t, r.Text, "omato")
	}
	res, err = e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato compost", TopK: 5})
	require.NoError(t, err)
	require.Contains(t, res[0].Text, "omato")
}

func TestMetadataFilter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.ingest(t, "acme", 1, apiary.Document{ID: "red", Text: gardening, Metadata: map[string]string{"team": "red", "lang": "en"}})
	e.ingest(t, "acme", 1, apiary.Document{ID: "blue", Text: gardening + " Blue team copy.", Metadata: map[string]string{"team": "blue", "lang": "en"}})
	e.ingest(t, "acme", 1, apiary.Document{ID: "plain", Text: gardening})

	tests := []struct {
		filter map[string]string
		want   []apiary.DocumentID
	}{
		{map[string]string{"team": "blue"}, []apiary.DocumentID{"blue"}},
		{map[string]string{"team": "red", "lang": "en"}, []apiary.DocumentID{"red"}},
		{map[string]string{"lang": "en"}, []apiary.DocumentID{"blue", "red"}},
		{map[string]string{"team": "green"}, nil},
		{map[string]string{"team": "red", "lang": "fr"}, nil},
	}
	for _, tt := range tests {
		res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato sun", TopK: 100, Metadata: tt.filter})
		require.NoError(t, err)
		require.Equal(t, tt.want, docSet(res), "filter %v", tt.filter)
	}
}

// Title and metadata are kept once, in the document record: a chunk's
// sealed bytes are the same size whatever the document's metadata, and
// query results still carry both.
func TestMetadataStoredOncePerDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	big := map[string]string{}
	for i := range 7 {
		big[fmt.Sprintf("field%d", i)] = strings.Repeat(string(rune('a'+i)), apiary.MaxMetadataValueBytes)
	}
	text := longText("gardening", 30)
	rich := e.ingest(t, "acme", 1, apiary.Document{ID: "rich", Title: "Rich", Text: text, Metadata: big})
	bare := e.ingest(t, "acme", 1, apiary.Document{ID: "bare", Text: text})
	require.Greater(t, rich.Chunks, 20)
	require.Equal(t, rich.Chunks, bare.Chunks)

	sealedSizes := func(doc apiary.DocumentID) map[int]int {
		hits, err := e.vecs.Search(ctx, "acme", queryVector(t, "gardening"), 1000, storage.VectorFilter{Document: doc})
		require.NoError(t, err)
		require.Len(t, hits, rich.Chunks)
		sizes := map[int]int{}
		for _, h := range hits {
			sizes[h.Index] = len(h.Sealed)
		}
		return sizes
	}
	require.Equal(t, sealedSizes("bare"), sealedSizes("rich"), "chunks carry the document's metadata")

	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "gardening words", TopK: 100, Metadata: map[string]string{"field0": big["field0"]}})
	require.NoError(t, err)
	require.Len(t, res, rich.Chunks, "the metadata filter uses the document's metadata")
	for _, r := range res {
		require.Equal(t, apiary.DocumentID("rich"), r.DocumentID)
		require.Equal(t, "Rich", r.Title)
		require.Equal(t, big, r.Metadata)
	}
	res, err = e.p.Search(ctx, "acme", pipeline.Query{Text: "gardening words", TopK: 100, Document: "bare"})
	require.NoError(t, err)
	require.NotEmpty(t, res)
	require.Equal(t, map[string]string{}, res[0].Metadata, "a document without metadata shows an empty object")
}

func TestIngestChecksTitleAndMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, doc := range []apiary.Document{
		{ID: "t", Text: gardening, Title: strings.Repeat("t", apiary.MaxTitleBytes+1)},
		{ID: "m", Text: gardening, Metadata: map[string]string{"k": strings.Repeat("v", apiary.MaxMetadataValueBytes+1)}},
	} {
		_, err := e.p.Ingest(t.Context(), job("acme", 1), doc)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	}
}

func TestDocumentFilter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.ingest(t, "acme", 1, apiary.Document{ID: "garden", Text: gardening})
	e.ingest(t, "acme", 1, apiary.Document{ID: "db", Text: databases})

	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato compost", Document: "db", TopK: 100})
	require.NoError(t, err)
	require.Equal(t, []apiary.DocumentID{"db"}, docSet(res))
	res, err = e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato", Document: "missing", TopK: 5})
	require.NoError(t, err)
	require.Empty(t, res)
}

func docSet(res []pipeline.Result) []apiary.DocumentID {
	var out []apiary.DocumentID
	for _, r := range res {
		if !slices.Contains(out, r.DocumentID) {
			out = append(out, r.DocumentID)
		}
	}
	slices.Sort(out)
	return out
}

func TestDeleteDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.ingest(t, "acme", 1, apiary.Document{ID: "garden", Text: gardening})
	e.ingest(t, "acme", 1, apiary.Document{ID: "db", Text: databases})

	require.NoError(t, e.p.DeleteDocument(ctx, "acme", "garden"))
	require.Zero(t, e.count(t, "acme", "garden"))
	_, err := e.docs.Document(ctx, "acme", "garden")
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
	require.Positive(t, e.count(t, "acme", "db"), "another document was touched")

	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato compost", TopK: 100})
	require.NoError(t, err)
	require.Equal(t, []apiary.DocumentID{"db"}, docSet(res))

	err = e.p.DeleteDocument(ctx, "acme", "garden")
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
}

func TestNothingStoredInTheClear(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	const marker = "Zanzibarquux"
	text := "The launch code word is " + marker + ". " + gardening
	rec := e.ingest(t, "acme", 1, apiary.Document{
		ID: "doc", Title: "Title " + marker, Text: text,
		Metadata: map[string]string{"owner": "Owner" + marker},
	})
	require.NotEmpty(t, rec.Sealed)
	require.NotContains(t, string(rec.Sealed), marker)
	stored, err := e.docs.Document(ctx, "acme", "doc")
	require.NoError(t, err)
	require.NotContains(t, string(stored.Sealed), marker)
	require.NotContains(t, string(stored.WrappedKey), marker)

	hits, err := e.vecs.Search(ctx, "acme", queryVector(t, marker), 100, storage.VectorFilter{})
	require.NoError(t, err)
	require.NotEmpty(t, hits)
	for _, h := range hits {
		require.NotContains(t, string(h.Sealed), marker)
		require.NotContains(t, string(h.Sealed), "launch code")
	}
	// Nor on disk: no file of the vector store holds it.
	err = filepath.WalkDir(e.vecDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		require.False(t, bytes.Contains(b, []byte(marker)), "%s holds plaintext", path)
		require.False(t, bytes.Contains(b, []byte("compost")), "%s holds plaintext", path)
		return nil
	})
	require.NoError(t, err)

	info, err := e.p.Describe(ctx, stored)
	require.NoError(t, err)
	require.Equal(t, pipeline.DocumentInfo{Title: "Title " + marker, Metadata: map[string]string{"owner": "Owner" + marker}}, info)

	// A record moved to another document id or account does not open.
	moved := stored
	moved.ID = "other"
	_, err = e.p.Describe(ctx, moved)
	require.Equal(t, apiary.KindPermanent, apiary.KindOf(err))
	moved = stored
	moved.Account = "globex"
	_, err = e.p.Describe(ctx, moved)
	require.Equal(t, apiary.KindPermanent, apiary.KindOf(err))
}

func TestIngestRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *envConfig) { c.cfg.MaxDocumentBytes = 1000 })
	ctx := t.Context()
	const secret = "Confidential-Body-Text"
	tests := []struct {
		name string
		job  apiary.Job
		doc  apiary.Document
		kind apiary.Kind
		msg  string
	}{
		{"no text", job("acme", 1), apiary.Document{ID: "d", Text: " \n\t "}, apiary.KindInvalid, "document has no text"},
		{"no content", job("acme", 1), apiary.Document{ID: "d"}, apiary.KindInvalid, "document has no text"},
		{"html without text", job("acme", 1), apiary.Document{ID: "d.html", Raw: []byte("<script>" + secret + "</script>")}, apiary.KindInvalid, "document has no text"},
		{"unsupported type", job("acme", 1), apiary.Document{ID: "d.odt", ContentType: "application/vnd.oasis.opendocument.text", Raw: []byte(secret)}, apiary.KindInvalid, "unsupported content type"},
		{"not a pdf", job("acme", 1), apiary.Document{ID: "d.pdf", ContentType: "application/pdf", Raw: []byte(secret)}, apiary.KindInvalid, "extract pdf"},
		{"bad utf-8 text", job("acme", 1), apiary.Document{ID: "d", Text: secret + "\xff"}, apiary.KindInvalid, "not valid UTF-8"},
		{"bad utf-8 raw", job("acme", 1), apiary.Document{ID: "d.txt", Raw: []byte(secret + "\xff")}, apiary.KindInvalid, "not valid UTF-8"},
		{"bad json", job("acme", 1), apiary.Document{ID: "d.json", Raw: []byte(`{"a": ` + secret)}, apiary.KindInvalid, "extract json"},
		{"too large", job("acme", 1), apiary.Document{ID: "d", Text: strings.Repeat(secret+" ", 100)}, apiary.KindTooLarge, "limit is 1000"},
		{"extracted text over the limit", job("acme", 1), apiary.Document{ID: "d.csv", Raw: []byte(secret + "\n" + strings.Repeat("1\n", 100))}, apiary.KindTooLarge, "extract csv: the text would pass the document limit of 1000 bytes"},
		{"no version", job("acme", 0), apiary.Document{ID: "d", Text: secret}, apiary.KindInvalid, "version"},
		{"bad account", job("ACME!", 1), apiary.Document{ID: "d", Text: secret}, apiary.KindInvalid, "account id"},
		{"bad document id", job("acme", 1), apiary.Document{ID: " d", Text: secret}, apiary.KindInvalid, "document id"},
		{"account without key", job("initech", 1), apiary.Document{ID: "d", Text: secret}, apiary.KindNotFound, "no key"},
	}
	for _, tt := range tests {
		_, err := e.p.Ingest(ctx, tt.job, tt.doc)
		require.Error(t, err, tt.name)
		require.Equal(t, tt.kind, apiary.KindOf(err), "%s: %v", tt.name, err)
		require.ErrorContains(t, err, tt.msg, tt.name)
		require.NotContains(t, err.Error(), "Confidential", tt.name)
	}
	n, err := e.vecs.Count(ctx, "acme", storage.VectorFilter{})
	require.NoError(t, err)
	require.Zero(t, n, "a rejected document left vectors behind")
}

func TestSearchRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for name, q := range map[string]pipeline.Query{
		"empty":        {},
		"blank":        {Text: "  \n"},
		"topk high":    {Text: "x", TopK: 101},
		"topk zero":    {Text: "x"},
		"topk neg":     {Text: "x", TopK: -1},
		"bad document": {Text: "x", Document: "\x00"},
	} {
		_, err := e.p.Search(ctx, "acme", q)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%s: %v", name, err)
	}
	_, err := e.p.Search(ctx, "", pipeline.Query{Text: "x", TopK: 1})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestSearchTopK(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	rec := e.ingest(t, "acme", 1, apiary.Document{ID: "doc", Text: longText("tomato", 20)})
	require.Greater(t, rec.Chunks, 7)
	res, err := e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato", TopK: 5})
	require.NoError(t, err)
	require.Len(t, res, 5)
	res, err = e.p.Search(ctx, "acme", pipeline.Query{Text: "tomato", TopK: 100})
	require.NoError(t, err)
	require.Len(t, res, rec.Chunks)
}

func TestConcurrentIngestSharesBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *envConfig) { c.cfg.EmbedConcurrency = 1; c.cfg.EmbedBatch = 2 })
	ctx := t.Context()
	errs := make(chan error, 6)
	for i := range 6 {
		go func() {
			_, err := e.p.Ingest(ctx, job("acme", 1), apiary.Document{ID: apiary.DocumentID(fmt.Sprintf("doc-%d", i)), Text: longText("topic", 4)})
			errs <- err
		}()
	}
	for range 6 {
		require.NoError(t, <-errs)
	}
	n, err := e.vecs.Count(ctx, "acme", storage.VectorFilter{})
	require.NoError(t, err)
	require.Positive(t, n)
}

// heldEmbedder is the local embedder, except that each call reports its
// first text on calls as it starts and finishes only when next lets it.
type heldEmbedder struct {
	embed.Embedder
	calls chan string
	next  chan struct{}
}

func (h *heldEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	h.calls <- texts[0]
	select {
	case <-h.next:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.Embedder.Embed(ctx, texts)
}

// The embedder budget is shared fairly among accounts: an account's first
// batch runs before the batches another account queued earlier.
func TestEmbedBudgetIsFairAmongAccounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &heldEmbedder{Embedder: local.New(local.Config{}), calls: make(chan string, 64), next: make(chan struct{})}
		e := newEnv(t, func(c *envConfig) { c.cfg.EmbedConcurrency = 1; c.cfg.EmbedBatch = 1; c.emb = h })
		ctx := t.Context()
		errs := make(chan error, 4)
		start := func(account apiary.AccountID, id apiary.DocumentID, text string) {
			go func() {
				_, err := e.p.Ingest(ctx, job(account, 1), apiary.Document{ID: id, Text: text})
				errs <- err
			}()
			synctest.Wait() // it embeds, or waits for the budget
		}
		for i := range 3 {
			start("globex", apiary.DocumentID(fmt.Sprint("flood-", i)), longText("wasps", 3))
		}
		start("acme", "quiet", gardening)
		require.Contains(t, <-h.calls, "wasps", "globex's first batch holds the budget, its other documents and acme's wait")
		h.next <- struct{}{}
		synctest.Wait()
		require.Contains(t, <-h.calls, "Tomatoes", "acme's batch goes before globex's queued ones")
		close(h.next)
		for range 4 {
			require.NoError(t, <-errs)
		}
	})
}

func TestIngestCanceled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("worker stopping"))
	_, err := e.p.Ingest(ctx, job("acme", 1), apiary.Document{ID: "doc", Text: gardening})
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, pipeline.Config{}.Validate())
	err := pipeline.Config{EmbedBatch: -1, MaxDocumentBytes: -1, EmbedConcurrency: -1, Chunk: chunk.Config{Size: 10, Overlap: 20}}.Validate()
	for _, msg := range []string{"EmbedBatch", "MaxDocumentBytes", "EmbedConcurrency", "Overlap"} {
		require.ErrorContains(t, err, msg)
	}
	_, err = pipeline.New(pipeline.Config{}, nil, nil, nil, nil)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}
