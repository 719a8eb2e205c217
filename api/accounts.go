package api

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
)

const maxNameLen = 100

type createAccountRequest struct {
	Name string `json:"name"`
}

type createAccountResponse struct {
	ID      apiary.AccountID `json:"id"`
	Name    string           `json:"name"`
	Token   string           `json:"token"`
	TokenID apiary.TokenID   `json:"token_id"`
}

// createAccount makes an account, its key and its first admin token (shown
// once). The key and the token are made before the account record, so an
// account never exists without them.
func (s *Server) createAccount(c echo.Context) error {
	var req createAccountRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if err := checkName("name", req.Name, maxNameLen); err != nil {
		return err
	}
	ctx := c.Request().Context()
	id := apiary.NewAccountID()
	if err := s.deps.Keys.CreateAccountKey(ctx, id); err != nil {
		return fmt.Errorf("api: create key of account %s: %w", id, err)
	}
	tok, secret, err := issueToken(ctx, s.deps.Records, id, "admin", apiary.RoleAdmin, false, nil)
	if err != nil {
		return err
	}
	a := apiary.Account{ID: id, Name: req.Name, CreatedAt: time.Now().UTC()}
	if m := s.cfg.Model; m.Model != "" {
		a.Embedding = &m // no chunk yet: all of them are of the current model
	}
	if err := s.deps.Records.CreateAccount(ctx, a); err != nil {
		return fmt.Errorf("api: create account %s: %w", id, err)
	}
	setAuditTarget(c, string(id))
	return c.JSON(http.StatusCreated, createAccountResponse{ID: id, Name: req.Name, Token: secret, TokenID: tok.ID})
}

// accountView is the caller's account as GET /v1/account shows it.
type accountView struct {
	ID        apiary.AccountID `json:"id"`
	Name      string           `json:"name"`
	CreatedAt time.Time        `json:"created_at"`
	Embedding *embeddingView   `json:"embedding,omitempty"`
}

// embeddingView says which model queries search with and whether every
// chunk of the account is of it.
type embeddingView struct {
	Model string `json:"model"`
	Dim   int    `json:"dim"`
	// Stored is the model the account's chunks are known to be of; absent
	// until the service has checked (at its start).
	Stored *apiary.EmbeddingModel `json:"stored,omitempty"`
	// Current is true when Stored is the model queries search with: no
	// document is left out of search results for being of another model.
	Current bool `json:"current"`
	// ReembedJobID is the last job that re-embedded the account's chunks.
	ReembedJobID apiary.JobID `json:"reembed_job_id,omitempty"`
}

// getAccount shows the caller's account and its embedding model: after a
// model change, queries search only chunks of the new model until the
// account's re-embed job is done.
func (s *Server) getAccount(c echo.Context) error {
	a, err := s.deps.Records.Account(c.Request().Context(), principal(c).Account)
	if err != nil {
		return err
	}
	v := accountView{ID: a.ID, Name: a.Name, CreatedAt: a.CreatedAt}
	if m := s.cfg.Model; m.Model != "" {
		v.Embedding = &embeddingView{Model: m.Model, Dim: m.Dim, Stored: a.Embedding,
			Current: a.Embedding != nil && *a.Embedding == m, ReembedJobID: a.Reembed}
	}
	return c.JSON(http.StatusOK, v)
}

type createTokenRequest struct {
	Role apiary.Role `json:"role"`
	Name string      `json:"name"`
	tokenExpiry
}

// tokenView is a token as the API shows it: never its secret.
type tokenView struct {
	ID         apiary.TokenID `json:"id"`
	Name       string         `json:"name"`
	Role       apiary.Role    `json:"role"`
	Operator   bool           `json:"operator"`
	Prefix     string         `json:"prefix,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	LastUsedAt *time.Time     `json:"last_used_at,omitempty"`
	ExpiresAt  *time.Time     `json:"expires_at,omitempty"`
	// PreviousValidUntil is when the secret a rotation replaced stops
	// working; absent when none does.
	PreviousValidUntil *time.Time `json:"previous_valid_until,omitempty"`
}

type createTokenResponse struct {
	tokenView
	Token string `json:"token"`
}

func viewToken(t apiary.Token) tokenView {
	return tokenView{ID: t.ID, Name: t.Name, Role: t.Role, Operator: t.Operator, Prefix: t.Prefix, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt}
}

// createToken issues a token in the caller's account; the secret is in this
// answer only.
func (s *Server) createToken(c echo.Context) error {
	var req createTokenRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if !req.Role.Valid() {
		return apiary.E(apiary.KindInvalid, "role must be one of admin, editor, viewer")
	}
	if err := checkName("name", req.Name, maxNameLen); err != nil {
		return err
	}
	expires, err := req.at(s.cfg.Now())
	if err != nil {
		return err
	}
	p, ctx := principal(c), c.Request().Context()
	existing, err := s.deps.Records.Tokens(ctx, p.Account)
	if err != nil {
		return err
	}
	if n := len(slices.DeleteFunc(existing, func(t apiary.Token) bool { return t.Replaced })); n >= s.cfg.MaxTokensPerAccount {
		return apiary.E(apiary.KindConflict, "the account has %d tokens, the most it may have; delete one first", n)
	}
	tok, secret, err := issueToken(ctx, s.deps.Records, p.Account, req.Name, req.Role, false, expires)
	if err != nil {
		return err
	}
	setAuditTarget(c, string(tok.ID))
	return c.JSON(http.StatusCreated, createTokenResponse{tokenView: viewToken(tok), Token: secret})
}

// listTokens lists the caller's account's tokens; operator tokens only
// to an operator.
func (s *Server) listTokens(c echo.Context) error {
	p := principal(c)
	toks, err := s.deps.Records.Tokens(c.Request().Context(), p.Account)
	if err != nil {
		return err
	}
	uses, err := s.deps.Records.TokenUses(c.Request().Context(), p.Account)
	if err != nil {
		return err
	}
	out := make([]tokenView, 0, len(toks))
	index := map[apiary.TokenID]int{}
	now := s.cfg.Now()
	for _, t := range toks {
		if t.Operator && !p.Operator || t.Replaced {
			continue
		}
		index[t.ID] = len(out)
		v := viewToken(t)
		if at, ok := uses[t.ID]; ok {
			v.LastUsedAt = &at
		}
		out = append(out, v)
	}
	for _, t := range toks { // a rotation's old secrets still in their grace period
		if i, ok := index[t.ID]; ok && t.Replaced && !t.Expired(now) {
			if v := &out[i]; v.PreviousValidUntil == nil || t.ExpiresAt.After(*v.PreviousValidUntil) {
				v.PreviousValidUntil = t.ExpiresAt
			}
		}
	}
	return c.JSON(http.StatusOK, map[string][]tokenView{"tokens": out})
}

// deleteToken revokes a token of the caller's account, except the last
// admin token (that would lock the account out: records checks it by
// compare-and-swap). An operator token is the operator's: to anyone else it
// does not exist.
func (s *Server) deleteToken(c echo.Context) error {
	id := apiary.TokenID(c.Param("id"))
	cur, err := s.visibleToken(c, id)
	if err != nil {
		return err
	}
	if cur.Role == apiary.RoleAdmin {
		if err := s.checkAnotherAdmin(c, id); err != nil {
			return err
		}
	}
	if err := s.deps.Records.DeleteToken(c.Request().Context(), principal(c).Account, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
