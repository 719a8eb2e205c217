package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/internal/eval"
)

// evalOptions are the flags of `apiary eval` beyond the engine flags.
type evalOptions struct {
	URL         string
	Token       string
	LimitDocs   int
	Mode        string
	TopK        int
	Concurrency int
	Batch       int
	JSON        bool
	Baseline    string
}

// evalModes are the query modes --mode all runs, in order.
var evalModes = []string{"hybrid", "dense", "lexical"}

const (
	evalBatchBytes  = 8 << 20 // most document text in one ingest request
	evalPendingJobs = 16      // most ingest jobs unfinished at once
	evalEvery       = 5 * time.Second
)

// runEval runs a BEIR-format set through the API: it ingests corpus.jsonl
// with POST /v1/ingest, waits for the jobs, sends every judged query of
// queries.jsonl to POST /v1/query and scores the answers against
// qrels/test.tsv; with --baseline bm25 it scores a BM25 index of the same
// texts alongside, in the same run.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	fs, envErr := flagSet("eval", &cfg)
	fs.SetOutput(stderr)
	var opt evalOptions
	fs.StringVar(&opt.URL, "url", "", "evaluate the Apiary at this URL (default: start one in-process on a temporary data dir, with the engine flags below)")
	fs.StringVar(&opt.Token, "token", "", "editor token of an empty account at --url (default: $APIARY_TOKEN)")
	fs.IntVar(&opt.LimitDocs, "limit-docs", 0, "ingest only the first N documents of the corpus; judgements of the others are dropped (0: all)")
	fs.StringVar(&opt.Mode, "mode", "", "query mode sent with each query: "+strings.Join(evalModes, ", ")+", or all (each in turn); default: none sent, the server's default")
	fs.IntVar(&opt.TopK, "top-k", api.MaxTopK, "chunks asked of each query (its documents are scored)")
	fs.IntVar(&opt.Concurrency, "concurrency", 4, "queries in flight at once")
	fs.IntVar(&opt.Batch, "batch", 250, "documents per ingest request")
	fs.BoolVar(&opt.JSON, "json", false, "print the results as JSON")
	fs.StringVar(&opt.Baseline, "baseline", "", "also score an in-process baseline on the same texts: bm25")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: apiary eval [flags] DIR\n\nDIR holds a BEIR-format set: corpus.jsonl, queries.jsonl and qrels/test.tsv.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("eval: give one directory")
	}
	if err := opt.validate(); err != nil {
		return err
	}
	set, err := loadEvalSet(fs.Arg(0))
	if err != nil {
		return err
	}
	e := &evaluator{opt: opt, set: set, stderr: stderr}
	e.report.Dataset = fs.Arg(0)
	if opt.Baseline == "bm25" {
		e.bm25 = eval.NewBM25()
	}

	if opt.URL != "" {
		e.token = cmp.Or(opt.Token, os.Getenv("APIARY_TOKEN"))
		if e.token == "" {
			return errors.New("eval: --url needs --token or APIARY_TOKEN: an editor token of an empty account")
		}
		u, err := url.Parse(opt.URL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("eval: --url %q is not an http(s) URL", opt.URL)
		}
		e.client = newAPIClient(strings.TrimRight(opt.URL, "/"))
		e.report.Server = u.Redacted()
	} else {
		dir, err := os.MkdirTemp("", "apiary-eval-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
		cfg.API.RateLimit, cfg.API.RateBurst = 1e9, 1<<30
		cfg.API.AccountRate, cfg.API.AccountBurst = 1e9, 1<<30
		if err := checkConfig(envErr, &cfg, roleServe); err != nil {
			return err
		}
		a, srv, token, err := startInProcess(ctx, cfg, newLogger("warn", stderr), "apiary eval")
		if err != nil {
			return err
		}
		defer a.Close()
		hs := httptest.NewServer(srv.Handler())
		defer hs.Close()
		e.client, e.token = newAPIClient(hs.URL), token
		defer e.client.http.CloseIdleConnections()
		e.report.Server = "in-process"
		e.report.Embedder = cfg.Embedder.Name
		e.report.Model = a.emb.Model()
		e.report.Dim = a.emb.Dim()
		e.report.Workers = cfg.Workers.Count
	}

	if err := e.ingest(ctx, filepath.Join(fs.Arg(0), "corpus.jsonl")); err != nil {
		return err
	}
	modes := []string{opt.Mode}
	if opt.Mode == "all" {
		modes = evalModes
	}
	for _, m := range modes {
		run, err := e.search(ctx, m)
		if err != nil {
			return err
		}
		e.report.Runs = append(e.report.Runs, run)
	}
	if e.bm25 != nil {
		e.report.Runs = append(e.report.Runs, e.searchBM25())
	}
	if opt.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e.report)
	}
	e.report.print(stdout)
	return nil
}

func (o evalOptions) validate() error {
	var errs []error
	if o.Mode != "" && o.Mode != "all" && !slices.Contains(evalModes, o.Mode) {
		errs = append(errs, fmt.Errorf("--mode %q: use %s or all", o.Mode, strings.Join(evalModes, ", ")))
	}
	if o.TopK < 1 || o.TopK > api.MaxTopK {
		errs = append(errs, fmt.Errorf("--top-k must be from 1 to %d", api.MaxTopK))
	}
	if o.Concurrency < 1 || o.Batch < 1 || o.LimitDocs < 0 {
		errs = append(errs, errors.New("--concurrency and --batch must be at least 1, --limit-docs at least 0"))
	}
	if o.Baseline != "" && o.Baseline != "bm25" {
		errs = append(errs, fmt.Errorf("--baseline %q: the one baseline is bm25", o.Baseline))
	}
	return errors.Join(errs...)
}

// evalSet is a set's judged queries and judgements; the corpus is streamed.
type evalSet struct {
	queries []eval.Query // those with a relevant document, in file order
	qrels   eval.Qrels
}

func loadEvalSet(dir string) (evalSet, error) {
	var s evalSet
	f, err := os.Open(filepath.Join(dir, "qrels", "test.tsv"))
	if err != nil {
		return s, fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	if s.qrels, err = eval.ReadQrels(f); err != nil {
		return s, err
	}
	q, err := os.Open(filepath.Join(dir, "queries.jsonl"))
	if err != nil {
		return s, fmt.Errorf("eval: %w", err)
	}
	defer q.Close()
	all, err := eval.ReadQueries(q)
	if err != nil {
		return s, err
	}
	for _, x := range all {
		if s.qrels.Relevant(x.ID) > 0 {
			s.queries = append(s.queries, x)
		}
	}
	if len(s.queries) == 0 {
		return s, fmt.Errorf("eval: no query of %s has a relevant document in qrels/test.tsv", dir)
	}
	return s, nil
}

// evaluator runs one evaluation and keeps its report.
type evaluator struct {
	opt    evalOptions
	set    evalSet
	client apiClient
	token  string
	bm25   *eval.BM25 // nil without --baseline bm25
	stderr io.Writer
	report evalReport

	bm25Index time.Duration // spent adding documents to bm25
}

// evalReport is what `apiary eval` prints (--json as is).
type evalReport struct {
	Dataset  string `json:"dataset"`
	Server   string `json:"server"` // "in-process" or the URL
	Embedder string `json:"embedder,omitempty"`
	Model    string `json:"model,omitempty"`
	Dim      int    `json:"dim,omitempty"`
	Workers  int    `json:"workers,omitempty"`

	Documents       int     `json:"documents"`        // sent to the API
	DocumentsFailed int     `json:"documents_failed"` // that the API's jobs failed
	DocumentsEmpty  int     `json:"documents_empty"`  // without text, not sent
	IngestSeconds   float64 `json:"ingest_seconds"`
	DocsPerSecond   float64 `json:"ingest_documents_per_second"`
	Queries         int     `json:"queries"` // judged queries with a relevant document ingested

	Runs []evalRun `json:"runs"`
}

// evalRun is one system's scores.
type evalRun struct {
	System string `json:"system"` // "apiary" or "bm25"
	Mode   string `json:"mode"`   // the mode sent, "" for the server's default
	eval.Scores
	P50ms float64 `json:"latency_p50_ms"`
	P95ms float64 `json:"latency_p95_ms"`
	// IndexDocsPerSecond is the in-process baseline's indexing rate.
	IndexDocsPerSecond float64 `json:"index_documents_per_second,omitempty"`
}

// evalText is the text a document is searched by, in Apiary and in the
// baseline alike: its title, a blank line and its text, as BEIR's
// retrievers index them. Apiary searches the text only; the title is also
// sent as the document's title, for display.
func evalText(d eval.Doc) string {
	if strings.TrimSpace(d.Title) == "" {
		return d.Text
	}
	return d.Title + "\n\n" + d.Text
}

// ingestDoc is one document of a JSON ingest request.
type ingestDoc struct {
	ID       string            `json:"id"`
	Title    string            `json:"title,omitempty"`
	Text     string            `json:"text"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

var errEnough = errors.New("eval: enough documents")

// ingest streams the corpus into the API in batches, at most
// evalPendingJobs jobs unfinished at once, and waits for every job. The
// judgements of documents never sent (past --limit-docs, or empty) are
// dropped; those of documents whose ingestion failed are kept.
func (e *evaluator) ingest(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	judged := map[string]bool{}
	for _, rel := range e.set.qrels {
		for id := range rel {
			judged[id] = true
		}
	}
	sent := map[string]bool{} // judged documents sent
	w := &jobWaiter{e: e, start: time.Now(), last: time.Now()}
	var batch []ingestDoc
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var acc struct {
			JobID string `json:"job_id"`
		}
		if err := e.client.callRetry(ctx, e.token, http.MethodPost, "/v1/ingest", map[string]any{"documents": batch}, &acc); err != nil {
			return fmt.Errorf("eval: ingest: %w", err)
		}
		w.pending = append(w.pending, acc.JobID)
		w.submitted += len(batch)
		batch, size = batch[:0], 0
		return w.wait(ctx, evalPendingJobs-1)
	}
	read := 0
	err = eval.ReadCorpus(f, func(d eval.Doc) error {
		if e.opt.LimitDocs > 0 && read == e.opt.LimitDocs {
			return errEnough
		}
		read++
		text := evalText(d)
		if strings.TrimSpace(text) == "" {
			e.report.DocumentsEmpty++
			return nil
		}
		if err := apiary.DocumentID(d.ID).Validate(); err != nil {
			return fmt.Errorf("eval: corpus document %q: its _id is not a valid Apiary document id: %s", d.ID, apiary.Message(err))
		}
		if judged[d.ID] {
			sent[d.ID] = true
		}
		if e.bm25 != nil {
			at := time.Now()
			e.bm25.Add(d.ID, text)
			e.bm25Index += time.Since(at)
		}
		doc := ingestDoc{ID: d.ID, Text: text}
		if apiary.CheckTitle("title", d.Title) == nil {
			doc.Title = d.Title
		}
		batch = append(batch, doc)
		if size += len(text); len(batch) == e.opt.Batch || size >= evalBatchBytes {
			return flush()
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if err := w.wait(ctx, 0); err != nil {
		return err
	}
	elapsed := time.Since(w.start)
	e.report.Documents = w.submitted
	e.report.DocumentsFailed = w.failed
	e.report.IngestSeconds = elapsed.Seconds()
	e.report.DocsPerSecond = float64(w.submitted) / elapsed.Seconds()
	if w.submitted == 0 {
		return errors.New("eval: the corpus has no document with text")
	}

	// Judgements of documents never sent cannot be found by anyone.
	for q, rel := range e.set.qrels {
		for id := range rel {
			if !sent[id] {
				delete(rel, id)
			}
		}
		if e.set.qrels.Relevant(q) == 0 {
			delete(e.set.qrels, q)
		}
	}
	e.set.queries = slices.DeleteFunc(e.set.queries, func(q eval.Query) bool { return e.set.qrels[q.ID] == nil })
	e.report.Queries = len(e.set.queries)
	if e.report.Queries == 0 {
		return errors.New("eval: no judged query has a relevant document among those ingested")
	}
	return nil
}

// jobWaiter follows the ingest jobs until they end.
type jobWaiter struct {
	e         *evaluator
	pending   []string // job ids not yet final
	submitted int      // documents sent
	done      int      // documents of final jobs
	failed    int      // of those, failed
	start     time.Time
	last      time.Time // of the last progress line
}

// wait polls the pending jobs until at most keep are left. Jobs end
// roughly in the order they were submitted, so each round polls the oldest
// first and stops at the first unfinished one: about one request a round.
func (w *jobWaiter) wait(ctx context.Context, keep int) error {
	for len(w.pending) > keep {
		for len(w.pending) > 0 {
			var j struct {
				Status apiary.JobStatus `json:"status"`
				Counts apiary.Counts    `json:"counts"`
				Error  string           `json:"error"`
			}
			id := w.pending[0]
			if err := w.e.client.callRetry(ctx, w.e.token, http.MethodGet, "/v1/jobs/"+id, nil, &j); err != nil {
				return fmt.Errorf("eval: job %s: %w", id, err)
			}
			if !j.Status.Final() {
				break
			}
			w.done += j.Counts.DocumentsTotal
			w.failed += j.Counts.DocumentsFailed
			if j.Status != apiary.JobSucceeded {
				// A job that failed or was canceled whole: its unfinished documents failed too.
				w.failed += j.Counts.DocumentsTotal - j.Counts.DocumentsDone - j.Counts.DocumentsFailed
				fmt.Fprintf(w.e.stderr, "eval: job %s ended %s: %s\n", id, j.Status, j.Error)
			}
			w.pending = w.pending[1:]
		}
		if time.Since(w.last) >= evalEvery {
			w.last = time.Now()
			fmt.Fprintf(w.e.stderr, "eval: ingest: %d documents sent, %d done (%d failed), %.1f documents/s\n",
				w.submitted, w.done, w.failed, float64(w.done)/time.Since(w.start).Seconds())
		}
		if len(w.pending) > keep {
			if err := pause(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// search sends every judged query to POST /v1/query, --concurrency at a
// time, and scores the documents of the chunks answered, each at the rank
// of its best chunk.
func (e *evaluator) search(ctx context.Context, mode string) (evalRun, error) {
	qs := e.set.queries
	ranked := make([][]string, len(qs))
	lat := make([]time.Duration, len(qs))
	p := &progress{w: e.stderr, what: "queries" + modeLabel(mode), total: len(qs), start: time.Now(), last: time.Now()}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opt.Concurrency)
	for i, q := range qs {
		g.Go(func() error {
			body := map[string]any{"query": q.Text, "top_k": e.opt.TopK}
			if mode != "" {
				body["mode"] = mode // only when asked: a server without modes refuses the field
			}
			var res struct {
				Results []struct {
					DocumentID string `json:"document_id"`
				} `json:"results"`
			}
			at := time.Now()
			if err := e.client.callRetry(gctx, e.token, http.MethodPost, "/v1/query", body, &res); err != nil {
				return fmt.Errorf("eval: query %q%s: %w", q.ID, modeLabel(mode), err)
			}
			lat[i] = time.Since(at)
			ids := make([]string, len(res.Results))
			for k, r := range res.Results {
				ids[k] = r.DocumentID
			}
			ranked[i] = eval.Dedupe(ids)
			p.add()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return evalRun{}, err
	}
	return e.scored("apiary", mode, ranked, lat), nil
}

// searchBM25 scores the in-process BM25 index on the same queries, one at
// a time, its top --top-k documents.
func (e *evaluator) searchBM25() evalRun {
	qs := e.set.queries
	ranked := make([][]string, len(qs))
	lat := make([]time.Duration, len(qs))
	for i, q := range qs {
		at := time.Now()
		ranked[i] = e.bm25.Search(q.Text, e.opt.TopK)
		lat[i] = time.Since(at)
	}
	r := e.scored("bm25", "", ranked, lat)
	r.IndexDocsPerSecond = float64(e.bm25.Len()) / e.bm25Index.Seconds()
	return r
}

func (e *evaluator) scored(system, mode string, ranked [][]string, lat []time.Duration) evalRun {
	run := make(map[string][]string, len(ranked))
	for i, q := range e.set.queries {
		run[q.ID] = ranked[i]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return evalRun{System: system, Mode: mode, Scores: eval.Evaluate(e.set.qrels, run),
		P50ms: ms(eval.Percentile(lat, 0.5)), P95ms: ms(eval.Percentile(lat, 0.95))}
}

func modeLabel(mode string) string {
	if mode == "" {
		return ""
	}
	return " (mode " + mode + ")"
}

// progress prints how far a long loop is, at most every evalEvery. Safe for
// concurrent use.
type progress struct {
	w     io.Writer
	what  string
	total int
	start time.Time

	mu   sync.Mutex
	done int
	last time.Time
}

func (p *progress) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if time.Since(p.last) >= evalEvery && p.done < p.total {
		p.last = time.Now()
		fmt.Fprintf(p.w, "eval: %s: %d of %d, %.1f/s\n", p.what, p.done, p.total, float64(p.done)/time.Since(p.start).Seconds())
	}
}

func (r evalReport) print(w io.Writer) {
	fmt.Fprintf(w, "apiary eval %s: %d documents, %d judged queries\n", r.Dataset, r.Documents, r.Queries)
	if r.Embedder != "" {
		fmt.Fprintf(w, "server: %s, embedder %s (model %s, %d dimensions), %d workers\n", r.Server, r.Embedder, r.Model, r.Dim, r.Workers)
	} else {
		fmt.Fprintf(w, "server: %s (its embedder and model are the server's)\n", r.Server)
	}
	fmt.Fprintf(w, "ingest: %d documents in %.1fs, %.1f documents/s", r.Documents, r.IngestSeconds, r.DocsPerSecond)
	if r.DocumentsFailed > 0 {
		fmt.Fprintf(w, ", %d failed", r.DocumentsFailed)
	}
	if r.DocumentsEmpty > 0 {
		fmt.Fprintf(w, ", %d without text not sent", r.DocumentsEmpty)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\n%-8s %-9s %8s %8s %8s %8s %10s %10s\n", "system", "mode", "nDCG@10", "MRR@10", "R@10", "R@100", "p50", "p95")
	for _, run := range r.Runs {
		mode := cmp.Or(run.Mode, "default")
		if run.System == "bm25" {
			mode = "-"
		}
		fmt.Fprintf(w, "%-8s %-9s %8.4f %8.4f %8.4f %8.4f %8.1fms %8.1fms\n", run.System, mode,
			run.NDCG10, run.MRR10, run.Recall10, run.Recall100, run.P50ms, run.P95ms)
	}
	for _, run := range r.Runs {
		if run.System == "bm25" {
			fmt.Fprintf(w, "bm25: in-process, over the same texts (k1 %.1f, b %.1f, Porter stems), %.0f documents/s indexed; its latency has no HTTP\n",
				eval.BM25K1, eval.BM25B, run.IndexDocsPerSecond)
		}
	}
}
