package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/apiaryhq/apiary"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	ready := errors.New("vector store: dial tcp 10.0.0.7:19530: connection refused")
	var readyErr error
	e := newEnv(t, func(_ *Config, d *Deps) {
		d.Ready = func(context.Context) error { return readyErr }
	})
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/healthz", "").Code)
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/readyz", "").Code)

	readyErr = ready
	rec := e.do(http.MethodGet, "/readyz", "")
	requireProblem(t, rec, http.StatusServiceUnavailable, "not ready")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.NotContains(t, rec.Body.String(), "10.0.0.7", "internals stay in the log")
	require.Contains(t, e.logs.String(), "10.0.0.7")
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/healthz", "").Code)
}

func TestEchoErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.do(http.MethodGet, "/v1/nothing", e.viewer)
	requireProblem(t, rec, http.StatusNotFound, "/v1/openapi.yaml")
	rec = e.do(http.MethodPut, "/v1/jobs", e.viewer)
	requireProblem(t, rec, http.StatusMethodNotAllowed, "PUT is not allowed on /v1/jobs; allowed: ")
	require.Contains(t, rec.Header().Get("Allow"), "GET")
}

func TestPanicIsA500WithoutDetails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.srv.Echo().GET("/test/panic", func(echo.Context) error { panic("secret internal state") })
	e.srv.Echo().GET("/test/error", func(echo.Context) error { return fmt.Errorf("db: password=hunter2 rejected") })
	for _, path := range []string{"/test/panic", "/test/error"} {
		rec := e.do(http.MethodGet, path, "")
		p := requireProblem(t, rec, http.StatusInternalServerError, "internal error")
		require.NotEmpty(t, p.RequestID)
		require.NotContains(t, rec.Body.String(), "secret internal state")
		require.NotContains(t, rec.Body.String(), "hunter2")
		require.NotContains(t, rec.Body.String(), "goroutine")
		require.Contains(t, e.logs.String(), p.RequestID, "the cause is logged with the request id")
	}
	require.Contains(t, e.logs.String(), "secret internal state")
}

func TestProblemForKinds(t *testing.T) {
	t.Parallel()
	e := echo.New()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), httptest.NewRecorder())
	for _, tc := range []struct {
		err    error
		status int
	}{
		{apiary.E(apiary.KindInvalid, "x"), 400},
		{apiary.E(apiary.KindNotFound, "x"), 404},
		{apiary.E(apiary.KindConflict, "x"), 409},
		{apiary.E(apiary.KindUnauthenticated, "x"), 401},
		{apiary.E(apiary.KindForbidden, "x"), 403},
		{apiary.E(apiary.KindTooLarge, "x"), 413},
		{apiary.E(apiary.KindRateLimited, "x"), 429},
		{apiary.E(apiary.KindUnavailable, "x"), 503},
		{apiary.RetryAfter(errors.New("x"), 0), 503},
		{apiary.Permanent(errors.New("x")), 500},
		{errors.New("x"), 500},
		{fmt.Errorf("records: get job: %w", apiary.E(apiary.KindNotFound, "no such job")), 404},
		{&http.MaxBytesError{Limit: 1}, 413},
		{unsupportedMediaType("x"), 415},
		{echo.ErrNotFound, 404},
		{echo.ErrMethodNotAllowed, 405},
		{echo.NewHTTPError(http.StatusBadRequest, "bind"), 400},
		{echo.NewHTTPError(http.StatusBadGateway), 500},
	} {
		p := problemFor(tc.err, c)
		require.Equal(t, tc.status, p.Status, "%v", tc.err)
		require.NotEmpty(t, p.Detail)
		if tc.status == 429 || tc.status == 503 {
			require.Positive(t, p.retryAfter)
		}
		if tc.status == 500 {
			require.NotContains(t, p.Detail, "x")
		}
	}
}

func TestNoSecretsInResponsesOrLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const text = "TOP-SECRET-DOCUMENT-TEXT 4a7f"
	var answers strings.Builder
	record := func(rec *httptest.ResponseRecorder) {
		for k, v := range rec.Header() {
			fmt.Fprintf(&answers, "%s: %s\n", k, v)
		}
		answers.WriteString(rec.Body.String())
	}
	tok := e.editor
	for _, r := range []struct {
		method, path string
		req          request
	}{
		{http.MethodPost, "/v1/ingest", jsonBody(map[string]any{"documents": []map[string]any{{"id": "s", "title": text, "text": text, "metadata": map[string]any{"m": text}}}})},
		{http.MethodPost, "/v1/ingest", jsonBody(map[string]any{"documents": []map[string]any{{"id": "", "text": text}}})},
		{http.MethodPost, "/v1/ingest", jsonBody(map[string]any{"documents": []map[string]any{{"id": "s", "text": text, "metadata": map[string]any{"m": []string{text}}}}})},
		{http.MethodPost, "/v1/ingest", rawBody("application/json", `{"documents":[{"id":"s","text":"`+text+`"}`)},
		{http.MethodPost, "/v1/ingest", rawBody("text/plain", text)},
		{http.MethodPost, "/v1/ingest", multipartBody([]filePart{{name: "s.txt", data: text}}, nil)},
		{http.MethodPost, "/v1/ingest", multipartBody([]filePart{{name: "s.odt", data: text}}, nil)},
		{http.MethodPost, "/v1/query", jsonBody(map[string]any{"query": text})},
		{http.MethodPost, "/v1/query", jsonBody(map[string]any{"query": text, "top_k": 0})},
		{http.MethodGet, "/v1/jobs?status=" + text[:10], request{}},
		{http.MethodPost, "/v1/tokens", jsonBody(map[string]string{"role": "viewer", "name": "n"})},
	} {
		record(e.do(r.method, r.path, tok, r.req))
	}
	// A wrong token's secret is not echoed either.
	bad := tok[:len(tok)-1] + "Z"
	record(e.do(http.MethodGet, "/v1/jobs", bad))

	for _, secret := range []string{tok, tok[4:], bad, text, HashToken(tok)} {
		require.NotContains(t, answers.String(), secret)
		require.NotContains(t, e.logs.String(), secret)
	}
	require.Contains(t, e.logs.String(), `"route":"/v1/ingest"`, "requests are logged")
}

// TestOpenAPIMatchesRoutes keeps openapi.yaml and the routes equal, both ways.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.do(http.MethodGet, "/v1/openapi.yaml", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "application/yaml", rec.Header().Get("Content-Type"))

	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(rec.Body.Bytes(), &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	var spec []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			spec = append(spec, strings.ToUpper(method)+" "+path)
			require.Contains(t, op, "responses", "%s %s", method, path)
		}
	}
	var routes []string
	for _, r := range e.srv.Echo().Routes() {
		path := r.Path
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, ":") {
				path = strings.Replace(path, seg, "{"+seg[1:]+"}", 1)
			}
		}
		routes = append(routes, r.Method+" "+path)
	}
	sort.Strings(spec)
	sort.Strings(routes)
	require.Equal(t, routes, spec)

	// Every $ref points at a component that exists.
	var raw map[string]any
	require.NoError(t, yaml.Unmarshal(OpenAPI(), &raw))
	components := raw["components"].(map[string]any)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
				require.Len(t, parts, 2, ref)
				section, ok := components[parts[0]].(map[string]any)
				require.True(t, ok, ref)
				require.Contains(t, section, parts[1], ref)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
}

func TestConfig(t *testing.T) {
	t.Parallel()
	var c Config
	c.setDefaults()
	require.NoError(t, c.Validate())
	require.EqualValues(t, 32<<20, c.BodyLimit)
	require.Equal(t, 1000, c.MaxDocuments)
	require.Equal(t, apiary.MaxDocumentIDLen, c.MaxDocumentIDLen)
	require.EqualValues(t, 50, c.RateLimit)
	require.Equal(t, 100, c.RateBurst)
	require.NotNil(t, c.Logger)

	bad := Config{BodyLimit: -1, MaxDocuments: -1, MaxDocumentIDLen: 1000, RateLimit: -1, RateBurst: -1}
	err := bad.Validate()
	for _, f := range []string{"BodyLimit", "MaxDocuments", "MaxDocumentIDLen", "RateLimit", "RateBurst"} {
		require.ErrorContains(t, err, f)
	}
	_, err = New(Config{}, Deps{})
	require.ErrorContains(t, err, "Deps.Records is required")
}
