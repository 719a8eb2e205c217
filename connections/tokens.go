package connections

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
)

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
	return s.token(ctx, account, id, "")
}

// Refresh is Token for a caller whose access token stale was refused by
// the provider before its expiry: if stale is still the stored one, it is
// refreshed (once across processes, as in Token); if another caller has
// refreshed it meanwhile, the stored token is returned.
func (s *Service) Refresh(ctx context.Context, account apiary.AccountID, id, stale string) (*oauth2.Token, error) {
	if stale == "" {
		return nil, apiary.E(apiary.KindInvalid, "connections: refresh needs the refused access token")
	}
	return s.token(ctx, account, id, stale)
}

func (s *Service) token(ctx context.Context, account apiary.AccountID, id, stale string) (*oauth2.Token, error) {
	for {
		c, err := s.recs.Connection(ctx, account, id)
		if err != nil {
			return nil, err
		}
		if err := usable(c); err != nil {
			return nil, err
		}
		due := !c.AccessExpiry.IsZero() && !c.AccessExpiry.After(time.Now().Add(s.cfg.RefreshSkew))
		if !due {
			tok, err := s.open(ctx, c)
			if err != nil || stale == "" || tok.AccessToken != stale {
				return tok, err
			}
		}
		tok, again, err := s.refresh(ctx, c)
		if !again {
			return tok, err
		}
		// Another process holds the lease: wait for its result.
		if err := s.waitLease(ctx, account, id); err != nil {
			return nil, err
		}
		stale = "" // whatever it stored is newer than stale
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
		if !bytes.Equal(c.Sealed, seen.Sealed) {
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
		if grantRefused(code) {
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

// grantRefused reports whether a refresh's error code means the grant is
// dead: RFC 6749's invalid_grant, or GitHub's bad_refresh_token (which it
// answers, with status 200, for an expired or revoked refresh token).
func grantRefused(code string) bool {
	return code == "invalid_grant" || code == "bad_refresh_token"
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
