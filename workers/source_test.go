package workers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/web"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/workers"
)

// webSite serves a sitemap of four pages: two good ones, one gone (410) and
// one that answers 429 (Retry-After: 9) as long as limited is set.
func webSite(t *testing.T, limited *atomic.Bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/robots.txt":
			http.NotFound(w, r)
		case "/sitemap.xml":
			fmt.Fprint(w, `<urlset><url><loc>/a</loc></url><url><loc>/b.txt</loc></url><url><loc>/gone</loc></url><url><loc>/busy</loc></url></urlset>`)
		case "/a":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<html><head><title>Hives</title></head><body><h1>Hives</h1><p>Bees keep honey in combs.</p></body></html>`)
		case "/b.txt":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "Wax is made by worker bees.")
		case "/gone":
			http.Error(w, "gone", http.StatusGone)
		case "/busy":
			if limited.Load() {
				w.Header().Set("Retry-After", "9")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<p>Queens lay eggs.</p>`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func webOpener(_ context.Context, _ apiary.Job, spec connectors.Spec, _ apiary.Credentials) (connectors.Connector, connectors.Source, error) {
	return web.New(web.Config{AllowPrivate: true, PageSize: 2}), connectors.Source{Location: spec.URL, MaxItems: spec.MaxItems}, nil
}

func TestSourceHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	var limited atomic.Bool
	limited.Store(true)
	srv := webSite(t, &limited)
	h := workers.NewSourceHandler(workers.IngestConfig{DocConcurrency: 2}, e.jobs, e.stager, e.ingest, e.pipe, webOpener, nil)
	j := e.submit(t, connectors.Spec{Provider: "web", URL: srv.URL + "/sitemap.xml"}.Document())

	// A rate-limited page fails the run with the site's delay; the others
	// are recorded meanwhile or on the retry.
	err := h.Handle(ctx, delivery(j, 1))
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err), "%v", err)
	d, ok := apiary.RetryDelay(err)
	require.True(t, ok)
	require.Equal(t, 9*time.Second, d)
	require.Equal(t, apiary.JobRunning, e.job(t, j.ID).Status)
	calls := e.ingest.calls.Load()

	limited.Store(false)
	require.NoError(t, h.Handle(ctx, delivery(j, 2)))
	got := e.job(t, j.ID)
	require.Equal(t, apiary.JobSucceeded, got.Status)
	require.Equal(t, 4, got.Counts.DocumentsTotal, "the total is what the source listed")
	require.Equal(t, 3, got.Counts.DocumentsDone)
	require.Equal(t, 1, got.Counts.DocumentsFailed)
	require.Equal(t, apiary.DocumentID(srv.URL+"/gone"), got.Errors[0].DocumentID)
	require.Contains(t, got.Errors[0].Reason, "not found at the source")
	require.LessOrEqual(t, e.ingest.calls.Load()-calls, int64(3), "pages done on the first run are not ingested again")

	n, err := e.vecs.Count(ctx, "acme", storage.VectorFilter{})
	require.NoError(t, err)
	require.Equal(t, got.Counts.Chunks, n)
	require.Positive(t, n)
	rec, err := e.recs.Document(ctx, "acme", apiary.DocumentID(srv.URL+"/a"))
	require.NoError(t, err, "the document id is the page URL")
	require.Equal(t, "text/html", rec.ContentType)
}

func TestSourceHandlerFailsASourceWithNothingToList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sitemap.xml" {
			fmt.Fprint(w, `<urlset></urlset>`)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	h := workers.NewSourceHandler(workers.IngestConfig{}, e.jobs, e.stager, e.ingest, e.pipe, webOpener, nil)
	j := e.submit(t, connectors.Spec{Provider: "web", URL: srv.URL + "/sitemap.xml"}.Document())
	err := h.Handle(context.Background(), delivery(j, 1))
	require.True(t, apiary.IsPermanent(err), "%v", err)
	require.Contains(t, apiary.Message(err), "listed no documents")
}
