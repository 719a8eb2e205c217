package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/workers/webhook"
)

// The fairness bench: one quiet account's latency and throughput alone and
// under each flood of a noisy account, in one run on the embedded engines,
// through a real HTTP listener with the default limits.
const (
	fairNoisyTokens    = 10  // noisy tokens flooding queries
	fairNoisyJobs      = 12  // noisy jobs kept queued or running
	fairNoisyJobDocs   = 500 // documents in each
	fairNoisyHooks     = 20  // noisy slow webhook endpoints
	fairNoisyHookSends = 5   // test deliveries to each
	fairQueryPeriod    = 50 * time.Millisecond
	fairQueryProbes    = 60 // quiet queries per measurement
	fairJobProbes      = 8  // quiet one-document jobs per measurement
	fairWebhookProbes  = 10 // quiet test deliveries per measurement
)

// fairRig is a running Apiary with a quiet and a noisy account.
type fairRig struct {
	apiClient
	quiet string   // the quiet account's admin token
	noisy []string // the noisy account's tokens, the first its admin's
}

// measured is one probe's latencies over elapsed time.
type measured struct {
	lat     []time.Duration
	elapsed time.Duration
	refused int // answers 429/503 to the quiet account
}

func (m measured) pct(p float64) time.Duration {
	if len(m.lat) == 0 {
		return 0
	}
	s := slices.Clone(m.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func (m measured) rate() float64 { return float64(len(m.lat)) / m.elapsed.Seconds() }

// runFairBench runs the fairness bench on the embedded engines.
func runFairBench(ctx context.Context, cfg Config, envErr error, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "apiary-bench-fair-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.DataDir = dir
	cfg = cfg.embedded()
	cfg.Webhooks.AllowPrivate = true
	if err := checkConfig(envErr, &cfg, roleServe); err != nil {
		return err
	}
	log := newLogger("error", stderr)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	operator, _, err := api.Bootstrap(ctx, a.recs, a.keys, "")
	if err != nil {
		return err
	}
	srv, err := api.New(api.Config{Logger: log, AllowPrivateWebhooks: true}, api.Deps{
		Records: a.recs, Queue: a.queue, Events: a.bus, Deletions: a.bus, Stager: a.stager, Search: a.pipe, Keys: a.keys, Ready: a.ready,
	})
	if err != nil {
		return err
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	pool, err := a.poolComponent()
	if err != nil {
		return err
	}
	bg.Go(func() { _ = pool.run(runCtx) })
	disp, err := webhook.New(webhook.Config{AllowPrivate: true, PollInterval: 50 * time.Millisecond, Logger: log}, a.recs, a.keys, a.bus)
	if err != nil {
		return err
	}
	bg.Go(func() { _ = disp.Run(runCtx) })

	r := &fairRig{apiClient: newAPIClient(hs.URL)}
	defer r.http.CloseIdleConnections()
	if err := r.setUp(ctx, operator); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	fmt.Fprintf(stdout, "apiary bench --fair: a quiet account alone and under a noisy account's floods, %d workers, default limits\n", cfg.Workers.Count)
	fmt.Fprintf(stdout, "%-9s %10s %10s %9s   %10s %10s %9s %8s   %9s %7s\n",
		"flood", "alone p50", "p95", "per s", "flooded p50", "p95", "per s", "refused", "rate kept", "p95 ×")
	for _, k := range []struct {
		name  string
		probe func(context.Context) (measured, error)
		flood func(context.Context) (stop func(), err error)
	}{
		{"queries", r.probeQueries, r.floodQueries},
		{"jobs", r.probeJobs, r.floodJobs},
		{"webhooks", r.probeWebhooks, r.floodWebhooks},
	} {
		alone, err := k.probe(ctx)
		if err != nil {
			return fmt.Errorf("%s alone: %w", k.name, err)
		}
		stop, err := k.flood(ctx)
		if err != nil {
			return fmt.Errorf("%s flood: %w", k.name, err)
		}
		under, err := k.probe(ctx)
		stop()
		if err != nil {
			return fmt.Errorf("%s flooded: %w", k.name, err)
		}
		fmt.Fprintf(stdout, "%-9s %10s %10s %9.1f   %10s %10s %9.1f %8d   %8.0f%% %6.2fx\n", k.name,
			ms(alone.pct(0.5)), ms(alone.pct(0.95)), alone.rate(),
			ms(under.pct(0.5)), ms(under.pct(0.95)), under.rate(), under.refused,
			100*under.rate()/alone.rate(), float64(under.pct(0.95))/float64(alone.pct(0.95)))
	}
	fmt.Fprintln(stdout, "target: rate kept ≥ 80%, p95 × ≤ 3")
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// setUp creates the two accounts, their tokens and documents.
func (r *fairRig) setUp(ctx context.Context, operator string) error {
	for _, acc := range []*[]string{nil, &r.noisy} {
		var out struct {
			Token string `json:"token"`
		}
		name := "quiet"
		if acc != nil {
			name = "noisy"
		}
		if _, err := r.call(ctx, operator, http.MethodPost, "/v1/accounts", map[string]string{"name": name}, &out); err != nil {
			return err
		}
		if acc == nil {
			r.quiet = out.Token
		} else {
			r.noisy = []string{out.Token}
		}
	}
	for i := 1; i < fairNoisyTokens; i++ {
		var out struct {
			Token string `json:"token"`
		}
		if _, err := r.call(ctx, r.noisy[0], http.MethodPost, "/v1/tokens", map[string]string{"name": fmt.Sprint("flood ", i), "role": "admin"}, &out); err != nil {
			return err
		}
		r.noisy = append(r.noisy, out.Token)
	}
	// Enough noisy chunks that a filtered top_k-100 search fetches and opens
	// its most; a few quiet ones to search.
	if err := r.ingestAndWait(ctx, r.noisy[0], 600, "noisy"); err != nil {
		return err
	}
	return r.ingestAndWait(ctx, r.quiet, 40, "quiet")
}

func fairDocs(n int, prefix string) []map[string]any {
	docs := make([]map[string]any, n)
	for i := range docs {
		docs[i] = map[string]any{"id": fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), i), "text": benchText(i, 2000),
			"metadata": map[string]any{"team": "bees"}}
	}
	return docs
}

func (r *fairRig) submit(ctx context.Context, token string, n int, prefix string) (string, error) {
	var acc struct {
		JobID string `json:"job_id"`
	}
	_, err := r.call(ctx, token, http.MethodPost, "/v1/ingest", map[string]any{"documents": fairDocs(n, prefix)}, &acc)
	return acc.JobID, err
}

// stream reads a job's event stream, which ends after its final event.
func (r *fairRig) stream(ctx context.Context, token, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/v1/jobs/"+id+"/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("job events %s: %d", id, resp.StatusCode)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func (r *fairRig) ingestAndWait(ctx context.Context, token string, n int, prefix string) error {
	id, err := r.submit(ctx, token, n, prefix)
	if err != nil {
		return err
	}
	return r.final(ctx, token, id)
}

// flood runs f on each token in a loop until stop.
func flood(ctx context.Context, tokens []string, f func(ctx context.Context, token string)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, t := range tokens {
		wg.Go(func() {
			for ctx.Err() == nil {
				f(ctx, t)
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

func (r *fairRig) probeQueries(ctx context.Context) (measured, error) {
	var m measured
	start := time.Now()
	t := time.NewTicker(fairQueryPeriod)
	defer t.Stop()
	for range fairQueryProbes {
		at := time.Now()
		code, err := r.call(ctx, r.quiet, http.MethodPost, "/v1/query", map[string]any{"query": "honey bees in the meadow"}, nil)
		switch {
		case refusal(code):
			m.refused++
		case err != nil:
			return m, err
		default:
			m.lat = append(m.lat, time.Since(at))
		}
		<-t.C
	}
	m.elapsed = time.Since(start)
	return m, nil
}

// floodQueries: every noisy token sends filtered top_k-100 searches as fast
// as it gets answers.
func (r *fairRig) floodQueries(ctx context.Context) (func(), error) {
	body := map[string]any{"query": "queen drone swarm", "top_k": 100, "filter": map[string]any{"metadata": map[string]any{"team": "wasps"}}}
	return flood(ctx, r.noisy, func(ctx context.Context, token string) {
		_, _ = r.call(ctx, token, http.MethodPost, "/v1/query", body, nil)
	}), nil
}

func (r *fairRig) probeJobs(ctx context.Context) (measured, error) {
	var m measured
	start := time.Now()
	for range fairJobProbes {
		at := time.Now()
		id, err := r.submit(ctx, r.quiet, 1, "probe")
		if err != nil {
			return m, err
		}
		if err := r.stream(ctx, r.quiet, id); err != nil {
			return m, err
		}
		m.lat = append(m.lat, time.Since(at))
	}
	m.elapsed = time.Since(start)
	return m, nil
}

// floodJobs keeps fairNoisyJobs noisy jobs of fairNoisyJobDocs documents
// queued or running, and cancels what is left on stop.
func (r *fairRig) floodJobs(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu   sync.Mutex
		open []string
	)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			mu.Lock()
			n := len(open)
			mu.Unlock()
			if n < fairNoisyJobs {
				if id, err := r.submit(ctx, r.noisy[n%len(r.noisy)], fairNoisyJobDocs, "flood"); err == nil {
					mu.Lock()
					open = append(open, id)
					mu.Unlock()
				}
				continue
			}
			mu.Lock()
			ids := slices.Clone(open)
			mu.Unlock()
			for i, id := range ids {
				var j struct {
					Status apiary.JobStatus `json:"status"`
				}
				if _, err := r.call(ctx, r.noisy[i%len(r.noisy)], http.MethodGet, "/v1/jobs/"+id, nil, &j); err == nil && j.Status.Final() {
					mu.Lock()
					open = slices.DeleteFunc(open, func(s string) bool { return s == id })
					mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	// Let the backlog build before the quiet account starts.
	for {
		mu.Lock()
		n := len(open)
		mu.Unlock()
		if n >= fairNoisyJobs {
			break
		}
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
	}
	return func() {
		cancel()
		wg.Wait()
		for _, id := range open {
			_, _ = r.call(context.WithoutCancel(ctx), r.noisy[0], http.MethodPost, "/v1/jobs/"+id+"/cancel", nil, nil)
		}
	}, nil
}

// receiver is a webhook endpoint that reports each delivery's event id,
// and holds its answer until release is closed (when not nil), counting
// the deliveries it holds in held.
func receiver(got chan<- string, release <-chan struct{}, held *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		if held != nil {
			held.Add(1)
			defer held.Add(-1)
		}
		if got != nil {
			select {
			case got <- req.Header.Get(webhook.HeaderID):
			default:
			}
		}
		if release != nil {
			select {
			case <-release:
			case <-req.Context().Done():
			}
		}
	}))
}

// webhookID creates a webhook of token's account to url and returns its id.
func (r *fairRig) webhookID(ctx context.Context, token, url string) (string, error) {
	var w struct {
		ID string `json:"id"`
	}
	_, err := r.call(ctx, token, http.MethodPost, "/v1/webhooks", map[string]any{"url": url}, &w)
	return w.ID, err
}

func (r *fairRig) probeWebhooks(ctx context.Context) (measured, error) {
	var m measured
	got := make(chan string, 16)
	rc := receiver(got, nil, nil)
	defer rc.Close()
	id, err := r.webhookID(ctx, r.quiet, rc.URL)
	if err != nil {
		return m, err
	}
	defer r.call(context.WithoutCancel(ctx), r.quiet, http.MethodDelete, "/v1/webhooks/"+id, nil, nil) //nolint:errcheck
	start := time.Now()
	for range fairWebhookProbes {
		at := time.Now()
		var d struct {
			EventID string `json:"event_id"`
		}
		if _, err := r.call(ctx, r.quiet, http.MethodPost, "/v1/webhooks/"+id+"/test", nil, &d); err != nil {
			return m, err
		}
		for ev := ""; ev != d.EventID; {
			select {
			case ev = <-got:
			case <-time.After(2 * time.Minute):
				return m, errors.New("a quiet test delivery did not arrive in 2 minutes")
			}
		}
		m.lat = append(m.lat, time.Since(at))
	}
	m.elapsed = time.Since(start)
	return m, nil
}

// floodWebhooks gives the noisy account fairNoisyHooks endpoints that hold
// every delivery until stop, and sends each fairNoisyHookSends test
// deliveries.
func (r *fairRig) floodWebhooks(ctx context.Context) (func(), error) {
	release := make(chan struct{})
	var ids []string
	var servers []*httptest.Server
	var blocked atomic.Int64
	for range fairNoisyHooks {
		s := receiver(nil, release, &blocked)
		servers = append(servers, s)
		id, err := r.webhookID(ctx, r.noisy[0], s.URL)
		if err != nil {
			close(release)
			return nil, err
		}
		ids = append(ids, id)
	}
	// Each endpoint gets fairNoisyHookSends test deliveries: more than the
	// dispatcher's slots in all, every one held until stop.
	var sends sync.WaitGroup
	for i, token := range r.noisy {
		sends.Go(func() {
			for j := i; j < fairNoisyHooks*fairNoisyHookSends && ctx.Err() == nil; j += len(r.noisy) {
				if _, err := r.call(ctx, token, http.MethodPost, "/v1/webhooks/"+ids[j%len(ids)]+"/test", nil, nil); refusal(statusOf(err)) {
					j -= len(r.noisy) // refused: send the same one again
				}
			}
		})
	}
	sends.Wait()
	// Let the noisy deliveries take what slots they may (a quarter of the
	// dispatcher's by default) before the quiet account starts.
	for blocked.Load() < 16 {
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			close(release)
			return nil, err
		}
	}
	if err := pause(ctx, time.Second); err != nil {
		close(release)
		return nil, err
	}
	return func() {
		for _, id := range ids {
			_, _ = r.call(context.WithoutCancel(ctx), r.noisy[0], http.MethodDelete, "/v1/webhooks/"+id, nil, nil)
		}
		close(release)
		for _, s := range servers {
			s.Close()
		}
	}, nil
}
