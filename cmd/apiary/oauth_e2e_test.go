package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/connections/oidctest"
	"github.com/apiaryhq/apiary/connectors/gdrive/gdrivetest"
)

// oauthFront stands between Apiary and the local authorization server
// (oidc-provider, scripts/test-services.sh) at the token and revocation
// endpoints, which --oauth-google-{token,revoke}-url point at: it records
// the tokens the server issues (the test's canaries: real tokens Apiary
// must never show) and the revocations Apiary asks for. The server's client
// authenticates with client_secret_basic only, and the google provider
// sends its client in the form (as Google wants): the front moves it to
// the Authorization header. At the authorization endpoint it records the
// scope asked for and asks the server for "openid" instead (a scope it
// knows).
type oauthFront struct {
	srv                       *httptest.Server
	authURL, tokenURL, revURL string
	scopes                    atomic.Value // the last scope asked for

	mu       sync.Mutex
	issued   []string // access and refresh tokens, in the order issued
	refresh  []string // the refresh tokens among them
	revoked  []string // token_type_hint of each revocation the server accepted
	revTotal int
}

func startOAuthFront(t *testing.T, o oidctest.Server) *oauthFront {
	t.Helper()
	var md struct {
		Auth       string `json:"authorization_endpoint"`
		Token      string `json:"token_endpoint"`
		Revocation string `json:"revocation_endpoint"`
	}
	resp, err := http.Get(o.Issuer + "/.well-known/openid-configuration")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(oidctest.ReadAll(t, resp)), &md))
	f := &oauthFront{authURL: md.Auth, tokenURL: md.Token, revURL: md.Revocation}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /auth", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.scopes.Store(q.Get("scope"))
		q.Set("scope", "openid")
		http.Redirect(w, r, f.authURL+"?"+q.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		status, body := f.forward(r, f.tokenURL)
		var tok struct {
			Access  string `json:"access_token"`
			Refresh string `json:"refresh_token"`
		}
		if status == http.StatusOK && json.Unmarshal(body, &tok) == nil {
			f.mu.Lock()
			f.issued = append(f.issued, tok.Access)
			if tok.Refresh != "" {
				f.issued = append(f.issued, tok.Refresh)
				f.refresh = append(f.refresh, tok.Refresh)
			}
			f.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		hint := ""
		if r.ParseForm() == nil {
			hint = r.PostForm.Get("token_type_hint")
		}
		status, body := f.forward(r, f.revURL)
		f.mu.Lock()
		f.revTotal++
		if status == http.StatusOK {
			f.revoked = append(f.revoked, hint)
		}
		f.mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// forward sends r's form to the server at to, the client moved from the
// form to basic auth, and returns the answer.
func (f *oauthFront) forward(r *http.Request, to string) (int, []byte) {
	if err := r.ParseForm(); err != nil {
		return http.StatusBadRequest, nil
	}
	form := r.PostForm
	id, secret := form.Get("client_id"), form.Get("client_secret")
	form.Del("client_id")
	form.Del("client_secret")
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, to, strings.NewReader(form.Encode()))
	if err != nil {
		return http.StatusBadGateway, nil
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	} else if u, p, ok := r.BasicAuth(); ok {
		req.SetBasicAuth(u, p)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return http.StatusBadGateway, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body
}

func (f *oauthFront) seen() (issued, refresh, revoked []string, revTotal int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.issued...), append([]string(nil), f.refresh...), append([]string(nil), f.revoked...), f.revTotal
}

// TestOAuthConnectionLeakAndDisconnect runs `apiary serve` with debug logs
// against the real local authorization server and a Drive fake: it
// connects a google connection through the OAuth flow, ingests the drive
// through it, and checks that neither the data dir nor the logs hold the
// issued tokens in any form; another account cannot see, use or cut the
// connection. Then it disconnects while one job of the connection is
// fetching and another is queued: the provider revoked the grant (no copy
// of a token anywhere is usable any more), both jobs are canceled, and the
// connection reads nothing again: no request reaches the vendor after it.
func TestOAuthConnectionLeakAndDisconnect(t *testing.T) {
	o := oidctest.Need(t)
	front := startOAuthFront(t, o)
	drive := gdrivetest.New()
	for name, text := range map[string]string{
		"hives.txt": "Honeybees store nectar as honey in hexagonal wax cells.",
		"queen.txt": "The queen bee lays up to two thousand eggs a day in spring.",
		"swarm.txt": "A swarm leaves the old hive with the old queen in late spring.",
	} {
		drive.Add("", name, "text/plain", []byte(text))
	}
	// Once held is set, every content download waits for gate.open.
	var held atomic.Bool
	gate := startGate(t, drive, func(r *http.Request) bool { return held.Load() && r.URL.Query().Get("alt") == "media" })

	t.Setenv("APIARY_OAUTH_GOOGLE_CLIENT_SECRET", o.ClientSecret)
	addr := freeAddr(t)
	dataDir := t.TempDir()
	token, err := api.NewToken()
	require.NoError(t, err)
	s := startRoleAt(t, addr, "serve", dataDir, token,
		"--log-level", "debug", "--workers", "1", "--allow-private-sources",
		"--public-url", "http://"+addr,
		"--source-api-urls", "gdrive="+gate.URL+"/drive/v3",
		"--oauth-google-client-id", o.ClientID,
		"--oauth-google-issuer", o.Issuer,
		"--oauth-google-auth-url", front.srv.URL+"/auth",
		"--oauth-google-token-url", front.srv.URL+"/token",
		"--oauth-google-revoke-url", front.srv.URL+"/revoke",
		// Endpoints alone do not turn a provider on.
		"--oauth-github-token-url", front.srv.URL+"/token",
	)
	var problem struct {
		Detail string `json:"detail"`
	}
	require.Equal(t, http.StatusBadRequest, s.call(s.token, http.MethodPost, "/v1/connections", map[string]string{"provider": "github"}, &problem))
	require.Contains(t, problem.Detail, `provider "github" is not configured on this server`)

	// Connect through the browser flow.
	var created struct {
		ID           string `json:"connection_id"`
		AuthorizeURL string `json:"authorize_url"`
	}
	require.Equal(t, http.StatusCreated, s.call(s.token, http.MethodPost, "/v1/connections", map[string]string{"provider": "google"}, &created))
	resp, body := oidctest.Authorize(t, oidctest.Browser(t, ""), created.AuthorizeURL)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"status":"active"`)
	require.Equal(t, "https://www.googleapis.com/auth/drive.readonly", front.scopes.Load(), "the scope of --gdrive-scope")
	issued, refresh, _, _ := front.seen()
	require.Len(t, refresh, 1, "the code exchange issued a refresh token")
	access := issued[0]
	drive.SetToken(access) // the vendor accepts the connection's access token only
	forms := newCanaries(issued...)

	// Ingest the drive through the connection.
	ingest := func(token string) (int, string) {
		var accepted struct {
			JobID string `json:"job_id"`
		}
		code := s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"source": map[string]any{"connection_id": created.ID, "location": "all"}}, &accepted)
		return code, accepted.JobID
	}
	code, first := ingest(s.token)
	require.Equal(t, http.StatusAccepted, code)
	j := waitSplitJob(t, s, first)
	require.Equal(t, "succeeded", j.Status, "%+v", j)
	require.Equal(t, 3, j.Counts.DocumentsDone)

	// Another account's admin: the connection id is not found, whatever
	// the route, and nothing reaches the vendor.
	var other struct {
		Token string `json:"token"`
	}
	require.Equal(t, http.StatusCreated, s.call(s.token, http.MethodPost, "/v1/accounts", map[string]string{"name": "other"}, &other))
	before := gate.requests.Load()
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/connections/" + created.ID},
		{http.MethodPost, "/v1/connections/" + created.ID + "/sync"},
		{http.MethodDelete, "/v1/connections/" + created.ID},
	} {
		require.Equal(t, http.StatusNotFound, s.call(other.Token, c.method, c.path, nil, nil), "%s %s", c.method, c.path)
	}
	code, _ = ingest(other.Token)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, before, gate.requests.Load(), "another account's requests fetched nothing")
	var conn struct {
		Status string `json:"status"`
	}
	require.Equal(t, http.StatusOK, s.call(s.token, http.MethodGet, "/v1/connections/"+created.ID, nil, &conn))
	require.Equal(t, "active", conn.Status)

	// A job of the connection is fetching (held at the vendor), a sync
	// waits behind it (one worker); then the connection is cut.
	drive.Add("", "drones.txt", "text/plain", []byte("Drones are male bees that do not sting."))
	held.Store(true)
	code, running := ingest(s.token)
	require.Equal(t, http.StatusAccepted, code)
	select {
	case <-gate.fetching:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the job never fetched:\n%s", s.stderr.String())
	}
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(s.token, http.MethodPost, "/v1/connections/"+created.ID+"/sync", nil, &accepted))
	queued := accepted.JobID
	var qj splitJob
	require.Equal(t, http.StatusOK, s.call(s.token, http.MethodGet, "/v1/jobs/"+queued, nil, &qj))
	require.Equal(t, "queued", qj.Status)

	var disconnected struct {
		Revocation string `json:"provider_revocation"`
		Canceled   int    `json:"jobs_canceled"`
	}
	require.Equal(t, http.StatusOK, s.call(s.token, http.MethodDelete, "/v1/connections/"+created.ID, nil, &disconnected))
	require.Equal(t, "revoked", disconnected.Revocation)
	require.Equal(t, 2, disconnected.Canceled, "the running and the queued job")
	cut := gate.requests.Load() // the held download is counted already
	_, _, revoked, revTotal := front.seen()
	require.Contains(t, revoked, "refresh_token", "the provider's revocation endpoint was called")
	require.Equal(t, len(revoked), revTotal, "every revocation was accepted")
	// No copy of a token, in any process's memory, is usable any more.
	for _, tok := range issued {
		require.False(t, o.Active(t, tok), "a token of the connection is still active at the provider")
	}
	gate.open()
	for _, id := range []string{running, queued} {
		j := waitSplitJob(t, s, id)
		require.Equal(t, "canceled", j.Status, "job %s: %+v", id, j)
	}
	// The connection reads nothing any more.
	code, _ = ingest(s.token)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, http.StatusConflict, s.call(s.token, http.MethodPost, "/v1/connections/"+created.ID+"/sync", nil, nil))

	// Nothing under the data dir or in the debug logs holds a token.
	s.stop()
	require.Equal(t, cut, gate.requests.Load(), "no request reached the vendor after the disconnect")
	require.Contains(t, s.stderr.String(), `"route":"/v1/oauth/callback/:provider"`, "the logs were captured")
	for _, out := range []struct{ name, text string }{{"stdout", s.stdout.String()}, {"stderr", s.stderr.String()}} {
		forms.requireNone(t, []byte(out.text), out.name)
	}
	var all []byte
	files := readTree(t, dataDir, func(path string, b []byte) {
		forms.requireNone(t, b, path)
		all = append(all, b...)
	})
	require.Greater(t, files, 3, "the scan read the NATS store, keyring and vector store")
	require.Contains(t, string(all), created.ID, "the scan read the connection's record")
}

// TestSecretForms checks the leak search: a secret is found raw, in hex,
// URL-escaped and in base64 wherever it starts, and a part of it is not.
func TestSecretForms(t *testing.T) {
	t.Parallel()
	secret := "canary+refresh/token=1"
	forms := newCanaries(secret)
	for _, b := range [][]byte{
		[]byte("x" + secret + "y"),
		[]byte(hex.EncodeToString([]byte("ab" + secret))),
		[]byte("?t=" + url.QueryEscape(secret) + "&"),
		[]byte("/" + url.PathEscape(secret)),
		[]byte(base64.StdEncoding.EncodeToString([]byte("z" + secret))),
		[]byte(base64.URLEncoding.EncodeToString([]byte("zz" + secret))),
	} {
		require.NotNil(t, forms.in(b), "%s", b)
	}
	require.Nil(t, forms.in([]byte("canary+refresh/tok")))
}
