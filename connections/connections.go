// Package connections is Apiary's OAuth connections: an account authorizes
// Apiary at a provider once, Apiary keeps the tokens sealed, refreshes them
// when they expire and can be disconnected at any moment.
//
// The flow is the authorization code grant with PKCE (S256, always sent)
// and a one-time state bound to the browser that started it:
//
//  1. Begin (POST /v1/connections) records a pending connection holding the
//     hash of a fresh state, the PKCE challenge and the verifier sealed, and
//     returns Apiary's own start URL.
//  2. Start (GET /v1/oauth/start) is opened by the user's browser: the API
//     sets a cookie holding the state and redirects to the provider.
//  3. Complete (GET /v1/oauth/callback/{provider}) refuses a state that is
//     not the cookie's, was used before or has expired, and an iss (RFC
//  9207. that is not the provider's issuer; it consumes the flow by
//     compare-and-swap, exchanges the code with the verifier and stores the
//     tokens sealed.
//
// Promises:
//   - Tokens and the PKCE verifier are sealed under the account's key
//     (pipeline/encrypt envelopes bound to the account and the connection);
//     nothing here writes one to a log line, an error or an event.
//   - A refresh happens once per connection across all processes: the one
//     holding the record's lease (taken by compare-and-swap on its revision)
//     refreshes, the others wait for its result. A rotated refresh token is
//     stored before anyone uses it.
//   - A provider's invalid_grant marks the connection reauth_required,
//     publishes connection.reauth_required, and every later Token call fails
//     with a Forbidden error at once (no retries against the provider).
//   - Disconnect revokes at the provider (RFC 7009) where it can and destroys
//     the sealed tokens together with their wrapped key.
//
// Safe for concurrent use.
package connections

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
)

// Paths of the browser-facing routes, under Config.PublicURL.
const (
	StartPath    = "/v1/oauth/start"
	CallbackPath = "/v1/oauth/callback/"
	// CookieName is the cookie that binds a flow's state to the browser.
	CookieName = "apiary_oauth_state"
)

// Records is what the service reads and writes of the record store.
type Records interface {
	CreateConnection(ctx context.Context, c records.Connection) error
	Connection(ctx context.Context, account apiary.AccountID, id string) (records.Connection, error)
	UpdateConnection(ctx context.Context, account apiary.AccountID, id string, fn func(*records.Connection) error) (records.Connection, error)
	Connections(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]records.Connection, string, error)
}

// Publisher publishes connection events (the events port's Publish).
type Publisher interface {
	Publish(ctx context.Context, ev apiary.Event) error
}

// Config configures the service. The zero value of each field means its
// default.
type Config struct {
	// Providers are the configured providers; any other name is refused.
	Providers []Provider
	// PublicURL is Apiary's base URL as browsers reach it
	// (https://apiary.example.com); the start and redirect URIs are built
	// on it. Required when Providers is not empty.
	PublicURL string
	// FlowTTL is how long an authorization may take. Default 10 minutes.
	FlowTTL time.Duration
	// LeaseTTL bounds one refresh; a lease older than this is taken over.
	// Default 1 minute.
	LeaseTTL time.Duration
	// RefreshSkew refreshes an access token this long before it expires.
	// Default 1 minute.
	RefreshSkew time.Duration
	// HTTPClient calls the providers. Default: a client with a 30 s timeout.
	HTTPClient *http.Client
	// Logger gets what failed, never a token. Default: silent.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.FlowTTL <= 0 {
		c.FlowTTL = 10 * time.Minute
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = time.Minute
	}
	if c.RefreshSkew <= 0 {
		c.RefreshSkew = time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, p := range c.Providers {
		errs = append(errs, p.Validate())
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("provider %s configured twice", p.Name))
		}
		seen[p.Name] = true
	}
	if len(c.Providers) > 0 {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("public URL: an absolute http(s) URL is required for OAuth providers"))
		}
	}
	return errors.Join(errs...)
}

// Service runs OAuth connections.
type Service struct {
	cfg    Config
	recs   Records
	keys   encrypt.KeyProvider
	events Publisher

	mu       sync.Mutex
	resolved map[string]resolved // providers with their endpoints discovered
}

type resolved struct {
	p             Provider
	issInResponse bool
}

// New returns the service. events may be nil (no events are published).
func New(cfg Config, recs Records, keys encrypt.KeyProvider, events Publisher) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "connections: config")
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	return &Service{cfg: cfg, recs: recs, keys: keys, events: events, resolved: map[string]resolved{}}, nil
}

// Secure reports whether the start URL is https (the cookie is then Secure).
func (s *Service) Secure() bool { return strings.HasPrefix(s.cfg.PublicURL, "https://") }

// FlowTTL is how long an authorization may take (the cookie's lifetime).
func (s *Service) FlowTTL() time.Duration { return s.cfg.FlowTTL }

// provider returns the named provider with its endpoints resolved; a clear
// Invalid error when it is not configured.
func (s *Service) provider(ctx context.Context, name string) (resolved, error) {
	s.mu.Lock()
	r, ok := s.resolved[name]
	s.mu.Unlock()
	if ok {
		return r, nil
	}
	var p *Provider
	for i := range s.cfg.Providers {
		if s.cfg.Providers[i].Name == name {
			p = &s.cfg.Providers[i]
		}
	}
	if p == nil {
		return resolved{}, apiary.E(apiary.KindInvalid, "provider %q is not configured on this server", name)
	}
	dp, iss, err := discover(ctx, s.cfg.HTTPClient, *p)
	if err != nil {
		return resolved{}, err
	}
	r = resolved{p: dp, issInResponse: iss}
	s.mu.Lock()
	s.resolved[name] = r
	s.mu.Unlock()
	return r, nil
}

func (s *Service) oauthConfig(p Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, AuthStyle: p.AuthStyle},
		RedirectURL:  s.RedirectURL(p.Name),
		Scopes:       p.Scopes,
	}
}

// RedirectURL is provider's one redirect URI.
func (s *Service) RedirectURL(provider string) string {
	return s.cfg.PublicURL + CallbackPath + provider
}

func (s *Service) httpContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
}

// --- the flow ---

// Begin records a pending connection of account to provider and returns it
// with the URL the user's browser opens to authorize it.
func (s *Service) Begin(ctx context.Context, account apiary.AccountID, provider string) (records.Connection, string, error) {
	if _, err := s.provider(ctx, provider); err != nil {
		return records.Connection{}, "", err
	}
	now := time.Now().UTC()
	c := records.Connection{
		ID: apiary.RandomID("con_"), Account: account, Provider: provider,
		Status: records.ConnectionPending, CreatedAt: now, UpdatedAt: now,
	}
	flow, state, err := s.newFlow(ctx, c, now)
	if err != nil {
		return records.Connection{}, "", err
	}
	c.Flow = flow
	if err := s.recs.CreateConnection(ctx, c); err != nil {
		return records.Connection{}, "", err
	}
	return c, s.cfg.PublicURL + StartPath + "?state=" + url.QueryEscape(state), nil
}

// newFlow makes a flow's state (account, connection and 32 random bytes)
// and PKCE verifier; the record keeps the state's hash and the verifier
// sealed.
func (s *Service) newFlow(ctx context.Context, c records.Connection, now time.Time) (*records.ConnectionFlow, string, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", fmt.Errorf("connections: begin: %w", err)
	}
	state := strings.Join([]string{
		b64(string(c.Account)), b64(c.ID), base64.RawURLEncoding.EncodeToString(secret),
	}, ".")
	verifier := oauth2.GenerateVerifier()
	sealed, err := encrypt.SealEnvelope(ctx, s.keys, c.Account, encCtx(c.ID, "pkce_verifier"), []byte(verifier))
	if err != nil {
		return nil, "", fmt.Errorf("connections: begin: %w", err)
	}
	return &records.ConnectionFlow{
		StateHash: hashState(state), Challenge: oauth2.S256ChallengeFromVerifier(verifier),
		SealedVerifier: sealed, ExpiresAt: now.Add(s.cfg.FlowTTL),
	}, state, nil
}

// Start checks state names a live flow and returns the provider's
// authorization URL for it. The caller sets the state cookie.
func (s *Service) Start(ctx context.Context, state string) (string, error) {
	account, id, err := parseState(state)
	if err != nil {
		return "", err
	}
	c, err := s.recs.Connection(ctx, account, id)
	if err != nil {
		return "", errBadState
	}
	if err := checkFlow(c, state, time.Now()); err != nil {
		return "", err
	}
	r, err := s.provider(ctx, c.Provider)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("code_challenge", c.Flow.Challenge),
		oauth2.SetAuthURLParam("code_challenge_method", "S256"),
	}
	for k, v := range r.p.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return s.oauthConfig(r.p).AuthCodeURL(state, opts...), nil
}

// Callback is what the provider sent back to the redirect URI.
type Callback struct {
	Code, State, Iss string
	// Error is the provider's error code (access_denied, ...), if any.
	Error string
}

var (
	errBadState = apiary.E(apiary.KindInvalid, "the state is not one of a live authorization: start again")
	errNoCookie = apiary.E(apiary.KindInvalid,
		"this browser did not start the authorization (no state cookie): open the authorize_url in the browser that completes it")
	errStateMismatch = apiary.E(apiary.KindInvalid, "the state does not match the one this browser started with")
	errUsedFlow      = apiary.E(apiary.KindInvalid, "this authorization was already completed or has expired: start again")
)

// Complete finishes the flow provider's callback belongs to: cookie is the
// state cookie of the browser. It returns the active connection.
func (s *Service) Complete(ctx context.Context, provider string, cb Callback, cookie string) (records.Connection, error) {
	if cookie == "" {
		return records.Connection{}, errNoCookie
	}
	if cb.State == "" || subtle.ConstantTimeCompare([]byte(cookie), []byte(cb.State)) != 1 {
		return records.Connection{}, errStateMismatch
	}
	account, id, err := parseState(cb.State)
	if err != nil {
		return records.Connection{}, err
	}
	r, err := s.provider(ctx, provider)
	if err != nil {
		return records.Connection{}, err
	}
	// Mix-up defence: the response names its issuer (RFC 9207) and it is
	// the provider's, and the flow was started for this provider.
	if cb.Iss != "" && cb.Iss != r.p.Issuer {
		return records.Connection{}, apiary.E(apiary.KindInvalid, "the authorization response comes from another issuer than provider %s's", provider)
	}
	if cb.Iss == "" && r.issInResponse {
		return records.Connection{}, apiary.E(apiary.KindInvalid, "provider %s promises iss in its authorization responses and this one has none", provider)
	}
	// Consume the flow: one compare-and-swap, so a replay finds it gone.
	var flow records.ConnectionFlow
	now := time.Now()
	_, err = s.recs.UpdateConnection(ctx, account, id, func(c *records.Connection) error {
		if err := checkFlow(*c, cb.State, now); err != nil {
			return err
		}
		if c.Provider != provider {
			return apiary.E(apiary.KindInvalid, "this authorization was started for another provider")
		}
		flow = *c.Flow
		c.Flow = nil
		c.UpdatedAt = now.UTC()
		return nil
	})
	if errors.Is(err, apiary.ErrNotFound) {
		return records.Connection{}, errBadState
	}
	if err != nil {
		return records.Connection{}, err
	}
	if cb.Error != "" {
		return records.Connection{}, apiary.E(apiary.KindInvalid, "provider %s refused the authorization: %s", provider, safeCode(cb.Error))
	}
	if cb.Code == "" {
		return records.Connection{}, apiary.E(apiary.KindInvalid, "the callback has no code")
	}
	verifier, err := encrypt.OpenEnvelope(ctx, s.keys, account, encCtx(id, "pkce_verifier"), flow.SealedVerifier)
	if err != nil {
		return records.Connection{}, fmt.Errorf("connections: complete %s: %w", id, err)
	}
	tok, err := s.oauthConfig(r.p).Exchange(s.httpContext(ctx), cb.Code, oauth2.VerifierOption(string(verifier)))
	encrypt.Wipe(verifier)
	if err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "oauth code exchange failed",
			slog.String("account", string(account)), slog.String("connection", id), slog.String("provider", provider),
			slog.String("error_code", oauthErrorCode(err)))
		return records.Connection{}, apiary.E(apiary.KindInvalid, "provider %s refused the code exchange (%s): start again", provider, oauthErrorCode(err))
	}
	if tok.RefreshToken == "" && tok.AccessToken == "" {
		return records.Connection{}, apiary.E(apiary.KindInvalid, "provider %s returned no token", provider)
	}
	sealed, err := s.seal(ctx, account, id, tok)
	if err != nil {
		return records.Connection{}, err
	}
	c, err := s.recs.UpdateConnection(ctx, account, id, func(c *records.Connection) error {
		if c.Status == records.ConnectionRevoked {
			return apiary.E(apiary.KindConflict, "the connection was disconnected during its authorization")
		}
		c.Status = records.ConnectionActive
		c.Sealed = sealed
		c.AccessExpiry = tok.Expiry.UTC()
		c.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		s.discard(ctx, records.Connection{Account: account, ID: id}, r.p, tok)
	}
	return c, err
}

func checkFlow(c records.Connection, state string, now time.Time) error {
	if c.Flow == nil || c.Status != records.ConnectionPending {
		return errUsedFlow
	}
	if subtle.ConstantTimeCompare([]byte(c.Flow.StateHash), []byte(hashState(state))) != 1 {
		return errBadState
	}
	if !now.Before(c.Flow.ExpiresAt) {
		return errUsedFlow
	}
	return nil
}

// --- tokens ---

// sealedToken is what an envelope holds.
type sealedToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

func (s *Service) seal(ctx context.Context, account apiary.AccountID, id string, tok *oauth2.Token) ([]byte, error) {
	b, err := json.Marshal(sealedToken{tok.AccessToken, tok.RefreshToken, tok.TokenType, tok.Expiry})
	if err != nil {
		return nil, fmt.Errorf("connections: seal tokens of %s: %w", id, err)
	}
	defer encrypt.Wipe(b)
	sealed, err := encrypt.SealEnvelope(ctx, s.keys, account, encCtx(id, "tokens"), b)
	if err != nil {
		return nil, fmt.Errorf("connections: seal tokens of %s: %w", id, err)
	}
	return sealed, nil
}

func (s *Service) open(ctx context.Context, c records.Connection) (*oauth2.Token, error) {
	b, err := encrypt.OpenEnvelope(ctx, s.keys, c.Account, encCtx(c.ID, "tokens"), c.Sealed)
	if err != nil {
		return nil, fmt.Errorf("connections: open tokens of %s: %w", c.ID, err)
	}
	defer encrypt.Wipe(b)
	var st sealedToken
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("connections: decode tokens of %s: %w", c.ID, err)
	}
	return &oauth2.Token{AccessToken: st.AccessToken, RefreshToken: st.RefreshToken, TokenType: st.TokenType, Expiry: st.Expiry}, nil
}

// usable says why c's tokens cannot be used, nil when they can.
func usable(c records.Connection) error {
	switch c.Status {
	case records.ConnectionActive:
		return nil
	case records.ConnectionReauthRequired:
		return apiary.E(apiary.KindForbidden, "connection %s needs to be authorized again (the provider refused its grant)", c.ID)
	case records.ConnectionRevoked:
		return apiary.E(apiary.KindForbidden, "connection %s was disconnected", c.ID)
	}
	return apiary.E(apiary.KindForbidden, "connection %s is not authorized yet", c.ID)
}

// Token returns a usable access token of account's connection id,
// refreshing it first when it expires within RefreshSkew.
func (s *Service) Token(ctx context.Context, account apiary.AccountID, id string) (*oauth2.Token, error) {
	for {
		c, err := s.recs.Connection(ctx, account, id)
		if err != nil {
			return nil, err
		}
		if err := usable(c); err != nil {
			return nil, err
		}
		now := time.Now()
		if c.AccessExpiry.IsZero() || c.AccessExpiry.After(now.Add(s.cfg.RefreshSkew)) {
			return s.open(ctx, c)
		}
		tok, again, err := s.refresh(ctx, c)
		if !again {
			return tok, err
		}
		// Another process holds the lease: wait for its result.
		if err := s.waitLease(ctx, account, id); err != nil {
			return nil, err
		}
	}
}

// refresh refreshes c's tokens under the record's lease. again is true when
// another process holds the lease.
func (s *Service) refresh(ctx context.Context, seen records.Connection) (tok *oauth2.Token, again bool, err error) {
	owner := apiary.RandomID("lease_")
	now := time.Now().UTC()
	var busy bool
	c, err := s.recs.UpdateConnection(ctx, seen.Account, seen.ID, func(c *records.Connection) error {
		busy = false
		if err := usable(*c); err != nil {
			return err
		}
		if c.Lease != nil && c.Lease.Until.After(now) {
			busy = true
			return records.ErrNoChange
		}
		if !c.AccessExpiry.Equal(seen.AccessExpiry) {
			return records.ErrNoChange // refreshed since we looked: use it
		}
		c.Lease = &records.ConnectionLease{Owner: owner, Until: now.Add(s.cfg.LeaseTTL)}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if busy {
		return nil, true, nil
	}
	if c.Lease == nil || c.Lease.Owner != owner {
		tok, err := s.open(ctx, c)
		return tok, false, err
	}
	r, err := s.provider(ctx, c.Provider)
	if err != nil {
		s.releaseLease(ctx, c, owner)
		return nil, false, err
	}
	old, err := s.open(ctx, c)
	if err != nil {
		s.releaseLease(ctx, c, owner)
		return nil, false, err
	}
	if old.RefreshToken == "" {
		return nil, false, s.reauthRequired(ctx, c, owner, "no refresh token")
	}
	old.Expiry = time.Unix(1, 0) // the token source refreshes only an expired token
	fresh, err := s.oauthConfig(r.p).TokenSource(s.httpContext(ctx), old).Token()
	if err != nil {
		code := oauthErrorCode(err)
		if code == "invalid_grant" {
			return nil, false, s.reauthRequired(ctx, c, owner, code)
		}
		s.releaseLease(ctx, c, owner)
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "oauth refresh failed",
			slog.String("account", string(c.Account)), slog.String("connection", c.ID), slog.String("error_code", code))
		return nil, false, apiary.RetryAfter(apiary.E(apiary.KindUnavailable, "provider %s did not refresh the token (%s)", c.Provider, code), 5*time.Second)
	}
	sealed, err := s.seal(ctx, c.Account, c.ID, fresh)
	if err != nil {
		s.releaseLease(ctx, c, owner)
		return nil, false, err
	}
	// The rotated refresh token is stored before anything uses it; the
	// write holds only while the lease is still ours (a disconnect clears it).
	done := time.Now().UTC()
	_, err = s.recs.UpdateConnection(ctx, c.Account, c.ID, func(c *records.Connection) error {
		if c.Lease == nil || c.Lease.Owner != owner {
			return apiary.E(apiary.KindConflict, "connection %s changed during its refresh", c.ID)
		}
		c.Sealed = sealed
		c.AccessExpiry = fresh.Expiry.UTC()
		c.LastRefreshed = &done
		c.Lease = nil
		c.UpdatedAt = done
		return nil
	})
	if err != nil {
		s.discard(ctx, c, r.p, fresh)
		return nil, false, err
	}
	return fresh, false, nil
}

// discard revokes tokens that could not be stored (the connection was
// disconnected meanwhile), so that none stays valid unknown to Apiary.
func (s *Service) discard(ctx context.Context, c records.Connection, p Provider, tok *oauth2.Token) {
	if p.RevokeURL != "" {
		s.revokeTokens(context.WithoutCancel(ctx), c, p, tok)
	}
}

// reauthRequired marks c reauth_required (tokens destroyed) if the lease is
// still ours, publishes the event, and returns the error callers get.
func (s *Service) reauthRequired(ctx context.Context, c records.Connection, owner, why string) error {
	ctx = context.WithoutCancel(ctx)
	_, err := s.recs.UpdateConnection(ctx, c.Account, c.ID, func(c *records.Connection) error {
		if c.Lease == nil || c.Lease.Owner != owner {
			return records.ErrNoChange
		}
		c.Status = records.ConnectionReauthRequired
		c.Sealed = nil
		c.Lease = nil
		c.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "oauth grant refused: connection needs reauthorization",
		slog.String("account", string(c.Account)), slog.String("connection", c.ID), slog.String("reason", why))
	s.publish(ctx, c, apiary.EventConnectionReauthRequired)
	c.Status = records.ConnectionReauthRequired
	return usable(c)
}

func (s *Service) releaseLease(ctx context.Context, c records.Connection, owner string) {
	_, err := s.recs.UpdateConnection(context.WithoutCancel(ctx), c.Account, c.ID, func(c *records.Connection) error {
		if c.Lease == nil || c.Lease.Owner != owner {
			return records.ErrNoChange
		}
		c.Lease = nil
		return nil
	})
	if err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "release of a connection's refresh lease failed",
			slog.String("account", string(c.Account)), slog.String("connection", c.ID), slog.Any("err", err))
	}
}

// waitLease polls the record until its lease is released or expired.
func (s *Service) waitLease(ctx context.Context, account apiary.AccountID, id string) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		c, err := s.recs.Connection(ctx, account, id)
		if err != nil {
			return err
		}
		if c.Lease == nil || !c.Lease.Until.After(time.Now()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// --- disconnect ---

// Revocation is what a disconnect did at the provider.
type Revocation string

const (
	Revoked     Revocation = "revoked"     // the provider revoked the grant
	Unsupported Revocation = "unsupported" // the provider has no revocation endpoint
	Failed      Revocation = "failed"      // the provider did not confirm it; the tokens are destroyed anyway
)

// Report is the outcome of a disconnect.
type Report struct {
	Connection records.Connection
	Revocation Revocation
	// ManageURL is the user's own page to revoke the grant, when the
	// provider cannot revoke it for Apiary.
	ManageURL string
}

// Disconnect revokes account's connection id at its provider where it can
// and destroys its stored tokens (the envelope holding them and their
// wrapped data key). Disconnecting again reports what it can: the tokens are
// gone already.
func (s *Service) Disconnect(ctx context.Context, account apiary.AccountID, id string) (Report, error) {
	c, err := s.recs.Connection(ctx, account, id)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Revocation: Unsupported}
	r, perr := s.provider(ctx, c.Provider)
	if perr == nil {
		rep.ManageURL = r.p.ManageURL
	}
	switch {
	case perr != nil:
		rep.Revocation = Failed
	case len(c.Sealed) == 0:
		rep.Revocation = Revoked // nothing is left to revoke
		if r.p.RevokeURL == "" {
			rep.Revocation = Unsupported
		}
	case r.p.RevokeURL == "":
	default:
		rep.Revocation = s.revokeAll(ctx, c, r.p)
	}
	now := time.Now().UTC()
	c, err = s.recs.UpdateConnection(ctx, account, id, func(c *records.Connection) error {
		c.Status = records.ConnectionRevoked
		c.Sealed = nil
		c.Flow = nil
		c.Lease = nil // a refresh in flight cannot store its result
		c.AccessExpiry = time.Time{}
		c.UpdatedAt = now
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	rep.Connection = c
	s.publish(ctx, c, apiary.EventConnectionRevoked)
	return rep, nil
}

// revokeAll revokes the refresh token (which ends the grant at providers
// that follow RFC 7009 §2.1) and the access token.
func (s *Service) revokeAll(ctx context.Context, c records.Connection, p Provider) Revocation {
	tok, err := s.open(ctx, c)
	if err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "disconnect could not open the tokens",
			slog.String("account", string(c.Account)), slog.String("connection", c.ID), slog.Any("err", err))
		return Failed
	}
	if !s.revokeTokens(ctx, c, p, tok) {
		return Failed
	}
	return Revoked
}

// revokeTokens revokes tok's refresh and access tokens at p, logging what
// failed; true when every call succeeded.
func (s *Service) revokeTokens(ctx context.Context, c records.Connection, p Provider, tok *oauth2.Token) bool {
	ok := true
	for _, t := range []struct{ token, hint string }{{tok.RefreshToken, "refresh_token"}, {tok.AccessToken, "access_token"}} {
		if t.token == "" {
			continue
		}
		if err := revoke(ctx, s.cfg.HTTPClient, p, t.token, t.hint); err != nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "revocation at the provider failed",
				slog.String("account", string(c.Account)), slog.String("connection", c.ID),
				slog.String("token_type", t.hint), slog.Any("err", err))
			ok = false
		}
	}
	return ok
}

func (s *Service) publish(ctx context.Context, c records.Connection, typ apiary.EventType) {
	if s.events == nil {
		return
	}
	ev := apiary.Event{ID: apiary.RandomID("evt_"), Type: typ, Account: c.Account, Connection: c.ID, Time: time.Now().UTC()}
	if err := s.events.Publish(context.WithoutCancel(ctx), ev); err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "connection event not published",
			slog.String("account", string(c.Account)), slog.String("connection", c.ID),
			slog.String("type", string(typ)), slog.Any("err", err))
	}
}

// Connection returns account's connection id.
func (s *Service) Connection(ctx context.Context, account apiary.AccountID, id string) (records.Connection, error) {
	return s.recs.Connection(ctx, account, id)
}

// Connections lists account's connections (see records.ConnectionStore).
func (s *Service) Connections(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]records.Connection, string, error) {
	return s.recs.Connections(ctx, account, limit, cursor)
}

// --- helpers ---

func encCtx(connection, purpose string) encrypt.Context {
	return encrypt.Context{"connection": connection, "purpose": purpose}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func hashState(state string) string {
	h := sha256.Sum256([]byte(state))
	return hex.EncodeToString(h[:])
}

// parseState takes the account and connection out of a state.
func parseState(state string) (apiary.AccountID, string, error) {
	parts := strings.Split(state, ".")
	if len(state) > 512 || len(parts) != 3 {
		return "", "", errBadState
	}
	acc, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	id, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil || len(acc) == 0 || len(id) == 0 {
		return "", "", errBadState
	}
	return apiary.AccountID(acc), string(id), nil
}

// oauthErrorCode is the provider's error code of err, never its body.
func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return safeCode(re.ErrorCode)
		}
		if re.Response != nil {
			return fmt.Sprintf("status %d", re.Response.StatusCode)
		}
	}
	return "no answer"
}

// safeCode keeps an OAuth error code printable and short.
func safeCode(code string) string {
	if len(code) > 64 || strings.Trim(code, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != "" {
		return "unrecognized error"
	}
	return code
}
