package eval

import (
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"
)

// stopWords are Lucene's English stop words (EnglishAnalyzer's default set).
var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields("a an and are as at be but by for if in into is it no not of on or such that the their then there these they this to was will with") {
		m[w] = true
	}
	return m
}()

// Terms analyses text the way the BM25 baseline indexes it: runs of
// letters and digits, lower-cased, a possessive 's dropped, Lucene's
// English stop words removed, each word Porter-stemmed (Stem).
func Terms(text string) []string {
	var out []string
	for w := range strings.FieldsFuncSeq(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' && r != '’'
	}) {
		w = strings.TrimSuffix(strings.TrimSuffix(w, "'s"), "’s")
		for part := range strings.FieldsFuncSeq(w, func(r rune) bool { return r == '\'' || r == '’' }) {
			if !stopWords[part] {
				out = append(out, Stem(part))
			}
		}
	}
	return out
}

// BM25 parameters: Anserini's defaults, as in BEIR's BM25 baselines.
const (
	BM25K1 = 0.9
	BM25B  = 0.4
)

// BM25 is an in-memory inverted index scored with Okapi BM25 (Lucene's
// idf, ln(1 + (N − df + 0.5)/(df + 0.5))) over Terms, searched
// exhaustively. It keeps document ids and postings, not text. Add must not
// run concurrently with anything; Search may run concurrently with itself.
type BM25 struct {
	terms    map[string]int32 // term → index into postings
	postings [][]posting
	lens     []int32 // terms per document
	ids      []string
	total    int64 // terms in all documents
}

type posting struct{ doc, tf int32 }

// NewBM25 returns an empty index.
func NewBM25() *BM25 { return &BM25{terms: map[string]int32{}} }

// Len returns the number of documents added.
func (x *BM25) Len() int { return len(x.ids) }

// Add indexes one document.
func (x *BM25) Add(id, text string) {
	doc := int32(len(x.ids))
	x.ids = append(x.ids, id)
	terms := Terms(text)
	x.lens = append(x.lens, int32(len(terms)))
	x.total += int64(len(terms))
	tf := map[string]int32{}
	for _, t := range terms {
		tf[t]++
	}
	for _, t := range slices.Sorted(maps.Keys(tf)) {
		ti, ok := x.terms[t]
		if !ok {
			ti = int32(len(x.postings))
			x.terms[t] = ti
			x.postings = append(x.postings, nil)
		}
		x.postings[ti] = append(x.postings[ti], posting{doc, tf[t]})
	}
}

// Search returns the ids of the k best-scoring documents for query, best
// first; equal scores keep the order documents were added in. A document
// sharing no term with the query is not returned.
func (x *BM25) Search(query string, k int) []string {
	n := len(x.ids)
	if n == 0 || k < 1 {
		return nil
	}
	avg := float64(x.total) / float64(n)
	scores := map[int32]float64{}
	for _, t := range Terms(query) { // a repeated query term counts again, as in Lucene
		ti, ok := x.terms[t]
		if !ok {
			continue
		}
		ps := x.postings[ti]
		idf := math.Log(1 + (float64(n)-float64(len(ps))+0.5)/(float64(len(ps))+0.5))
		for _, p := range ps {
			tf := float64(p.tf)
			norm := BM25K1 * (1 - BM25B + BM25B*float64(x.lens[p.doc])/avg)
			scores[p.doc] += idf * tf * (BM25K1 + 1) / (tf + norm)
		}
	}
	docs := slices.Collect(maps.Keys(scores))
	slices.SortFunc(docs, func(a, b int32) int {
		if c := compareDesc(scores[a], scores[b]); c != 0 {
			return c
		}
		return int(a - b)
	})
	out := make([]string, 0, min(k, len(docs)))
	for _, d := range docs[:min(k, len(docs))] {
		out = append(out, x.ids[d])
	}
	return out
}

func compareDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
