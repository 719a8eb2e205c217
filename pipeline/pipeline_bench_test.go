package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/embed/onnx"
)

// benchDocument returns a ~2 KB document whose words vary with i.
func benchDocument(i int) string {
	var b strings.Builder
	for s := 0; b.Len() < 2000; s++ {
		fmt.Fprintf(&b, "Sentence %d of document %d mentions topic%d, item%d and the shared vocabulary of invoices. ", s, i, i%50, (i+s)%97)
		if s%4 == 3 {
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

func BenchmarkIngest(b *testing.B) {
	e := newEnv(b, func(c *envConfig) { c.cfg.Chunk = chunk.Config{} })
	docs := make([]string, 64)
	for i := range docs {
		docs[i] = benchDocument(i)
	}
	b.SetBytes(int64(len(docs[0])))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := apiary.Document{ID: apiary.DocumentID(fmt.Sprintf("doc-%d", i)), Text: docs[i%len(docs)]}
		if _, err := e.p.Ingest(b.Context(), job("acme", 1), d); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "documents/s")
}

func BenchmarkSearch(b *testing.B) {
	e := newEnv(b, func(c *envConfig) { c.cfg.Chunk = chunk.Config{Size: 128} })
	for i := range 500 {
		d := apiary.Document{ID: apiary.DocumentID(fmt.Sprintf("doc-%d", i)), Text: benchDocument(i), Metadata: map[string]string{"n": fmt.Sprint(i % 10)}}
		if _, err := e.p.Ingest(b.Context(), job("acme", 1), d); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		q    pipeline.Query
	}{
		{"top5", pipeline.Query{Text: "invoices mentioning topic7 and item42", TopK: 5}},
		{"top5-metadata", pipeline.Query{Text: "invoices mentioning topic7 and item42", Metadata: map[string]string{"n": "3"}, TopK: 5}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := e.p.Search(b.Context(), "acme", bc.q)
				if err != nil || len(res) == 0 {
					b.Fatal(err, len(res))
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
		})
	}
}

// BenchmarkQueryLatency is the query path end to end — embed the query,
// search (hybrid: dense and lexical, fused), unwrap each hit's document key,
// open the chunks — over 10k and 100k stored chunks of one account (100
// chunks per document). It reports the latency's p50 and p95; the 10k case
// is the baseline of the 100k one.
//
// With APIARY_TEST_MODELS_DIR set (make bench fetches the models), queries
// are embedded by the default ONNX model. The stored chunks are embedded by
// the built-in hashing embedder under the model's name and dimension:
// filling 100k chunks through the model would take a quarter of an hour on
// two cores, and what a search costs depends on how many vectors there are
// and their dimension, not on which model made them.
func BenchmarkQueryLatency(b *testing.B) {
	var emb embed.Embedder = local.New(local.Config{})
	if dir := os.Getenv("APIARY_TEST_MODELS_DIR"); dir != "" {
		m, err := onnx.New(onnx.Config{ModelsDir: dir, Model: onnx.DefaultModel})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Close() })
		emb = queryModel{model: m, fill: local.New(local.Config{Dim: m.Dim()})}
	}
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			e := newEnv(b, func(c *envConfig) {
				c.cfg.Chunk = chunk.Config{Size: 32, Overlap: -1}
				c.emb = emb
			})
			stored := 0
			for d := 0; stored < n; d++ {
				var text strings.Builder
				for s := 0; s < 100; s++ {
					fmt.Fprintf(&text, "Chunk %d of document %d is about topic%d, item%d and invoice%d with enough words to fill a chunk of its own here.\n\n", s, d, d%50, (d+s)%97, s)
				}
				rec, err := e.p.Ingest(b.Context(), job("acme", 1), apiary.Document{ID: apiary.DocumentID(fmt.Sprintf("doc-%d", d)), Text: text.String()})
				if err != nil {
					b.Fatal(err)
				}
				stored += rec.Chunks
			}
			q := pipeline.Query{Text: "invoice mentioning topic7 and item42", TopK: 5}
			var took []time.Duration
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				res, err := e.p.Search(b.Context(), "acme", q)
				if err != nil || len(res) == 0 {
					b.Fatal(err, len(res))
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			pct := func(p float64) float64 {
				return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.95), "p95-ms")
			b.ReportMetric(float64(stored), "chunks")
		})
	}
}

// queryModel embeds queries with model and documents with fill, under
// model's name and dimension (see BenchmarkQueryLatency).
type queryModel struct {
	model embed.Embedder
	fill  embed.Embedder
}

func (q queryModel) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	return q.fill.Embed(ctx, texts)
}
func (q queryModel) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	return embed.Query(ctx, q.model, text)
}
func (q queryModel) Dim() int      { return q.model.Dim() }
func (q queryModel) Model() string { return q.model.Model() }

// BenchmarkIngestUnderFlood is one account's ingest latency (~2 KB
// documents, one at a time) alone and while another account keeps six
// large documents (~64 KB) ingesting at once; compare the two ns/op of one
// run. The embedder budget is shared fairly, so the quiet account's batch
// waits for one embedder call at most; what remains of the gap is mostly
// the local vector store's single writer (its upserts and deletes sync the
// log under one lock, first come, first served), as a block profile shows.
func BenchmarkIngestUnderFlood(b *testing.B) {
	const floodDocs = 6
	large := strings.Repeat(benchDocument(0), 32)
	for _, flooded := range []bool{false, true} {
		b.Run(map[bool]string{false: "alone", true: "flooded"}[flooded], func(b *testing.B) {
			e := newEnv(b, func(c *envConfig) { c.cfg.Chunk = chunk.Config{Size: 64} })
			if flooded {
				ctx, cancel := context.WithCancel(b.Context())
				var wg sync.WaitGroup
				defer wg.Wait()
				defer cancel()
				for g := range floodDocs {
					wg.Go(func() {
						for i := 0; ctx.Err() == nil; i++ {
							d := apiary.Document{ID: apiary.DocumentID(fmt.Sprintf("flood-%d-%d", g, i)), Text: large}
							if _, err := e.p.Ingest(ctx, job("globex", 1), d); err != nil && ctx.Err() == nil {
								b.Error(err)
								return
							}
						}
					})
				}
			}
			i := 0
			for b.Loop() {
				d := apiary.Document{ID: apiary.DocumentID(fmt.Sprintf("doc-%d", i)), Text: benchDocument(i)}
				if _, err := e.p.Ingest(b.Context(), job("acme", 1), d); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
