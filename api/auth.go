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
}

const ctxKeyPrincipal = "apiary.principal"

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
// malformed one), then its hash in the token records.
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
		c.Set(ctxKeyPrincipal, Principal{Account: t.Account, Role: t.Role, TokenID: t.ID, Operator: t.Operator})
		return next(c)
	}
}

// requireRole lets through callers whose role allows need.
func requireRole(need apiary.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if p := principal(c); !p.Role.Allows(need) {
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
			return apiary.E(apiary.KindForbidden, "this needs an operator token")
		}
		return next(c)
	}
}
