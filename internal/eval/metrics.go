package eval

import (
	"maps"
	"math"
	"slices"
	"time"
)

// The measures, with the definitions of trec_eval and BEIR. ranked holds
// distinct document ids, best first (Dedupe makes it so); rel maps a
// document id to its grade, and a grade above 0 is relevant.

// NDCG returns nDCG@k: the discounted cumulative gain of the first k
// results, sum of grade / log2(rank+1), over that of the ideal ranking
// (the judged grades, highest first). 0 when nothing is relevant.
func NDCG(ranked []string, rel map[string]int, k int) float64 {
	var dcg float64
	for i, id := range ranked[:min(k, len(ranked))] {
		if g := rel[id]; g > 0 {
			dcg += float64(g) / math.Log2(float64(i+2))
		}
	}
	var grades []int
	for _, g := range rel {
		if g > 0 {
			grades = append(grades, g)
		}
	}
	slices.SortFunc(grades, func(a, b int) int { return b - a })
	var ideal float64
	for i, g := range grades[:min(k, len(grades))] {
		ideal += float64(g) / math.Log2(float64(i+2))
	}
	if ideal == 0 {
		return 0
	}
	return dcg / ideal
}

// MRR returns the reciprocal rank of the first relevant result among the
// first k, 0 when there is none.
func MRR(ranked []string, rel map[string]int, k int) float64 {
	for i, id := range ranked[:min(k, len(ranked))] {
		if rel[id] > 0 {
			return 1 / float64(i+1)
		}
	}
	return 0
}

// Recall returns the share of the relevant documents found among the first
// k results, 0 when nothing is relevant.
func Recall(ranked []string, rel map[string]int, k int) float64 {
	total, found := 0, 0
	for _, g := range rel {
		if g > 0 {
			total++
		}
	}
	for _, id := range ranked[:min(k, len(ranked))] {
		if rel[id] > 0 {
			found++
		}
	}
	if total == 0 {
		return 0
	}
	return float64(found) / float64(total)
}

// Dedupe returns ids with every repeat after the first removed, in order:
// a document's best-ranked chunk stands for it.
func Dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Scores are the measures averaged over the judged queries.
type Scores struct {
	Queries   int     `json:"queries"` // queries with at least one relevant document
	NDCG10    float64 `json:"ndcg_at_10"`
	MRR10     float64 `json:"mrr_at_10"`
	Recall10  float64 `json:"recall_at_10"`
	Recall100 float64 `json:"recall_at_100"`
}

// Evaluate averages the measures of run (query id → ranked document ids)
// over every query of qrels with at least one relevant document; a query
// missing from run counts as one that found nothing.
func Evaluate(qrels Qrels, run map[string][]string) Scores {
	var s Scores
	for _, q := range slices.Sorted(maps.Keys(qrels)) { // a fixed order: the same sums every run
		rel := qrels[q]
		if qrels.Relevant(q) == 0 {
			continue
		}
		r := run[q]
		s.Queries++
		s.NDCG10 += NDCG(r, rel, 10)
		s.MRR10 += MRR(r, rel, 10)
		s.Recall10 += Recall(r, rel, 10)
		s.Recall100 += Recall(r, rel, 100)
	}
	if s.Queries > 0 {
		n := float64(s.Queries)
		s.NDCG10, s.MRR10, s.Recall10, s.Recall100 = s.NDCG10/n, s.MRR10/n, s.Recall10/n, s.Recall100/n
	}
	return s
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 1) of d: the
// smallest value at least p of the values are at or below. 0 for none.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
