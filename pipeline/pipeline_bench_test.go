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
		{"top5", pipeline.Query{Text: "invoices mentioning topic7 and item42"}},
		{"top5-metadata", pipeline.Query{Text: "invoices mentioning topic7 and item42", Metadata: map[string]string{"n": "3"}}},
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
