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
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
	DeleteConnection(ctx context.Context, account apiary.AccountID, id string) error
	PendingGate(ctx context.Context, account apiary.AccountID) (uint64, error)
	PassPendingGate(ctx context.Context, account apiary.AccountID, rev uint64) error
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

	mu        sync.Mutex
	resolved  map[string]resolved             // providers with their endpoints discovered
	beginning map[apiary.AccountID]*beginLock // Begin, one at a time per account in this process
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
	return &Service{cfg: cfg, recs: recs, keys: keys, events: events, resolved: map[string]resolved{}, beginning: map[apiary.AccountID]*beginLock{}}, nil
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
