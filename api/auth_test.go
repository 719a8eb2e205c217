package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	unknown, err := NewToken()
	require.NoError(t, err)
	// Change the last checksum character to another one, whatever it was.
	last := "x"
	if strings.HasSuffix(unknown, last) {
		last = "y"
	}

	for _, tc := range []struct {
		name, header, want, challenge string
	}{
		{"missing", "", "missing bearer token", `Bearer realm="apiary"`},
		{"wrong scheme", "Basic dXNlcjpwYXNz", "Bearer scheme", `error="invalid_token"`},
		{"empty bearer", "Bearer ", "malformed token", `error="invalid_token"`},
		{"malformed", "Bearer apy_short", "malformed token", `error="invalid_token"`},
		{"bad checksum", "Bearer " + unknown[:len(unknown)-1] + last, "checksum", `error="invalid_token"`},
		{"unknown", "Bearer " + unknown, "unknown or revoked token", `error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request{header: http.Header{}}
			if tc.header != "" {
				req.header.Set("Authorization", tc.header)
			}
			rec := e.do(http.MethodGet, "/v1/jobs", "", req)
			requireProblem(t, rec, http.StatusUnauthorized, tc.want)
			require.Contains(t, rec.Header().Get("WWW-Authenticate"), tc.challenge)
		})
	}

	t.Run("lowercase scheme works", func(t *testing.T) {
		req := request{header: http.Header{"Authorization": {"bearer " + e.viewer}}}
		rec := e.do(http.MethodGet, "/v1/jobs", "", req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	})
}

func TestRoles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	job := e.ingest(e.editor, map[string]any{"id": "d", "text": "some text"})

	type call struct {
		method, path string
		req          request
	}
	ingest := call{http.MethodPost, "/v1/ingest", jsonBody(map[string]any{"documents": []map[string]any{{"id": "x", "text": "t"}}})}
	cancel := call{http.MethodPost, "/v1/jobs/" + string(job) + "/cancel", request{}}
	del := call{http.MethodDelete, "/v1/documents/nope", request{}}
	newTok := call{http.MethodPost, "/v1/tokens", jsonBody(map[string]string{"role": "viewer", "name": "n"})}
	listTok := call{http.MethodGet, "/v1/tokens", request{}}
	delTok := call{http.MethodDelete, "/v1/tokens/tok_x", request{}}
	newAcc := call{http.MethodPost, "/v1/accounts", jsonBody(map[string]string{"name": "n"})}

	for _, tc := range []struct {
		name  string
		token string
		call  call
		want  string
	}{
		{"viewer ingests", e.viewer, ingest, "role editor"},
		{"viewer cancels", e.viewer, cancel, "role editor"},
		{"viewer deletes a document", e.viewer, del, "role editor"},
		{"editor creates a token", e.editor, newTok, "role admin"},
		{"editor lists tokens", e.editor, listTok, "role admin"},
		{"viewer deletes a token", e.viewer, delTok, "role admin"},
		{"admin creates an account", e.admin, newAcc, "operator"},
		{"editor creates an account", e.editor, newAcc, "operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(tc.call.method, tc.call.path, tc.token, tc.call.req)
			requireProblem(t, rec, http.StatusForbidden, tc.want)
		})
	}

	// Nothing happened: the job is still queued.
	rec := e.do(http.MethodGet, "/v1/jobs/"+string(job), e.viewer)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, apiary.JobQueued, decode[jobView](t, rec).Status)
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.RateLimit = 0.001; c.RateBurst = 2 })
	for range 2 {
		rec := e.do(http.MethodGet, "/v1/jobs", e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	}
	rec := e.do(http.MethodGet, "/v1/jobs", e.viewer)
	requireProblem(t, rec, http.StatusTooManyRequests, "too many requests")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.NotEqual(t, "0", rec.Header().Get("Retry-After"))

	// Another token has its own bucket.
	rec = e.do(http.MethodGet, "/v1/jobs", e.editor)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

func TestLimiterMapBounded(t *testing.T) {
	t.Parallel()
	l := newLimiterMap[apiary.TokenID](10, 1, 3) // refills in 100 ms
	now := time.Unix(1000, 0)
	for i, id := range []apiary.TokenID{"a", "b", "c"} {
		_, ok := l.reserve(id, 1, now.Add(time.Duration(i)*time.Millisecond))
		require.True(t, ok)
	}
	_, ok := l.reserve("a", 1, now.Add(3*time.Millisecond))
	require.False(t, ok, "a's bucket is empty")

	// Full and nobody idle: the least recently used (b) goes.
	_, ok = l.reserve("d", 1, now.Add(4*time.Millisecond))
	require.True(t, ok)
	require.Equal(t, 3, l.len())
	_, ok = l.reserve("a", 1, now.Add(5*time.Millisecond))
	require.False(t, ok, "a kept its (empty) bucket")

	// Everybody idle past a refill: all are evicted to make room.
	_, ok = l.reserve("e", 1, now.Add(time.Second))
	require.True(t, ok)
	require.Equal(t, 1, l.len())
}

// TestRateLimitHeaders: every answer names the quota policies
// (RateLimit-Policy); every authenticated one, 429s included, says what is
// left of them (RateLimit), as draft-ietf-httpapi-ratelimit-headers has it.
func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.RateLimit = 0.001; c.RateBurst = 2 })
	const policy = `"token";q=2;w=2000, "account";q=400;w=2`

	rec := e.do(http.MethodGet, "/healthz", "")
	require.Equal(t, policy, rec.Header().Get("RateLimit-Policy"))
	require.Empty(t, rec.Header().Get("RateLimit"), "no token, no bucket")

	rec = e.do(http.MethodGet, "/v1/jobs", e.viewer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, policy, rec.Header().Get("RateLimit-Policy"))
	require.Equal(t, `"token";r=1;t=1000, "account";r=399;t=1`, rec.Header().Get("RateLimit"))

	rec = e.do(http.MethodGet, "/v1/jobs", e.viewer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.True(t, strings.HasPrefix(rec.Header().Get("RateLimit"), `"token";r=0;t=2000, "account";r=`), rec.Header().Get("RateLimit"))

	rec = e.do(http.MethodGet, "/v1/jobs", e.viewer)
	requireProblem(t, rec, http.StatusTooManyRequests, "too many requests")
	require.Equal(t, policy, rec.Header().Get("RateLimit-Policy"))
	require.True(t, strings.HasPrefix(rec.Header().Get("RateLimit"), `"token";r=0;t=`), rec.Header().Get("RateLimit"))

	rec = e.do(http.MethodGet, "/v1/jobs", "not-a-token")
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, policy, rec.Header().Get("RateLimit-Policy"))
}

// TestHSTSOnlyOverTLS: Strict-Transport-Security on answers over HTTPS,
// never over plain HTTP (where a browser ignores it anyway).
func TestHSTSOnlyOverTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	req := httptest.NewRequest(http.MethodGet, "https://apiary.example/healthz", nil)
	require.NotNil(t, req.TLS)
	rec := httptest.NewRecorder()
	e.srv.Echo().ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Header().Get("Strict-Transport-Security"), "max-age=63072000")

	rec = e.do(http.MethodGet, "/healthz", "")
	require.Empty(t, rec.Header().Get("Strict-Transport-Security"))
}
