package local_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

const benchDim = 384

func randomVector(rng *rand.Rand) []float32 {
	v := make([]float32, benchDim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func benchRecords(rng *rand.Rand, acc apiary.AccountID, doc apiary.DocumentID, from, n int) []storage.VectorRecord {
	recs := make([]storage.VectorRecord, n)
	for i := range recs {
		recs[i] = storage.VectorRecord{
			ChunkID:  apiary.ChunkIDFor(acc, doc, 1, from+i),
			Account:  acc,
			Document: doc,
			Version:  1,
			Index:    from + i,
			Vector:   randomVector(rng),
			Sealed:   make([]byte, 512),
			Model:    "bench",
		}
	}
	return recs
}

// atRest are the two ways a store keeps records: in the clear, and sealed
// (Options.Keys).
var atRest = []struct {
	name string
	opts func() local.Options
}{
	{"clear", func() local.Options { return local.Options{} }},
	{"sealed", func() local.Options { return local.Options{Keys: newTestKeys()} }},
}

// fill upserts n chunks into account "bench" of s, 1000 a call.
func fill(b *testing.B, s *local.Store, rng *rand.Rand, n int) {
	acc := apiary.AccountID("bench")
	const batch = 1000
	for from := 0; from < n; from += batch {
		doc := apiary.DocumentID(fmt.Sprintf("doc-%d", from/batch))
		if err := s.Upsert(b.Context(), acc, benchRecords(rng, acc, doc, from, batch)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSearch is one exact top-5 search over an account of n chunks of
// 384 dimensions, kept in the clear or sealed at rest (in memory they are
// open either way).
func BenchmarkSearch(b *testing.B) {
	for _, at := range atRest {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/chunks=%d", at.name, n), func(b *testing.B) {
				benchSearch(b, at.opts(), n)
			})
		}
	}
}

func benchSearch(b *testing.B, opts local.Options, n int) {
	s, err := local.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	acc := apiary.AccountID("bench")
	fill(b, s, rng, n)
	queries := make([][]float32, 64)
	for i := range queries {
		queries[i] = randomVector(rng)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		hits, err := s.Search(b.Context(), acc, queries[i%len(queries)], 5, storage.VectorFilter{})
		if err != nil || len(hits) != 5 {
			b.Fatalf("search: %d hits, %v", len(hits), err)
		}
	}
}

// BenchmarkUpsert is one durable (fsynced) Upsert of 32 chunks of 384
// dimensions, as a worker writes one embedding batch, kept in the clear or
// sealed.
func BenchmarkUpsert(b *testing.B) {
	for _, at := range atRest {
		b.Run(at.name, func(b *testing.B) { benchUpsert(b, at.opts()) })
	}
}

// BenchmarkOpen is opening a store of 10,000 chunks of 384 dimensions:
// replaying its log (and, sealed, opening every record).
func BenchmarkOpen(b *testing.B) {
	for _, at := range atRest {
		b.Run(at.name, func(b *testing.B) {
			opts := at.opts()
			dir := b.TempDir()
			s, err := local.Open(dir, opts)
			if err != nil {
				b.Fatal(err)
			}
			fill(b, s, rand.New(rand.NewPCG(4, 4)), 10_000)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				s, err := local.Open(dir, opts)
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}

func benchUpsert(b *testing.B, opts local.Options) {
	s, err := local.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(2, 2))
	acc := apiary.AccountID("bench")
	const batch = 32
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		recs := benchRecords(rng, acc, apiary.DocumentID(fmt.Sprintf("doc-%d", i)), 0, batch)
		b.StartTimer()
		if err := s.Upsert(b.Context(), acc, recs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSearchLexical is one exact top-100 BM25 search (the depth of a
// hybrid leg) for a 6-term query over an account of n chunks of 80 terms
// each, drawn from a Zipf-distributed vocabulary of 50,000, as English is.
func BenchmarkSearchLexical(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			s, err := local.Open(b.TempDir(), local.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rng := rand.New(rand.NewPCG(3, uint64(n)))
			zipf := rand.NewZipf(rng, 1.1, 1, 50_000)
			acc := apiary.AccountID("bench")
			const batch = 1000
			for from := 0; from < n; from += batch {
				doc := apiary.DocumentID(fmt.Sprintf("doc-%d", from/batch))
				recs := benchRecords(rng, acc, doc, from, batch)
				for i := range recs {
					counts := map[uint32]uint32{}
					for range 80 {
						counts[uint32(zipf.Uint64())]++
					}
					recs[i].Terms = storagetest.Terms(counts)
				}
				if err := s.Upsert(b.Context(), acc, recs); err != nil {
					b.Fatal(err)
				}
			}
			queries := make([][]uint32, 64)
			for i := range queries {
				for range 6 {
					queries[i] = append(queries[i], uint32(zipf.Uint64()))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := s.SearchLexical(b.Context(), acc, queries[i%len(queries)], 100, storage.VectorFilter{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
