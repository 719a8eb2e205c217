package api

import (
	"errors"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
)

// Principal is who is calling: the account every handler acts in, the
// token's role and id.
type Principal struct {
	Account  apiary.AccountID
	Role     apiary.Role
	TokenID  apiary.TokenID
	Operator bool
	Prefix   string // the token's first characters, for the audit log
}

// ctxKeyRefused is the token an authentication refused though it was
// found (expired): the audit log files the failure under its account.
const ctxKeyRefused = "apiary.refused_token"

const ctxKeyPrincipal = "apiary.principal"

// ctxKeyRoleRefused marks a request refused for its token's role or for
// not being an operator's: the audit log records it on every route.
const ctxKeyRoleRefused = "apiary.role_refused"

var (
	errMissingToken = apiary.E(apiary.KindUnauthenticated, "missing bearer token: send the header \"Authorization: Bearer <token>\"")
	errUnknownToken = apiary.E(apiary.KindUnauthenticated, "unknown or revoked token")
)

// principal returns the caller set by authenticate. Every authenticated
// handler takes its account from here and nowhere else.
func principal(c echo.Context) Principal {
	p, _ := c.Get(ctxKeyPrincipal).(Principal)
	return p
}

// authenticate checks the bearer token: its format first (no lookup for a
// malformed one), then its hash in the token records, then its expiry. It
// records the token's use (at most once a minute).
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		if h == "" {
			return errMissingToken
		}
		scheme, token, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return apiary.E(apiary.KindUnauthenticated, "malformed Authorization header: use the Bearer scheme, \"Authorization: Bearer <token>\"")
		}
		token = strings.TrimSpace(token)
		if err := CheckTokenFormat(token); err != nil {
			return err
		}
		t, err := s.deps.Records.TokenByHash(c.Request().Context(), HashToken(token))
		if errors.Is(err, apiary.ErrNotFound) {
			return errUnknownToken
		}
		if err != nil {
			return err
		}
		p := Principal{Account: t.Account, Role: t.Role, TokenID: t.ID, Operator: t.Operator, Prefix: t.Prefix}
		now := s.cfg.Now()
		if t.Expired(now) {
			c.Set(ctxKeyRefused, p)
			return errExpiredToken
		}
		s.touchToken(c, t, now)
		c.Set(ctxKeyPrincipal, p)
		return next(c)
	}
}

// requireRole lets through callers whose role allows need.
func requireRole(need apiary.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if p := principal(c); !p.Role.Allows(need) {
				c.Set(ctxKeyRoleRefused, true)
				return apiary.E(apiary.KindForbidden, "this needs a token with role %s or higher; this token's role is %s", need, p.Role)
			}
			return next(c)
		}
	}
}

// requireOperator lets through operator tokens only.
func requireOperator(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !principal(c).Operator {
			c.Set(ctxKeyRoleRefused, true)
			return apiary.E(apiary.KindForbidden, "this needs an operator token")
		}
		return next(c)
	}
}
