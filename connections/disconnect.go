package connections

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

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
		c.SyncCursors = nil
		c.Schedule = nil // a disconnected connection syncs nothing
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
// that follow RFC 7009 §2.1) and the access token, or deletes the grant
// (GitHub).
func (s *Service) revokeAll(ctx context.Context, c records.Connection, p Provider) Revocation {
	tok, err := s.open(ctx, c)
	if err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "disconnect could not open the tokens",
			slog.String("account", string(c.Account)), slog.String("connection", c.ID), slog.Any("err", err))
		return Failed
	}
	if p.RevokeStyle == RevokeGitHubGrant && tok.RefreshToken != "" && !tok.Expiry.IsZero() && !tok.Expiry.After(time.Now()) {
		// GitHub deletes a grant only with a live access token of it (a
		// GitHub App's expire after 8 hours): refresh first. The new tokens
		// are never stored; the grant deletion ends them.
		old := *tok
		old.Expiry = time.Unix(1, 0)
		fresh, err := s.oauthConfig(p).TokenSource(s.httpContext(ctx), &old).Token()
		if err != nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "disconnect could not refresh an expired access token to revoke its grant",
				slog.String("account", string(c.Account)), slog.String("connection", c.ID), slog.String("error_code", oauthErrorCode(err)))
			return Failed
		}
		tok = fresh
	}
	if !s.revokeTokens(ctx, c, p, tok) {
		return Failed
	}
	return Revoked
}

// revokeTokens revokes tok's refresh and access tokens at p, logging what
// failed; true when every call succeeded.
func (s *Service) revokeTokens(ctx context.Context, c records.Connection, p Provider, tok *oauth2.Token) bool {
	if p.RevokeStyle == RevokeGitHubGrant {
		if tok.AccessToken == "" {
			return false
		}
		if err := revokeGrant(ctx, s.cfg.HTTPClient, p, tok.AccessToken); err != nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "revocation at the provider failed",
				slog.String("account", string(c.Account)), slog.String("connection", c.ID),
				slog.String("token_type", "grant"), slog.Any("err", err))
			return false
		}
		return true
	}
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
