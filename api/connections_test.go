package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/connections/oidctest"
)

type connectionResp struct {
	ID            string `json:"id"`
	Provider      string `json:"provider"`
	Status        string `json:"status"`
	LastRefreshed string `json:"last_refreshed"`
}

func TestConnectionsWithoutProviders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.do(http.MethodPost, "/v1/connections", e.admin, jsonBody(map[string]string{"provider": "google"}))
	requireProblem(t, rec, http.StatusBadRequest, `provider "google" is not configured on this server`)
	rec = e.do(http.MethodPost, "/v1/connections", e.admin, jsonBody(map[string]string{}))
	requireProblem(t, rec, http.StatusBadRequest, "provider is required")
	rec = e.do(http.MethodPost, "/v1/connections", e.editor, jsonBody(map[string]string{"provider": "google"}))
	requireProblem(t, rec, http.StatusForbidden, "role admin")

	rec = e.do(http.MethodGet, "/v1/connections", e.viewer)
	require.Equal(t, http.StatusOK, rec.Code)
	require.JSONEq(t, `{"connections":[],"next_cursor":""}`, rec.Body.String())
	for _, target := range []string{"/v1/connections/con_nope", "/v1/connections/other"} {
		requireProblem(t, e.do(http.MethodGet, target, e.viewer), http.StatusNotFound, "no such connection")
		requireProblem(t, e.do(http.MethodDelete, target, e.editor), http.StatusNotFound, "no such connection")
	}
	requireProblem(t, e.do(http.MethodGet, connections.StartPath+"?state=a.b.c", ""), http.StatusBadRequest, "not one of a live authorization")
}

// TestConnectionFlowThroughTheAPI runs the OAuth flow against the local
// authorization server, the browser's requests to Apiary going through
// the API's routes (and their OpenAPI check).
func TestConnectionFlowThroughTheAPI(t *testing.T) {
	t.Parallel()
	o := oidctest.Need(t)
	// Apiary's public URL is a real listener: the provider redirects the
	// browser to it. Its handler is the API built below.
	var mu sync.Mutex
	var handler http.Handler
	pub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := handler
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(pub.Close)
	e := newEnv(t, func(cfg *Config, deps *Deps) {
		svc, err := connections.New(connections.Config{
			Providers: []connections.Provider{{Name: "oidc", ClientID: o.ClientID, ClientSecret: o.ClientSecret, Issuer: o.Issuer, Scopes: []string{"openid"}}},
			PublicURL: pub.URL, Logger: cfg.Logger,
		}, deps.Records, deps.Keys, deps.Events)
		require.NoError(t, err)
		deps.Connections = svc
	})
	mu.Lock()
	handler = e.srv.Handler()
	mu.Unlock()

	// begin returns a new connection's id, its state and the callback URL
	// the provider sends the browser to, and the cookie the start set.
	begin := func() (id string, callback *url.URL, cookie *http.Cookie) {
		rec := e.do(http.MethodPost, "/v1/connections", e.admin, jsonBody(map[string]string{"provider": "oidc"}))
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		out := decode[struct {
			ID           string         `json:"connection_id"`
			AuthorizeURL string         `json:"authorize_url"`
			Connection   connectionResp `json:"connection"`
		}](t, rec)
		require.Equal(t, "pending", out.Connection.Status)
		require.True(t, strings.HasPrefix(out.AuthorizeURL, pub.URL+connections.StartPath+"?state="), out.AuthorizeURL)

		start, err := url.Parse(out.AuthorizeURL)
		require.NoError(t, err)
		rec = e.do(http.MethodGet, start.RequestURI(), "")
		require.Equal(t, http.StatusFound, rec.Code, rec.Body.String())
		cookies := rec.Result().Cookies()
		require.Len(t, cookies, 1)
		cookie = cookies[0]
		require.Equal(t, connections.CookieName, cookie.Name)
		require.True(t, cookie.HttpOnly)
		require.Equal(t, http.SameSiteLaxMode, cookie.SameSite)
		require.False(t, cookie.Secure, "plain http in the test; Secure under TLS")
		require.Equal(t, start.Query().Get("state"), cookie.Value)
		to, err := url.Parse(rec.Header().Get("Location"))
		require.NoError(t, err)
		require.Equal(t, "S256", to.Query().Get("code_challenge_method"))
		require.Empty(t, to.Query().Get("code_verifier"))

		// The browser signs in and consents; it stops at Apiary's callback.
		resp, body := oidctest.Authorize(t, oidctest.Browser(t, pub.URL+connections.CallbackPath), to.String())
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
		callback, err = url.Parse(resp.Header.Get("Location"))
		require.NoError(t, err)
		require.Equal(t, connections.CallbackPath+"oidc", callback.Path)
		return out.ID, callback, cookie
	}
	withCookie := func(c *http.Cookie) request {
		return request{header: http.Header{"Cookie": {c.String()}}}
	}

	id, cb, cookie := begin()
	otherID, _, otherCookie := begin()
	requireProblem(t, e.do(http.MethodGet, cb.RequestURI(), ""), http.StatusBadRequest, "no state cookie")
	requireProblem(t, e.do(http.MethodGet, cb.RequestURI(), "", withCookie(otherCookie)), http.StatusBadRequest, "does not match")
	rec := e.do(http.MethodGet, cb.RequestURI(), "", withCookie(cookie))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.JSONEq(t, `{"connection_id":"`+id+`","provider":"oidc","status":"active"}`, rec.Body.String())
	require.Contains(t, rec.Header().Get("Set-Cookie"), "Max-Age=0", "the state cookie is cleared")
	requireProblem(t, e.do(http.MethodGet, cb.RequestURI(), "", withCookie(cookie)), http.StatusBadRequest, "already completed")

	rec = e.do(http.MethodGet, "/v1/connections/"+id, e.viewer)
	require.Equal(t, http.StatusOK, rec.Code)
	got := decode[connectionResp](t, rec)
	require.Equal(t, connectionResp{ID: id, Provider: "oidc", Status: "active"}, got)
	rec = e.do(http.MethodGet, "/v1/connections?limit=1", e.viewer)
	require.Equal(t, http.StatusOK, rec.Code)
	page := decode[struct {
		Connections []connectionResp `json:"connections"`
		Next        string           `json:"next_cursor"`
	}](t, rec)
	require.Len(t, page.Connections, 1)
	require.NotEmpty(t, page.Next)
	rec = e.do(http.MethodGet, "/v1/connections?limit=1&cursor="+url.QueryEscape(page.Next), e.viewer)
	page2 := decode[struct {
		Connections []connectionResp `json:"connections"`
	}](t, rec)
	require.Len(t, page2.Connections, 1)
	require.ElementsMatch(t, []string{id, otherID}, []string{page.Connections[0].ID, page2.Connections[0].ID})

	// Another account sees none of it.
	_, otherAdmin := e.otherAccount("other")
	requireProblem(t, e.do(http.MethodGet, "/v1/connections/"+id, otherAdmin), http.StatusNotFound, "no such connection")
	requireProblem(t, e.do(http.MethodDelete, "/v1/connections/"+id, otherAdmin), http.StatusNotFound, "no such connection")

	// Disconnect: revoked at the provider, nothing kept.
	rec = e.do(http.MethodDelete, "/v1/connections/"+id, e.editor)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	dis := decode[struct {
		Connection connectionResp `json:"connection"`
		Revocation string         `json:"provider_revocation"`
	}](t, rec)
	require.Equal(t, "revoked", dis.Revocation)
	require.Equal(t, "revoked", dis.Connection.Status)
	c, err := e.recs.Connection(t.Context(), apiary.DefaultAccount, id)
	require.NoError(t, err)
	require.Empty(t, c.Sealed)

	// Neither the code nor the state reaches a log line.
	require.NotContains(t, e.logs.String(), cb.Query().Get("code"))
	require.NotContains(t, e.logs.String(), cb.Query().Get("state"))
	for _, body := range []string{rec.Body.String(), e.logs.String()} {
		for _, word := range []string{"access_token", "refresh_token", "sealed", "verifier"} {
			require.NotContains(t, body, word)
		}
	}
}

// TestConnectionTemplates uses the provider templates without a network:
// their endpoints are configured, so nothing is discovered.
func TestConnectionTemplates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(cfg *Config, deps *Deps) {
		notion, ms := connections.Templates["notion"], connections.Templates["microsoft"]
		notion.ClientID, notion.ClientSecret = "notion-client", "notion-secret"
		ms.ClientID, ms.ClientSecret = "ms-client", "ms-secret"
		svc, err := connections.New(connections.Config{
			Providers: []connections.Provider{notion, ms}, PublicURL: "https://apiary.example", Logger: cfg.Logger,
		}, deps.Records, deps.Keys, deps.Events)
		require.NoError(t, err)
		deps.Connections = svc
	})
	begin := func(provider string) (string, *http.Cookie, *url.URL) {
		rec := e.do(http.MethodPost, "/v1/connections", e.admin, jsonBody(map[string]string{"provider": provider}))
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		out := decode[struct {
			ID           string `json:"connection_id"`
			AuthorizeURL string `json:"authorize_url"`
		}](t, rec)
		start, err := url.Parse(out.AuthorizeURL)
		require.NoError(t, err)
		require.Equal(t, "https://apiary.example"+connections.StartPath, start.Scheme+"://"+start.Host+start.Path)
		rec = e.do(http.MethodGet, start.RequestURI(), "")
		require.Equal(t, http.StatusFound, rec.Code, rec.Body.String())
		to, err := url.Parse(rec.Header().Get("Location"))
		require.NoError(t, err)
		return out.ID, rec.Result().Cookies()[0], to
	}

	id, cookie, to := begin("notion")
	require.True(t, cookie.Secure, "the public URL is https")
	require.True(t, cookie.HttpOnly)
	require.Equal(t, "api.notion.com", to.Host)
	q := to.Query()
	require.Equal(t, "notion-client", q.Get("client_id"))
	require.Equal(t, "https://apiary.example/v1/oauth/callback/notion", q.Get("redirect_uri"))
	require.Equal(t, "S256", q.Get("code_challenge_method"))
	require.Equal(t, "user", q.Get("owner"))
	require.NotContains(t, to.String(), "notion-secret")

	// The provider says no: the flow is spent, the answer says why.
	cb := "/v1/oauth/callback/notion?error=access_denied&state=" + url.QueryEscape(cookie.Value)
	requireProblem(t, e.do(http.MethodGet, cb, "", request{header: http.Header{"Cookie": {cookie.String()}}}),
		http.StatusBadRequest, "refused the authorization: access_denied")
	requireProblem(t, e.do(http.MethodGet, cb, "", request{header: http.Header{"Cookie": {cookie.String()}}}),
		http.StatusBadRequest, "already completed")
	// A callback at another provider's redirect URI is refused (mix-up).
	msID, msCookie, _ := begin("microsoft")
	cb = "/v1/oauth/callback/notion?code=x&state=" + url.QueryEscape(msCookie.Value)
	requireProblem(t, e.do(http.MethodGet, cb, "", request{header: http.Header{"Cookie": {msCookie.String()}}}),
		http.StatusBadRequest, "started for another provider")

	// Microsoft has no per-grant revocation: the answer says so and links the user's page.
	rec := e.do(http.MethodDelete, "/v1/connections/"+msID, e.editor)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.JSONEq(t, `"unsupported"`, mustJSON(t, decode[map[string]any](t, rec)["provider_revocation"]))
	require.Equal(t, "https://myapps.microsoft.com", decode[map[string]any](t, rec)["manage_url"])
	rec = e.do(http.MethodGet, "/v1/connections/"+id, e.viewer)
	require.Equal(t, "pending", decode[connectionResp](t, rec).Status)
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestOAuthBrowserRoutesAreBudgeted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(cfg *Config, _ *Deps) {
		cfg.RateLimit, cfg.RateBurst, cfg.RefusalDelay = 0.001, 2, -1
	})
	for range 2 {
		requireProblem(t, e.do(http.MethodGet, connections.StartPath+"?state=a.b.c", ""), http.StatusBadRequest, "not one of a live authorization")
	}
	rec := e.do(http.MethodGet, connections.CallbackPath+"oidc?state=a.b.c", "")
	requireProblem(t, rec, http.StatusTooManyRequests, "too many authorization requests from this address")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
}

// TestPendingConnectionsBoundUnderConcurrency: 50 authorizations begun at
// once make at most connections.MaxPendingConnections pending; the others
// are refused with a problem (409, or 429 from the rate limit).
func TestPendingConnectionsBoundUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(cfg *Config, deps *Deps) {
		notion := connections.Templates["notion"]
		notion.ClientID, notion.ClientSecret = "notion-client", "notion-secret"
		svc, err := connections.New(connections.Config{
			Providers: []connections.Provider{notion}, PublicURL: "https://apiary.example", Logger: cfg.Logger,
		}, deps.Records, deps.Keys, deps.Events)
		require.NoError(t, err)
		deps.Connections = svc
	})
	const starts = 50
	recs := make([]*httptest.ResponseRecorder, starts)
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() {
			recs[i] = e.do(http.MethodPost, "/v1/connections", e.admin, jsonBody(map[string]string{"provider": "notion"}))
		})
	}
	wg.Wait()
	created := 0
	for _, rec := range recs {
		if rec.Code == http.StatusCreated {
			created++
			continue
		}
		require.Contains(t, []int{http.StatusConflict, http.StatusTooManyRequests}, rec.Code, rec.Body.String())
		require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	}
	require.Positive(t, created)
	require.LessOrEqual(t, created, connections.MaxPendingConnections)
	rec := e.do(http.MethodGet, "/v1/connections?limit=100", e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	list := decode[struct {
		Connections []struct {
			Status string `json:"status"`
		} `json:"connections"`
	}](t, rec)
	pending := 0
	for _, c := range list.Connections {
		if c.Status == "pending" {
			pending++
		}
	}
	require.Equal(t, created, pending)
}
