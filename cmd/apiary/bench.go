package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed"
)

// benchOptions are the flags of `apiary bench` beyond the engine flags.
type benchOptions struct {
	Documents int
	DocBytes  int
	Jobs      int
}

// runBench ingests the same documents through the whole path — HTTP handler,
// staging, queue, workers, pipeline, vector store — once on the embedded
// defaults and, when distributed engines are configured, once on them, and
// reports documents/s for each and their ratio.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var dist Config
	fs, envErr := flagSet("bench", &dist)
	fs.SetOutput(stderr)
	var opt benchOptions
	fs.IntVar(&opt.Documents, "documents", 400, "documents per run")
	fs.IntVar(&opt.DocBytes, "doc-bytes", 2000, "approximate size of each document")
	fs.IntVar(&opt.Jobs, "jobs", 4, "ingest requests the documents are split into")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	fair := fs.Bool("fair", false, "instead: a quiet account's latency alone and under a noisy account's floods (benchfair.go)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *fair {
		return runFairBench(ctx, dist, envErr, stdout, stderr)
	}
	if opt.Documents < 1 || opt.Jobs < 1 || opt.DocBytes < 100 {
		return errors.New("--documents and --jobs must be positive, --doc-bytes at least 100")
	}
	embedded := dist.embedded()
	distributed := !slices.Equal(dist.engines(), embedded.engines())
	runs := []struct {
		name string
		cfg  Config
	}{{"embedded", embedded}}
	if distributed {
		runs = append(runs, struct {
			name string
			cfg  Config
		}{"distributed", dist})
	}

	fmt.Fprintf(stdout, "apiary bench: %d documents of ~%d bytes in %d jobs, %d workers\n", opt.Documents, opt.DocBytes, opt.Jobs, dist.Workers.Count)
	var base float64
	for _, r := range runs {
		dir, err := os.MkdirTemp("", "apiary-bench-*")
		if err != nil {
			return err
		}
		r.cfg.DataDir = dir
		r.cfg.API.RateLimit, r.cfg.API.RateBurst = 1e9, 1<<30
		if err := checkConfig(envErr, &r.cfg, roleServe); err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("%s %w", r.name, err)
		}
		res, err := benchOnce(ctx, r.cfg, opt, stderr)
		os.RemoveAll(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		if base == 0 {
			base = res.path
			fmt.Fprintf(stdout, "%-12s %9.1f documents/s   (%s alone, on the same chunks, in batches of %d: %.1f before the path, %.1f after)\n",
				"embedder", res.bare, res.model, pipeline.DefaultEmbedBatch, res.spread[0], res.spread[1])
		}
		fmt.Fprintf(stdout, "%-12s %9.1f documents/s   %5.2fx embedded   %5.2fx the embedder alone   %.3f %s calls/document\n",
			r.name, res.path, res.path/base, res.path/res.bare, res.keyCalls, r.cfg.Keys.Name)
	}
	if !distributed {
		fmt.Fprintln(stdout, "distributed  skipped: pass --nats-url, --queue sqs, --keys awskms and/or --vectors milvus to compare")
	}
	return nil
}

// benchResult is one configuration's figures.
type benchResult struct {
	model  string
	bare   float64    // documents/s of the embedder alone, on the same chunks: the mean of a run before the path and one after
	spread [2]float64 // the two runs of the embedder alone
	path   float64    // documents/s of the whole path, first request to last job's end
	// keyCalls is the calls to the --keys provider (KMS) per document on the
	// whole path, its key-version lookups included: about 1 with
	// --keys-direct, far less with key-encryption keys.
	keyCalls float64
}

// benchBare embeds the chunks of the bench's documents with emb alone, in
// document order, in calls of the pipeline's batch, and returns documents/s.
func benchBare(ctx context.Context, emb embed.Embedder, chunkCfg chunk.Config, opt benchOptions) (float64, error) {
	var texts []string
	for i := range opt.Documents {
		for _, p := range chunk.Split(chunkCfg, benchText(i, opt.DocBytes)) {
			texts = append(texts, p.Text)
		}
	}
	start := time.Now()
	for from := 0; from < len(texts); from += pipeline.DefaultEmbedBatch {
		if _, err := emb.Embed(ctx, texts[from:min(from+pipeline.DefaultEmbedBatch, len(texts))]); err != nil {
			return 0, fmt.Errorf("embedder alone: %w", err)
		}
	}
	return float64(opt.Documents) / time.Since(start).Seconds(), nil
}

// benchOnce runs one configuration: the embedder alone on the documents'
// chunks, then the whole path on the same documents, from the first request
// to the last job's end.
func benchOnce(ctx context.Context, cfg Config, opt benchOptions, stderr io.Writer) (res benchResult, err error) {
	a, srv, token, err := startInProcess(ctx, cfg, newLogger("warn", stderr), "apiary bench")
	if err != nil {
		return res, err
	}
	defer a.Close()
	res.model = a.emb.Model()
	// The embedder alone runs before and after the whole path, and the path
	// is compared with their mean: a shared machine's speed drifts.
	if res.spread[0], err = benchBare(ctx, a.emb, chunkConfig(cfg, a.emb), opt); err != nil {
		return res, err
	}
	defer func() {
		if err == nil {
			res.spread[1], err = benchBare(ctx, a.emb, chunkConfig(cfg, a.emb), opt)
			res.bare = (res.spread[0] + res.spread[1]) / 2
		}
	}()

	call := func(method, path string, body any, out any) error {
		var r io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				return err
			}
			r = bytes.NewReader(b)
		}
		req := httptest.NewRequestWithContext(ctx, method, path, r)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 300 {
			return fmt.Errorf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
		}
		return json.Unmarshal(rec.Body.Bytes(), out)
	}

	start, calls0 := time.Now(), a.keyCalls.Calls()+a.keyCalls.Lookups()
	var ids []string
	per := (opt.Documents + opt.Jobs - 1) / opt.Jobs
	for j := 0; j < opt.Documents; j += per {
		var docs []map[string]string
		for i := j; i < min(j+per, opt.Documents); i++ {
			docs = append(docs, map[string]string{"id": fmt.Sprintf("bench-%05d", i), "text": benchText(i, opt.DocBytes)})
		}
		var acc struct {
			JobID string `json:"job_id"`
		}
		if err := call(http.MethodPost, "/v1/ingest", map[string]any{"documents": docs}, &acc); err != nil {
			return res, err
		}
		ids = append(ids, acc.JobID)
	}
	for _, id := range ids {
		for {
			var j struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			}
			if err := call(http.MethodGet, "/v1/jobs/"+id, nil, &j); err != nil {
				return res, err
			}
			if apiary.JobStatus(j.Status).Final() {
				if j.Status != string(apiary.JobSucceeded) {
					return res, fmt.Errorf("job %s ended %s: %s", id, j.Status, j.Error)
				}
				break
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	res.path = float64(opt.Documents) / time.Since(start).Seconds()
	res.keyCalls = float64(a.keyCalls.Calls()+a.keyCalls.Lookups()-calls0) / float64(opt.Documents)
	return res, nil
}

// startInProcess opens cfg's engines, starts the workers and returns the
// app, the API over it and a new editor token of the default account named
// name: a whole Apiary in-process, for the commands that measure one (bench,
// eval). a.Close stops it all.
func startInProcess(ctx context.Context, cfg Config, log *slog.Logger, name string) (_ *app, _ *api.Server, token string, err error) {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return nil, nil, "", err
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if token, err = api.NewToken(); err != nil {
		return nil, nil, "", err
	}
	// The default account exists after Bootstrap (made now, or by an earlier
	// run on the same engines); the command gets a token of its own in it.
	if _, _, err := api.Bootstrap(ctx, a.recs, a.keys, ""); err != nil {
		return nil, nil, "", err
	}
	if err := a.recs.CreateToken(ctx, apiary.Token{ID: apiary.NewTokenID(), Account: apiary.DefaultAccount, Name: name,
		Role: apiary.RoleEditor, Hash: api.HashToken(token), CreatedAt: time.Now().UTC()}); err != nil {
		return nil, nil, "", err
	}
	srv, err := a.newAPI()
	if err != nil {
		return nil, nil, "", err
	}
	pool, err := a.poolComponent()
	if err != nil {
		return nil, nil, "", err
	}
	a.lc.start(ctx, pool) // stopped by a.Close
	return a, srv, token, nil
}

var benchWords = strings.Fields("apiary bees comb honey nectar pollen queen drone worker hive frame smoker swarm meadow orchard clover lavender wax propolis royal jelly forage dance colony")

func benchText(i, size int) string {
	var b strings.Builder
	for w := 0; b.Len() < size; w++ {
		b.WriteString(benchWords[(i*31+w*7+w*w)%len(benchWords)])
		if w%12 == 11 {
			b.WriteString(". ")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}
