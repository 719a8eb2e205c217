package connections

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
)

// fakeGitHub is GitHub's side of an OAuth/GitHub App client, on a real
// local HTTP server: its token endpoint answers a refresh the way GitHub
// does for a dead refresh token (status 200, error bad_refresh_token), and
// DELETE /applications/{client_id}/grant checks the client's basic auth
// and the JSON body, recording each call.
type fakeGitHub struct {
	srv          *httptest.Server
	clientID     string
	clientSecret string
	grantStatus  int // what a well-formed grant deletion answers
	// refreshed, when set, is what a refresh answers (else bad_refresh_token).
	refreshed *oauth2.Token

	mu        sync.Mutex
	refreshes int
	deletions []grantDeletion
}

type grantDeletion struct {
	Method, Path, User, Password, ContentType string
	AccessToken                               string
	Status                                    int
}

func newFakeGitHub(t *testing.T, grantStatus int) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{clientID: "Iv1.apiarytest", clientSecret: "github-client-secret-canary", grantStatus: grantStatus}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.refreshes++
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if f.refreshed != nil {
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": f.refreshed.AccessToken,
				"refresh_token": f.refreshed.RefreshToken, "token_type": "bearer", "expires_in": 28800})
			return
		}
		_, _ = io.WriteString(w, `{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired.","error_uri":"https://docs.github.com"}`)
	})
	mux.HandleFunc("/applications/{client}/grant", func(w http.ResponseWriter, r *http.Request) {
		d := grantDeletion{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type")}
		d.User, d.Password, _ = r.BasicAuth()
		var body struct {
			AccessToken string `json:"access_token"`
		}
		err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body)
		d.AccessToken = body.AccessToken
		switch {
		case r.Method != http.MethodDelete:
			d.Status = http.StatusMethodNotAllowed
		case d.User != f.clientID || d.Password != f.clientSecret || r.PathValue("client") != f.clientID:
			d.Status = http.StatusUnauthorized
		case err != nil || body.AccessToken == "":
			d.Status = http.StatusUnprocessableEntity
		default:
			d.Status = f.grantStatus
		}
		f.mu.Lock()
		f.deletions = append(f.deletions, d)
		f.mu.Unlock()
		w.WriteHeader(d.Status)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) calls() (refreshes int, deletions []grantDeletion) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, append([]grantDeletion(nil), f.deletions...)
}

// provider is the github template pointed at the fake (as the operator's
// --oauth-github-*-url flags do).
func (f *fakeGitHub) provider() Provider {
	p := Templates["github"]
	p.ClientID, p.ClientSecret = f.clientID, f.clientSecret
	p.AuthURL = f.srv.URL + "/login/oauth/authorize"
	p.TokenURL = f.srv.URL + "/login/oauth/access_token"
	p.RevokeURL = f.srv.URL + "/applications/{client_id}/grant"
	return p
}

// githubConnection is a service configured with only the fake GitHub and
// an active connection of acc holding tok, sealed as the flow stores it.
func githubConnection(t *testing.T, f *fakeGitHub, tok *oauth2.Token) (*Service, *records.Store, *publisher, *testutil.Buffer, string) {
	t.Helper()
	ctx := context.Background()
	recs, err := records.Open(ctx, memkv.New())
	require.NoError(t, err)
	keys, err := keyring.New(keyring.Config{Dir: filepath.Join(t.TempDir(), "keys"), RootKey: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	require.NoError(t, keys.CreateAccountKey(ctx, acc))
	events, logs := &publisher{}, &testutil.Buffer{}
	svc, err := New(Config{Providers: []Provider{f.provider()}, PublicURL: "http://127.0.0.1:1",
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, recs, keys, events)
	require.NoError(t, err)
	id := apiary.RandomID("con_")
	sealed, err := svc.seal(ctx, acc, id, tok)
	require.NoError(t, err)
	now := time.Now().UTC()
	require.NoError(t, recs.CreateConnection(ctx, records.Connection{ID: id, Account: acc, Provider: "github",
		Status: records.ConnectionActive, Sealed: sealed, AccessExpiry: tok.Expiry.UTC(), CreatedAt: now, UpdatedAt: now}))
	return svc, recs, events, logs, id
}

var githubTokens = &oauth2.Token{AccessToken: "ghu_canaryACCESStoken0001", RefreshToken: "ghr_canaryREFRESHtoken0001",
	TokenType: "bearer", Expiry: time.Now().Add(8 * time.Hour)}

// TestGitHubDisconnectDeletesTheGrant: GitHub has no RFC 7009 endpoint; a
// disconnect deletes the grant with DELETE /applications/{client_id}/grant,
// the client in basic auth and the access token in a JSON body.
func TestGitHubDisconnectDeletesTheGrant(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status int
		want   Revocation
	}{{http.StatusNoContent, Revoked}, {http.StatusNotFound, Failed}} {
		f := newFakeGitHub(t, tt.status)
		svc, recs, _, logs, id := githubConnection(t, f, githubTokens)

		rep, err := svc.Disconnect(context.Background(), acc, id)
		require.NoError(t, err)
		require.Equal(t, tt.want, rep.Revocation, "grant deletion answered %d", tt.status)
		_, dels := f.calls()
		require.Len(t, dels, 1, "one grant deletion")
		d := dels[0]
		require.Equal(t, http.MethodDelete, d.Method)
		require.Equal(t, "/applications/"+f.clientID+"/grant", d.Path)
		require.Equal(t, f.clientID, d.User)
		require.Equal(t, f.clientSecret, d.Password)
		require.Equal(t, "application/json", d.ContentType)
		require.Equal(t, githubTokens.AccessToken, d.AccessToken)
		require.Equal(t, tt.status, d.Status, "the fake accepted the call's shape")

		c, err := recs.Connection(context.Background(), acc, id)
		require.NoError(t, err)
		require.Equal(t, records.ConnectionRevoked, c.Status)
		require.Empty(t, c.Sealed)
		for _, s := range []string{githubTokens.AccessToken, githubTokens.RefreshToken, f.clientSecret} {
			require.NotContains(t, logs.String(), s)
		}
	}
}

// TestGitHubBadRefreshTokenNeedsReauth: GitHub answers a dead refresh
// token with 200 and bad_refresh_token, not invalid_grant: the connection
// is reauth_required at once, with no retry storm.
func TestGitHubBadRefreshTokenNeedsReauth(t *testing.T) {
	t.Parallel()
	f := newFakeGitHub(t, http.StatusNoContent)
	expired := *githubTokens
	expired.Expiry = time.Now().Add(-time.Minute)
	svc, recs, events, _, id := githubConnection(t, f, &expired)

	for range 3 {
		_, err := svc.Token(context.Background(), acc, id)
		require.ErrorIs(t, err, apiary.ErrForbidden)
		require.ErrorContains(t, err, "authorized again")
	}
	refreshes, _ := f.calls()
	require.Equal(t, 1, refreshes, "one refresh, then no retry storm")
	c, err := recs.Connection(context.Background(), acc, id)
	require.NoError(t, err)
	require.Equal(t, records.ConnectionReauthRequired, c.Status)
	require.Empty(t, c.Sealed)
	require.Equal(t, []apiary.EventType{apiary.EventConnectionReauthRequired}, events.types())
}

// TestGitHubDisconnectRefreshesAnExpiredToken: GitHub deletes a grant only
// with a live access token; an expired one is refreshed first, and the
// grant deleted with the new one.
func TestGitHubDisconnectRefreshesAnExpiredToken(t *testing.T) {
	t.Parallel()
	f := newFakeGitHub(t, http.StatusNoContent)
	f.refreshed = &oauth2.Token{AccessToken: "ghu_canaryACCESStoken0002", RefreshToken: "ghr_canaryREFRESHtoken0002"}
	expired := *githubTokens
	expired.Expiry = time.Now().Add(-time.Minute)
	svc, recs, _, logs, id := githubConnection(t, f, &expired)

	rep, err := svc.Disconnect(context.Background(), acc, id)
	require.NoError(t, err)
	require.Equal(t, Revoked, rep.Revocation)
	refreshes, dels := f.calls()
	require.Equal(t, 1, refreshes)
	require.Len(t, dels, 1)
	require.Equal(t, f.refreshed.AccessToken, dels[0].AccessToken, "the grant is deleted with the live token")
	c, err := recs.Connection(context.Background(), acc, id)
	require.NoError(t, err)
	require.Empty(t, c.Sealed, "the refreshed tokens were never stored")
	for _, s := range []string{f.refreshed.AccessToken, f.refreshed.RefreshToken, expired.RefreshToken} {
		require.NotContains(t, logs.String(), s)
	}
}
