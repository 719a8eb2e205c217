package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
)

// TestServeIngestsAWebSite crawls a local site through the binary
// (--allow-private-sources): robots.txt is obeyed, a deleted page fails
// alone, and the pages are queryable under their URLs.
func TestServeIngestsAWebSite(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/robots.txt":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "User-agent: *\nDisallow: /private\n")
		case "/":
			fmt.Fprint(w, `<html><body><a href="/hives">Hives</a> <a href="/wax">Wax</a> <a href="/private/notes">Notes</a> <a href="/gone">Old</a></body></html>`)
		case "/hives":
			fmt.Fprint(w, `<html><head><title>Hives</title></head><body><h1>Hives</h1><p>Honeybees store nectar as honey in hexagonal wax cells.</p></body></html>`)
		case "/wax":
			fmt.Fprint(w, `<html><body><h1>Wax</h1><p>Worker bees secrete beeswax from glands on their abdomen.</p></body></html>`)
		case "/private/notes":
			fmt.Fprint(w, `<p>secret notes that robots.txt keeps out</p>`)
		case "/gone":
			http.Error(w, "gone", http.StatusGone)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(site.Close)

	token, err := api.NewToken()
	require.NoError(t, err)
	s := startServer(t, t.TempDir(), token, "--allow-private-sources")

	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest",
		map[string]any{"source": map[string]any{"provider": "web", "url": site.URL + "/", "max_pages": 10}}, &accepted))
	j := s.waitJob(token, accepted.JobID, 60*time.Second)
	require.Equal(t, "succeeded", j.Status)
	require.Equal(t, 3, j.Counts.DocumentsTotal, "the start page and two pages; robots.txt keeps /private out, /gone is skipped")
	require.Equal(t, 3, j.Counts.DocumentsDone)

	var answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
			Text       string `json:"text"`
		} `json:"results"`
	}
	require.Equal(t, http.StatusOK, s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "honey stored in hexagonal wax cells", "top_k": 3}, &answer))
	require.NotEmpty(t, answer.Results)
	require.Equal(t, site.URL+"/hives", answer.Results[0].DocumentID)
	require.Contains(t, answer.Results[0].Text, "hexagonal wax cells")
	for _, r := range answer.Results {
		require.NotContains(t, r.Text, "secret notes", "robots.txt disallows /private")
	}

	var errs struct {
		Errors []struct {
			DocumentID string `json:"document_id"`
			Reason     string `json:"reason"`
		} `json:"errors"`
	}
	require.Equal(t, http.StatusOK, s.call(token, http.MethodGet, "/v1/jobs/"+accepted.JobID+"/errors", nil, &errs))
	require.Empty(t, errs.Errors, "a page gone while crawling is not listed: %v", errs.Errors)

	// Without --allow-private-sources the same request is refused.
	s.stop()
	s = startServer(t, t.TempDir(), token)
	require.Equal(t, http.StatusBadRequest, s.call(token, http.MethodPost, "/v1/ingest",
		map[string]any{"source": map[string]any{"provider": "web", "url": site.URL + "/"}}, nil))
}
