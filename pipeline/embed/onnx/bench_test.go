package onnx

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// benchWords are common English words, some with capitals, accents and
// suffixes that WordPiece splits, to give realistic token counts.
var benchWords = strings.Fields(`the of and to in is that for it as was with be by on not he this are or
his from at which but have an they you were her she there would their we him been has when who will
more no if out so said what up its about into than them can only other new some could time these two
may then do first any my now such like our over man me even most made after also did many before must
through back years where much your way well down should because each just those people how too little
state good very make world still own see men work long get here between both life being under never day
same another know while last might us great old year off come since against go came right used take
three invoice shipment pipes overdue warehouse customer contract delivery payment account quarterly
revenue forecast Kubernetes cluster deployment container scheduler latency throughput database index
query vector embedding retrieval document encryption tenant François café naïve résumé Zürich
unbelievably misunderstanding internationalization reconfiguration approximately
straightforward nevertheless furthermore microservices authentication authorization`)

// benchTexts returns n texts of 50 to 200 words in sentences, the same on
// every run.
func benchTexts(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	texts := make([]string, n)
	for i := range texts {
		var b strings.Builder
		words := 50 + r.IntN(151)
		for w := 0; w < words; w++ {
			word := benchWords[r.IntN(len(benchWords))]
			switch {
			case w == 0 || strings.HasSuffix(b.String(), ". "):
				word = strings.ToUpper(word[:1]) + word[1:]
			}
			b.WriteString(word)
			switch {
			case w == words-1 || r.IntN(12) == 0:
				b.WriteString(". ")
			case r.IntN(10) == 0:
				b.WriteString(", ")
			default:
				b.WriteString(" ")
			}
		}
		texts[i] = strings.TrimSpace(b.String())
	}
	return texts
}

// BenchmarkEmbed embeds 128 texts of 50–200 words with the default (int8)
// model in batches of 32: "sorted" as Embed does it (one call: texts sorted
// by length, so a batch pads little), "unsorted" in input order (one call
// per 32 texts), to show what sorting is worth.
func BenchmarkEmbed(b *testing.B) {
	e := open(b, DefaultModel)
	texts := benchTexts(128)
	tokens := 0
	for _, t := range texts {
		ids, err := e.tok.encode(t)
		if err != nil {
			b.Fatal(err)
		}
		tokens += len(ids)
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(len(texts)*b.N)/b.Elapsed().Seconds(), "docs/s")
		b.ReportMetric(float64(tokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("sorted", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.Embed(b.Context(), texts); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("unsorted", func(b *testing.B) {
		for b.Loop() {
			for chunk := range slices.Chunk(texts, DefaultBatchSize) {
				if _, err := e.Embed(b.Context(), chunk); err != nil {
					b.Fatal(err)
				}
			}
		}
		report(b)
	})
	b.Run("tokenize", func(b *testing.B) {
		for b.Loop() {
			for _, t := range texts {
				if _, err := e.tok.encode(t); err != nil {
					b.Fatal(err)
				}
			}
		}
		report(b)
	})
}
