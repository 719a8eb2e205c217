package connections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections/oidctest"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
)

// countingTransport counts requests to the token endpoint.
type countingTransport struct{ token atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/token" {
		c.token.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

type publisher struct {
	mu  sync.Mutex
	evs []apiary.Event
}

func (p *publisher) Publish(_ context.Context, ev apiary.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, ev)
	return nil
}

func (p *publisher) types() []apiary.EventType {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []apiary.EventType
	for _, ev := range p.evs {
		out = append(out, ev.Type)
	}
	return out
}

// world is Apiary's side of the flow: the service over in-memory records
// and a keyring, and a tiny HTTP server with the start and callback routes
// (as the API serves them) on 127.0.0.1.
type world struct {
	oidc      oidctest.Server
	svc       *Service
	recs      *records.Store
	kvs       *memkv.Store
	logs      *testutil.Buffer
	events    *publisher
	transport *countingTransport
	srv       *httptest.Server
	// intercept, when set, takes the callback instead of Complete.
	intercept func(Callback)
}

const acc = apiary.AccountID("acc_one")

func newWorld(t *testing.T) *world {
	t.Helper()
	o := oidctest.Need(t)
	ctx := context.Background()
	w := &world{oidc: o, kvs: memkv.New(), logs: &testutil.Buffer{}, events: &publisher{}, transport: &countingTransport{}}
	var err error
	w.recs, err = records.Open(ctx, w.kvs)
	require.NoError(t, err)
	keys, err := keyring.New(keyring.Config{Dir: filepath.Join(t.TempDir(), "keys"), RootKey: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	for _, a := range []apiary.AccountID{acc, "acc_two"} {
		require.NoError(t, keys.CreateAccountKey(ctx, a))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StartPath, func(rw http.ResponseWriter, r *http.Request) {
		state := r.URL.Query().Get("state")
		to, err := w.svc.Start(r.Context(), state)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		http.SetCookie(rw, &http.Cookie{Name: CookieName, Value: state, Path: "/v1/oauth/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(rw, r, to, http.StatusFound)
	})
	mux.HandleFunc("GET "+CallbackPath+"{provider}", func(rw http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		cb := Callback{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss"), Error: q.Get("error")}
		if w.intercept != nil {
			w.intercept(cb)
			return
		}
		var cookie string
		if c, err := r.Cookie(CookieName); err == nil {
			cookie = c.Value
		}
		c, err := w.svc.Complete(r.Context(), r.PathValue("provider"), cb, cookie)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(rw).Encode(map[string]string{"status": string(c.Status)})
	})
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	w.svc = w.newService(t, keys)
	return w
}

// newService is one more process over the same records and keys.
func (w *world) newService(t *testing.T, keys encrypt.KeyProvider) *Service {
	t.Helper()
	svc, err := New(Config{
		Providers:  []Provider{{Name: "oidc", ClientID: w.oidc.ClientID, ClientSecret: w.oidc.ClientSecret, Issuer: w.oidc.Issuer, Scopes: []string{"openid"}}},
		PublicURL:  w.srv.URL,
		HTTPClient: &http.Client{Transport: w.transport, Timeout: 30 * time.Second},
		Logger:     slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, w.recs, keys, w.events)
	require.NoError(t, err)
	return svc
}

// connect runs the whole flow for account and returns the connection id.
func (w *world) connect(t *testing.T, account apiary.AccountID) string {
	t.Helper()
	c, authURL, err := w.svc.Begin(context.Background(), account, "oidc")
	require.NoError(t, err)
	require.Equal(t, records.ConnectionPending, c.Status)
	resp, body := oidctest.Authorize(t, oidctest.Browser(t, ""), authURL)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.JSONEq(t, `{"status":"active"}`, body)
	return c.ID
}

func (w *world) tokens(t *testing.T, account apiary.AccountID, id string) *oauth2.Token {
	t.Helper()
	c, err := w.recs.Connection(context.Background(), account, id)
	require.NoError(t, err)
	tok, err := w.svc.open(context.Background(), c)
	require.NoError(t, err)
	return tok
}

// authorizedCallback runs a new flow of acc up to Apiary's callback and
// returns what the provider sent there, without completing it.
func (w *world) authorizedCallback(t *testing.T) Callback {
	t.Helper()
	cbs := make(chan Callback, 1)
	w.intercept = func(cb Callback) { cbs <- cb }
	_, authURL, err := w.svc.Begin(context.Background(), acc, "oidc")
	require.NoError(t, err)
	oidctest.Authorize(t, oidctest.Browser(t, ""), authURL)
	return <-cbs
}

// connected is a world with one active connection of acc, its id and its
// first tokens.
func connected(t *testing.T) (*world, context.Context, string, *oauth2.Token) {
	t.Helper()
	w := newWorld(t)
	id := w.connect(t, acc)
	return w, context.Background(), id, w.tokens(t, acc, id)
}

// expire makes the stored access token look expired, so the next Token
// call refreshes.
func (w *world) expire(t *testing.T, account apiary.AccountID, id string) {
	t.Helper()
	_, err := w.recs.UpdateConnection(context.Background(), account, id, func(c *records.Connection) error {
		c.AccessExpiry = time.Now().Add(-time.Hour).UTC()
		return nil
	})
	require.NoError(t, err)
}

// exchangeRefresh uses a refresh token directly at the provider.
func (w *world) exchangeRefresh(t *testing.T, refresh string) error {
	t.Helper()
	r, err := w.svc.provider(context.Background(), "oidc")
	require.NoError(t, err)
	_, err = w.svc.oauthConfig(r.p).TokenSource(context.Background(), &oauth2.Token{RefreshToken: refresh, Expiry: time.Unix(1, 0)}).Token()
	return err
}

// requireNoSecrets checks that no token appears in the logs or, in the
// clear, in any record's bytes.
func (w *world) requireNoSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	kv, err := w.kvs.Bucket(ctx, "connections")
	require.NoError(t, err)
	keys, err := kv.Keys(ctx, "")
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	var all []byte
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		all = append(all, e.Value...)
	}
	logs := w.logs.String()
	for _, s := range secrets {
		require.NotEmpty(t, s)
		require.NotContains(t, logs, s, "a token in the logs")
		require.False(t, bytes.Contains(all, []byte(s)), "a token in the clear in a record")
	}
}

func TestFlowConnectsAndSealsTokens(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	id := w.connect(t, acc)

	c, err := w.svc.Connection(context.Background(), acc, id)
	require.NoError(t, err)
	require.Equal(t, records.ConnectionActive, c.Status)
	require.Nil(t, c.Flow, "the flow is consumed")
	tok := w.tokens(t, acc, id)
	require.NotEmpty(t, tok.RefreshToken)
	require.True(t, w.oidc.Active(t, tok.AccessToken))

	got, err := w.svc.Token(context.Background(), acc, id)
	require.NoError(t, err)
	require.Equal(t, tok.AccessToken, got.AccessToken)
	w.requireNoSecrets(t, tok.AccessToken, tok.RefreshToken)

	// Another account's id is not found, for reading and for tokens.
	_, err = w.svc.Connection(context.Background(), "acc_two", id)
	require.ErrorIs(t, err, apiary.ErrNotFound)
	_, err = w.svc.Token(context.Background(), "acc_two", id)
	require.ErrorIs(t, err, apiary.ErrNotFound)
	_, err = w.svc.Disconnect(context.Background(), "acc_two", id)
	require.ErrorIs(t, err, apiary.ErrNotFound)
}

func TestProviderEnforcesPKCE(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	cb := w.authorizedCallback(t)
	require.NotEmpty(t, cb.Code)
	require.Equal(t, w.oidc.Issuer, cb.Iss, "the provider sends iss (RFC 9207)")

	r, err := w.svc.provider(context.Background(), "oidc")
	require.NoError(t, err)
	_, err = w.svc.oauthConfig(r.p).Exchange(context.Background(), cb.Code) // no verifier
	var re *oauth2.RetrieveError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "invalid_grant", re.ErrorCode)
	_, err = w.svc.oauthConfig(r.p).Exchange(context.Background(), cb.Code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	require.ErrorAs(t, err, &re, "a wrong verifier fails too")

	// The authorization URL asked for S256.
	to, err := w.svc.Start(context.Background(), cb.State)
	require.NoError(t, err)
	pu, err := url.Parse(to)
	require.NoError(t, err)
	require.Equal(t, "S256", pu.Query().Get("code_challenge_method"))
	require.NotEmpty(t, pu.Query().Get("code_challenge"))
}

func TestCallbackRefusesForeignOrReplayedState(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	cb, other := w.authorizedCallback(t), w.authorizedCallback(t)

	tests := []struct {
		name   string
		cb     Callback
		cookie string
		want   string
	}{
		{"no cookie", cb, "", "no state cookie"},
		{"another flow's cookie", cb, other.State, "does not match"},
		{"a made-up state in both", Callback{Code: cb.Code, State: "x.y.z", Iss: cb.Iss}, "x.y.z", "not one of a live authorization"},
		{"another issuer", Callback{Code: cb.Code, State: cb.State, Iss: "https://evil.example"}, cb.State, "another issuer"},
		{"no iss from a provider that promises it", Callback{Code: cb.Code, State: cb.State}, cb.State, "promises iss"},
	}
	for _, tt := range tests {
		_, err := w.svc.Complete(ctx, "oidc", tt.cb, tt.cookie)
		require.ErrorIs(t, err, apiary.ErrInvalid, tt.name)
		require.ErrorContains(t, err, tt.want, tt.name)
	}
	_, err := w.svc.Complete(ctx, "github", cb, cb.State)
	require.ErrorContains(t, err, "not configured", "a provider that is not configured")

	// The refused attempts left the flow alone; the right one completes it once.
	c, err := w.svc.Complete(ctx, "oidc", cb, cb.State)
	require.NoError(t, err)
	require.Equal(t, records.ConnectionActive, c.Status)
	_, err = w.svc.Complete(ctx, "oidc", cb, cb.State)
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.ErrorContains(t, err, "already completed", "a replayed state")

	// An expired flow is refused.
	_, err = w.recs.UpdateConnection(ctx, acc, mustParse(t, other.State), func(c *records.Connection) error {
		c.Flow.ExpiresAt = time.Now().Add(-time.Second)
		return nil
	})
	require.NoError(t, err)
	_, err = w.svc.Complete(ctx, "oidc", other, other.State)
	require.ErrorContains(t, err, "expired")
}

// A callback replayed while the first is still being handled is refused
// before the code reaches the provider: the flow is consumed by
// compare-and-swap, once.
func TestConcurrentCallbacksExchangeOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	cb := w.authorizedCallback(t)

	before := w.transport.token.Load()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 5 {
		wg.Go(func() {
			if _, err := w.svc.Complete(context.Background(), "oidc", cb, cb.State); err == nil {
				ok.Add(1)
			} else {
				require.ErrorIs(t, err, apiary.ErrInvalid)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(1), ok.Load())
	require.Equal(t, int64(1), w.transport.token.Load()-before, "one code exchange at the provider")
}

func mustParse(t *testing.T, state string) string {
	_, id, err := parseState(state)
	require.NoError(t, err)
	return id
}

func TestRefreshRotatesAndStoresBeforeUse(t *testing.T) {
	t.Parallel()
	w, ctx, id, first := connected(t)

	w.expire(t, acc, id)
	got, err := w.svc.Token(ctx, acc, id)
	require.NoError(t, err)
	stored := w.tokens(t, acc, id)
	require.NotEqual(t, first.RefreshToken, stored.RefreshToken, "the refresh token rotated")
	require.Equal(t, got.RefreshToken, stored.RefreshToken, "the rotated refresh token is stored")
	require.Equal(t, got.AccessToken, stored.AccessToken)
	require.NotEqual(t, first.AccessToken, got.AccessToken)
	c, err := w.recs.Connection(ctx, acc, id)
	require.NoError(t, err)
	require.NotNil(t, c.LastRefreshed)
	require.Nil(t, c.Lease)
	require.True(t, c.AccessExpiry.After(time.Now()))

	// The stored one works at the provider: the next refresh succeeds.
	w.expire(t, acc, id)
	_, err = w.svc.Token(ctx, acc, id)
	require.NoError(t, err)
	w.requireNoSecrets(t, first.RefreshToken, first.AccessToken, stored.RefreshToken, got.AccessToken)
}

// A caller whose unexpired access token was refused asks for a refresh;
// a caller holding a token refreshed since gets the stored one.
func TestRefreshOfARefusedToken(t *testing.T) {
	t.Parallel()
	w, ctx, id, first := connected(t)

	got, err := w.svc.Refresh(ctx, acc, id, first.AccessToken)
	require.NoError(t, err)
	require.NotEqual(t, first.AccessToken, got.AccessToken)
	require.Equal(t, got.RefreshToken, w.tokens(t, acc, id).RefreshToken)

	calls := w.transport.token.Load()
	again, err := w.svc.Refresh(ctx, acc, id, first.AccessToken)
	require.NoError(t, err)
	require.Equal(t, got.AccessToken, again.AccessToken)
	require.Equal(t, calls, w.transport.token.Load(), "no second refresh for a token already replaced")
}

func TestRefreshOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	id := w.connect(t, acc)
	// Several "processes" (services over the same records) refresh at once.
	svcs := []*Service{w.svc, w.newService(t, w.svc.keys), w.newService(t, w.svc.keys), w.newService(t, w.svc.keys)}
	w.expire(t, acc, id)
	before := w.transport.token.Load()
	var wg sync.WaitGroup
	toks := make([]string, len(svcs))
	errs := make([]error, len(svcs))
	for i, s := range svcs {
		wg.Go(func() {
			tok, err := s.Token(ctx, acc, id)
			errs[i] = err
			if err == nil {
				toks[i] = tok.AccessToken
			}
		})
	}
	wg.Wait()
	for i := range svcs {
		require.NoError(t, errs[i])
		require.Equal(t, toks[0], toks[i], "every process got the one refreshed token")
	}
	require.Equal(t, int64(1), w.transport.token.Load()-before, "one refresh at the provider")
	c, err := w.recs.Connection(ctx, acc, id)
	require.NoError(t, err)
	require.Equal(t, records.ConnectionActive, c.Status, "no refresh token was used twice")
}

func TestReusedRefreshTokenKillsTheGrant(t *testing.T) {
	t.Parallel()
	w, ctx, id, first := connected(t)
	w.expire(t, acc, id)
	_, err := w.svc.Token(ctx, acc, id)
	require.NoError(t, err)

	// Someone replays the rotated refresh token: the provider refuses it and
	// revokes the whole grant.
	var re *oauth2.RetrieveError
	require.ErrorAs(t, w.exchangeRefresh(t, first.RefreshToken), &re)
	require.Equal(t, "invalid_grant", re.ErrorCode)

	// Apiary's next refresh finds the grant dead: reauth_required, an event,
	// the tokens destroyed, and no more calls to the provider.
	w.expire(t, acc, id)
	_, err = w.svc.Token(ctx, acc, id)
	require.ErrorIs(t, err, apiary.ErrForbidden)
	require.ErrorContains(t, err, "authorized again")
	c, err := w.recs.Connection(ctx, acc, id)
	require.NoError(t, err)
	require.Equal(t, records.ConnectionReauthRequired, c.Status)
	require.Empty(t, c.Sealed)
	require.Nil(t, c.Lease)
	require.Equal(t, []apiary.EventType{apiary.EventConnectionReauthRequired}, w.events.types())

	calls := w.transport.token.Load()
	for range 3 {
		_, err = w.svc.Token(ctx, acc, id)
		require.ErrorIs(t, err, apiary.ErrForbidden)
	}
	require.Equal(t, calls, w.transport.token.Load(), "no retry storm against the provider")
	w.requireNoSecrets(t, first.RefreshToken, first.AccessToken)
}

func TestDisconnectRevokesAtTheProvider(t *testing.T) {
	t.Parallel()
	w, ctx, id, tok := connected(t)
	require.True(t, w.oidc.Active(t, tok.AccessToken))

	rep, err := w.svc.Disconnect(ctx, acc, id)
	require.NoError(t, err)
	require.Equal(t, Revoked, rep.Revocation)
	require.Equal(t, records.ConnectionRevoked, rep.Connection.Status)

	require.False(t, w.oidc.Active(t, tok.AccessToken), "the access token no longer works")
	require.False(t, w.oidc.Active(t, tok.RefreshToken), "the refresh token no longer works")
	require.Error(t, w.exchangeRefresh(t, tok.RefreshToken))

	c, err := w.recs.Connection(ctx, acc, id)
	require.NoError(t, err)
	require.Equal(t, records.ConnectionRevoked, c.Status)
	require.Empty(t, c.Sealed, "no token, no wrapped key left")
	_, err = w.svc.Token(ctx, acc, id)
	require.ErrorIs(t, err, apiary.ErrForbidden)
	require.Equal(t, []apiary.EventType{apiary.EventConnectionRevoked}, w.events.types())
	w.requireNoSecrets(t, tok.AccessToken, tok.RefreshToken)
}

func TestUnconfiguredProviderIsAClearError(t *testing.T) {
	t.Parallel()
	svc, err := New(Config{}, nil, nil, nil)
	require.NoError(t, err)
	_, _, err = svc.Begin(context.Background(), acc, "google")
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.ErrorContains(t, err, `provider "google" is not configured on this server`)
}

func TestProviderStringHidesTheSecret(t *testing.T) {
	t.Parallel()
	p := Provider{Name: "oidc", ClientID: "id", ClientSecret: "s3cret-value", Issuer: "https://i"}
	for _, s := range []string{p.String(), p.GoString()} {
		require.NotContains(t, s, "s3cret-value")
	}
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "p", p)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "p", p)
	require.NotContains(t, b.String(), "s3cret-value")
}

var _ storage.KVStore = (*memkv.Store)(nil)
