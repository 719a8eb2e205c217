package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// testdata/eval-tiny: 10 documents, 6 queries of which 5 are judged. q1,
// q3 and q4 share words with their one relevant document only; q2's
// relevant documents are d2 (grade 2), which shares its words, and d5
// (grade 1), which shares none; q5 shares no word with any document.
const tinySet = "testdata/eval-tiny"

// evalJSON runs `apiary eval --json` with args and decodes its report.
func evalJSON(t *testing.T, args ...string) evalReport {
	t.Helper()
	var out, errs bytes.Buffer
	err := run(context.Background(), append([]string{"eval", "--json"}, args...), &out, &errs)
	require.NoError(t, err, errs.String())
	var r evalReport
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), out.String())
	return r
}

func runOf(t *testing.T, r evalReport, system string) evalRun {
	t.Helper()
	for _, run := range r.Runs {
		if run.System == system {
			return run
		}
	}
	t.Fatalf("no %s run in %+v", system, r.Runs)
	return evalRun{}
}

func TestEvalTinySet(t *testing.T) {
	t.Parallel()
	r := evalJSON(t, "--embedder", "local", "--baseline", "bm25", tinySet)
	require.Equal(t, "in-process", r.Server)
	require.Equal(t, "local", r.Embedder)
	require.Contains(t, r.Model, "local")
	require.Equal(t, 10, r.Documents)
	require.Zero(t, r.DocumentsFailed)
	require.Equal(t, 5, r.Queries, "q6 has no judgement")
	require.Positive(t, r.DocsPerSecond)

	// BM25, by hand: q1, q3, q4 find their document first (1 each); q2
	// finds d2 first and never d5: nDCG 2/(2 + 1/log2 3), recall 1/2; q5
	// finds nothing (0).
	q2 := 2 / (2 + 1/math.Log2(3))
	bm := runOf(t, r, "bm25")
	require.Equal(t, 5, bm.Queries)
	require.InDelta(t, (3+q2)/5, bm.NDCG10, 1e-12)
	require.InDelta(t, 4.0/5, bm.MRR10, 1e-12)
	require.InDelta(t, 3.5/5, bm.Recall10, 1e-12)
	require.InDelta(t, 3.5/5, bm.Recall100, 1e-12)

	// Apiary answers top_k 100 chunks: every one of the 10 documents, so
	// all relevant ones are within 10. Words shared with one document
	// only put it first for q1, q3 and q4, and d2 first for q2.
	ap := runOf(t, r, "apiary")
	require.Empty(t, ap.Mode, "no mode sent unless asked")
	require.Equal(t, 5, ap.Queries)
	require.Equal(t, 1.0, ap.Recall10)
	require.Equal(t, 1.0, ap.Recall100)
	require.GreaterOrEqual(t, ap.MRR10, 4.0/5)
	require.GreaterOrEqual(t, ap.NDCG10, (3+q2)/5)
	require.LessOrEqual(t, ap.NDCG10, 1.0)
	require.Positive(t, ap.P50ms)

	// The hashing embedder is deterministic: a second run scores the same.
	again := evalJSON(t, "--embedder", "local", tinySet)
	require.Equal(t, ap.Scores, runOf(t, again, "apiary").Scores)
}

func TestEvalLimitDocs(t *testing.T) {
	t.Parallel()
	// d1..d3 only: q4's and q5's documents and q2's d5 are never sent, so
	// their judgements are dropped and q1..q3 each have one document to find.
	r := evalJSON(t, "--embedder", "local", "--baseline", "bm25", "--limit-docs", "3", "--batch", "2", tinySet)
	require.Equal(t, 3, r.Documents)
	require.Equal(t, 3, r.Queries)
	bm := runOf(t, r, "bm25")
	require.Equal(t, 1.0, bm.NDCG10)
	require.Equal(t, 1.0, bm.MRR10)
	require.Equal(t, 1.0, runOf(t, r, "apiary").Recall10)
}

func TestEvalFlags(t *testing.T) {
	t.Setenv("APIARY_TOKEN", "")
	for _, args := range [][]string{
		{"--mode", "fuzzy", tinySet},
		{"--top-k", "101", tinySet},
		{"--baseline", "tfidf", tinySet},
		{"--url", "http://127.0.0.1:1", tinySet}, // no token
		{},
		{"testdata/no-such-set"},
	} {
		var out, errs bytes.Buffer
		require.Error(t, run(context.Background(), append([]string{"eval"}, args...), &out, &errs), "%v", args)
	}
}

// fakeAPI answers ingest, job and query requests as Apiary does, enough
// for `apiary eval --url`, and records the query bodies. Every query is
// answered with the chunks of d1, d1 again and d2.
type fakeAPI struct {
	mu      sync.Mutex
	docs    []ingestDoc
	queries []map[string]any
	refused bool // one 429 answered
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/ingest":
		var body struct{ Documents []ingestDoc }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.docs = append(f.docs, body.Documents...)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"job_id":"job_%d","status":"queued"}`, len(body.Documents))
	case r.Method == http.MethodGet:
		var n int
		fmt.Sscanf(r.URL.Path, "/v1/jobs/job_%d", &n)
		fmt.Fprintf(w, `{"status":"succeeded","counts":{"documents_total":%d,"documents_done":%d}}`, n, n)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/query":
		if !f.refused {
			f.refused = true
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.queries = append(f.queries, body)
		fmt.Fprint(w, `{"results":[{"document_id":"d1"},{"document_id":"d1"},{"document_id":"d2"}]}`)
	default:
		http.NotFound(w, r)
	}
}

func TestEvalAgainstURL(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{}
	srv := httptest.NewServer(f)
	defer srv.Close()

	r := evalJSON(t, "--url", srv.URL, "--token", "tok", tinySet)
	require.Equal(t, srv.URL, r.Server)
	require.Empty(t, r.Embedder, "a remote server's embedder is not known")
	require.Len(t, f.docs, 10)
	require.Equal(t, ingestDoc{ID: "d1", Title: "Bees", Text: "Bees\n\nHoney bees perform a waggle dance to tell their nestmates where the flowers are."}, f.docs[0])
	require.Len(t, f.queries, 5)
	for _, q := range f.queries {
		require.NotContains(t, q, "mode", "no mode sent unless asked")
		require.EqualValues(t, 100, q["top_k"])
	}
	// Every query ranks d1 then d2 (d1's second chunk is the same
	// document): q1 finds d1 first (1); q2 finds d2 (grade 2) second and
	// not d5: nDCG (2/log2 3)/(2 + 1/log2 3), MRR 1/2, recall 1/2; q3, q4
	// and q5 find nothing.
	ap := runOf(t, r, "apiary")
	require.InDelta(t, (1+(2/math.Log2(3))/(2+1/math.Log2(3)))/5, ap.NDCG10, 1e-12)
	require.InDelta(t, 1.5/5, ap.MRR10, 1e-12)
	require.InDelta(t, 1.5/5, ap.Recall10, 1e-12)

	f.queries = nil
	r = evalJSON(t, "--url", srv.URL, "--token", "tok", "--mode", "all", "--concurrency", "1", tinySet)
	require.Len(t, r.Runs, 3)
	var modes []any
	for i, q := range f.queries {
		require.Equal(t, evalModes[i/5], q["mode"])
		modes = append(modes, q["mode"])
	}
	require.Len(t, modes, 15)
	for i, run := range r.Runs {
		require.Equal(t, evalModes[i], run.Mode)
		require.Equal(t, ap.Scores, run.Scores)
	}
}
