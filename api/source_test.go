package api

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
)

func TestIngestSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.AllowPrivateSources = true })
	ctx := context.Background()
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"provider": "web", "url": "http://127.0.0.1:8080/sitemap.xml", "max_pages": 20,
	}}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	out := decode[ingestResponse](t, rec)

	job, err := e.recs.Job(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	require.Equal(t, apiary.JobKindSource, job.Kind)
	require.Equal(t, "web", job.Source)
	require.Zero(t, job.Counts.DocumentsTotal, "the total is known once the source is listed")

	// The source waits sealed in the stage; the queue message names ids only.
	staged, err := e.stager.Load(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	spec, err := connectors.SpecFrom(staged)
	require.NoError(t, err)
	require.Equal(t, connectors.Spec{Provider: "web", URL: "http://127.0.0.1:8080/sitemap.xml", MaxItems: 20}, spec)
	require.Equal(t, []apiary.JobMessage{{Kind: apiary.JobKindSource, Account: apiary.DefaultAccount, Job: out.JobID}}, e.receive(1))

	rec = e.do(http.MethodGet, "/v1/jobs/"+string(out.JobID), e.viewer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

func TestIngestSourceRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tt := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"a private host without --allow-private-sources", map[string]any{"source": map[string]any{"provider": "web", "url": "http://127.0.0.1/sitemap.xml"}}, "loopback"},
		{"the metadata service", map[string]any{"source": map[string]any{"provider": "web", "url": "http://169.254.169.254/"}}, "refused"},
		{"an unknown provider", map[string]any{"source": map[string]any{"provider": "ftp", "url": "https://example.com/"}}, "unknown"},
		{"no url", map[string]any{"source": map[string]any{"provider": "web"}}, "source.url is required"},
		{"a file url", map[string]any{"source": map[string]any{"provider": "web", "url": "file:///etc/passwd"}}, "https://"},
		{"too many pages", map[string]any{"source": map[string]any{"provider": "web", "url": "https://example.com/", "max_pages": 5001}}, "max_pages"},
		{"no pages", map[string]any{"source": map[string]any{"provider": "web", "url": "https://example.com/", "max_pages": 0}}, "max_pages"},
		{"documents and a source", map[string]any{"source": map[string]any{"provider": "web", "url": "https://example.com/"}, "documents": []any{}}, "documents"},
		{"an unknown field", map[string]any{"source": map[string]any{"provider": "web", "url": "https://example.com/", "depth": 3}}, "depth"},
	} {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(tt.body))
		require.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", tt.name, rec.Body.String())
		require.Contains(t, rec.Body.String(), tt.want, tt.name)
	}
	rec := e.do(http.MethodPost, "/v1/ingest", e.viewer, jsonBody(map[string]any{"source": map[string]any{"provider": "web", "url": "https://example.com/"}}))
	require.Equal(t, http.StatusForbidden, rec.Code, "a viewer may not ingest")
}
