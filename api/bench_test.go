package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// The ingest benchmarks send the same request, POST /v1/ingest with three
// small JSON documents, to the full API over real dependencies (embedded
// NATS queue, record store and event bus, keyring, staged upload) and to a
// bare echo handler that only reads the body and answers 202. The bare
// handler is the baseline: speed is reported as a ratio against it, taken
// in the same run (go test -run '^$' -bench 'Ingest|Bare' ./api/).

var benchIngestBody = func() []byte {
	b, err := json.Marshal(map[string]any{"documents": []map[string]any{
		{"id": "doc-1", "title": "One", "text": "The first small document, a sentence or two long."},
		{"id": "doc-2", "title": "Two", "text": "The second small document, with metadata.", "metadata": map[string]any{"lang": "en", "rank": 2}},
		{"id": "doc-3", "title": "Three", "text": "The third small document closes the request."},
	}})
	if err != nil {
		panic(err)
	}
	return b
}()

// benchTarget serves one ingest request per call.
type benchTarget struct {
	h     http.Handler
	token string
}

func (bt benchTarget) serve(tb testing.TB) {
	req := httptest.NewRequest(http.MethodPost, "/v1/ingest", bytes.NewReader(benchIngestBody))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+bt.token)
	rec := httptest.NewRecorder()
	bt.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		tb.Fatalf("POST /v1/ingest: %d %s", rec.Code, rec.Body.String())
	}
}

// ingestTarget is the full API over real dependencies in tb's temp dirs,
// with a rate limit no benchmark reaches and logs formatted but discarded.
func ingestTarget(tb testing.TB) benchTarget {
	e := newEnv(tb, func(c *Config, _ *Deps) {
		c.RateLimit, c.RateBurst = 1e9, 1e9
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	})
	return benchTarget{h: e.srv.Handler(), token: e.editor}
}

// bareTarget is echo with one handler that reads the body and answers 202.
func bareTarget() benchTarget {
	e := echo.New()
	e.POST("/v1/ingest", func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]string{"job_id": "job_0", "status": "queued"})
	})
	return benchTarget{h: e, token: "apy_bench"}
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkIngest(b *testing.B) {
	t := ingestTarget(b)
	b.ReportAllocs()
	for b.Loop() {
		t.serve(b)
	}
	reportRate(b)
}

func BenchmarkBareEcho(b *testing.B) {
	t := bareTarget()
	b.ReportAllocs()
	for b.Loop() {
		t.serve(b)
	}
	reportRate(b)
}

// BenchmarkIngestVsBare alternates the two targets in one loop, so that
// both see the same machine load, and reports each one's rate and
// ingest/bare: how many times longer an ingest request takes than the
// bare one.
func BenchmarkIngestVsBare(b *testing.B) {
	ingest, bare := ingestTarget(b), bareTarget()
	var ingestTime, bareTime time.Duration
	for b.Loop() {
		start := time.Now()
		ingest.serve(b)
		mid := time.Now()
		bare.serve(b)
		ingestTime += mid.Sub(start)
		bareTime += time.Since(mid)
	}
	n := float64(b.N)
	b.ReportMetric(n/ingestTime.Seconds(), "ingest-req/s")
	b.ReportMetric(n/bareTime.Seconds(), "bare-req/s")
	b.ReportMetric(ingestTime.Seconds()/bareTime.Seconds(), "ingest/bare")
}
