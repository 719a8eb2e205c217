package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

// rotatedKey is what POST /v1/account/keys/rotate answers.
type rotatedKey struct {
	Account apiary.AccountID `json:"account"`
	Version int              `json:"version"`
}

// rotateAccountKey moves the caller's account to a new version of its
// account key and re-wraps its key-encryption keys under it; nothing is
// re-embedded, and what older versions wrap keeps opening. After a
// rotation that failed part-way, the next request finishes it under the
// version it made (kek.Provider.RotateAccountKey) and answers that one.
func (s *Server) rotateAccountKey(c echo.Context) error {
	r, ok := s.deps.Keys.(encrypt.Rotator)
	if !ok {
		return apiary.E(apiary.KindInvalid, "this service's account keys have no versions to rotate")
	}
	p, ctx := principal(c), c.Request().Context()
	v, err := r.RotateAccountKey(ctx, p.Account)
	if err != nil {
		return fmt.Errorf("api: rotate key of account %s: %w", p.Account, err)
	}
	return c.JSON(http.StatusOK, rotatedKey{Account: p.Account, Version: v})
}
