package connections

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
)

// Begin records a pending connection of account to provider and returns it
// with the URL the user's browser opens to authorize it. At most
// MaxPendingConnections are pending at once, however many Begin at the
// same time: in this process they take turns, and between processes the
// account's gate (records.PendingGate) makes the one that counted before
// another's connection was made count again.
func (s *Service) Begin(ctx context.Context, account apiary.AccountID, provider string) (records.Connection, string, error) {
	if _, err := s.provider(ctx, provider); err != nil {
		return records.Connection{}, "", err
	}
	unlock, err := s.lockBegin(ctx, account)
	if err != nil {
		return records.Connection{}, "", err
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		gate, err := s.recs.PendingGate(ctx, account)
		if err != nil {
			return records.Connection{}, "", err
		}
		now := time.Now().UTC()
		if err := s.boundPending(ctx, account, now); err != nil {
			return records.Connection{}, "", err
		}
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
		err = s.recs.PassPendingGate(ctx, account, gate)
		if err == nil {
			return c, s.cfg.PublicURL + StartPath + "?state=" + url.QueryEscape(state), nil
		}
		// Another process began one since this one counted: withdraw it
		// and count again.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		derr := s.recs.DeleteConnection(dctx, account, c.ID)
		cancel()
		if derr != nil && !errors.Is(derr, apiary.ErrNotFound) {
			return records.Connection{}, "", fmt.Errorf("connections: withdraw pending connection %s: %w", c.ID, errors.Join(err, derr))
		}
		if !errors.Is(err, apiary.ErrConflict) {
			return records.Connection{}, "", err
		}
		if attempt == maxBeginAttempts {
			return records.Connection{}, "", apiary.E(apiary.KindConflict, "too many authorizations of this account began at the same time; begin again")
		}
	}
}

// maxBeginAttempts bounds how often Begin counts again when other
// processes begin connections of the account at the same time.
const maxBeginAttempts = 5

// beginLock is one account's turn at Begin in this process.
type beginLock struct {
	turn    chan struct{} // holds one token while a Begin has the turn
	waiting int           // Begins holding or waiting for the turn
}

// lockBegin waits for account's turn at Begin, while ctx lasts (a request
// given up stops waiting), and returns its release.
func (s *Service) lockBegin(ctx context.Context, account apiary.AccountID) (unlock func(), err error) {
	s.mu.Lock()
	l := s.beginning[account]
	if l == nil {
		l = &beginLock{turn: make(chan struct{}, 1)}
		s.beginning[account] = l
	}
	l.waiting++
	s.mu.Unlock()
	leave := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if l.waiting--; l.waiting == 0 {
			delete(s.beginning, account)
		}
	}
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, fmt.Errorf("connections: begin: waiting for the account's other authorizations: %w", context.Cause(ctx))
	}
	return func() {
		<-l.turn
		leave()
	}, nil
}

// MaxPendingConnections bounds an account's authorizations in progress
// (pending connections whose flow has not expired).
const MaxPendingConnections = 20

// boundPending removes account's pending connections whose flow expired,
// or was spent (refused at the provider) over a flow's lifetime ago: they
// can never complete. It refuses a new one when MaxPendingConnections
// are in progress.
func (s *Service) boundPending(ctx context.Context, account apiary.AccountID, now time.Time) error {
	live, cursor := 0, ""
	for {
		page, next, err := s.recs.Connections(ctx, account, 500, cursor)
		if err != nil {
			return err
		}
		for _, c := range page {
			switch {
			case c.Status != records.ConnectionPending:
			case c.Flow != nil && c.Flow.ExpiresAt.After(now),
				c.Flow == nil && c.UpdatedAt.Add(s.cfg.FlowTTL).After(now): // a spent flow is shown a while
				live++
			default:
				if err := s.recs.DeleteConnection(ctx, account, c.ID); err != nil && !errors.Is(err, apiary.ErrNotFound) {
					return fmt.Errorf("connections: remove expired pending connection %s: %w", c.ID, err)
				}
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if live >= MaxPendingConnections {
		return apiary.E(apiary.KindConflict, "the account has %d authorizations in progress, the most it may have; complete one, or begin again once they expire (after %s)",
			live, s.cfg.FlowTTL)
	}
	return nil
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
