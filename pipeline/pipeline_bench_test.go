package pipeline_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
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
// search, unwrap each hit's document key, open the chunks — over 10k and 100k
// stored chunks of one account (100 chunks per document). ns/op is the
// latency of one query; the 10k case is the baseline of the 100k one.
func BenchmarkQueryLatency(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			e := newEnv(b, func(c *envConfig) { c.cfg.Chunk = chunk.Config{Size: 32, Overlap: -1} })
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
			b.ResetTimer()
			for b.Loop() {
				res, err := e.p.Search(b.Context(), "acme", q)
				if err != nil || len(res) == 0 {
					b.Fatal(err, len(res))
				}
			}
			b.ReportMetric(float64(stored), "chunks")
		})
	}
}
