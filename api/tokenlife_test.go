package api

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func withClock(c *clock) envOption { return func(cfg *Config, _ *Deps) { cfg.Now = c.Now } }

// works reports whether token authenticates (GET /v1/jobs needs viewer).
func (e *env) works(token string) bool {
	e.t.Helper()
	rec := e.do(http.MethodGet, "/v1/jobs", token)
	if rec.Code == http.StatusUnauthorized {
		return false
	}
	require.Equal(e.t, http.StatusOK, rec.Code, rec.Body.String())
	return true
}

func (e *env) createToken(body map[string]any) createTokenResponse {
	e.t.Helper()
	rec := e.do(http.MethodPost, "/v1/tokens", e.admin, jsonBody(body))
	require.Equal(e.t, http.StatusCreated, rec.Code, rec.Body.String())
	return decode[createTokenResponse](e.t, rec)
}

func (e *env) listedToken(id apiary.TokenID) tokenView {
	e.t.Helper()
	rec := e.do(http.MethodGet, "/v1/tokens", e.admin)
	require.Equal(e.t, http.StatusOK, rec.Code)
	for _, v := range decode[map[string][]tokenView](e.t, rec)["tokens"] {
		if v.ID == id {
			return v
		}
	}
	e.t.Fatalf("token %s is not listed", id)
	return tokenView{}
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))

	tok := e.createToken(map[string]any{"role": "viewer", "name": "ci", "expires_in": 3600})
	require.NotNil(t, tok.ExpiresAt)
	require.Equal(t, clk.Now().Add(time.Hour), *tok.ExpiresAt)
	at := clk.Now().Add(2 * time.Hour)
	byDate := e.createToken(map[string]any{"role": "viewer", "name": "ci2", "expires_at": at.Format(time.RFC3339)})
	require.Equal(t, at, *byDate.ExpiresAt)
	forever := e.createToken(map[string]any{"role": "viewer", "name": "forever"})
	require.Nil(t, forever.ExpiresAt)
	require.Equal(t, at, *e.listedToken(byDate.ID).ExpiresAt)

	require.True(t, e.works(tok.Token))
	clk.Advance(time.Hour)
	requireProblem(t, e.do(http.MethodGet, "/v1/jobs", tok.Token), http.StatusUnauthorized, "expired")
	require.True(t, e.works(byDate.Token))
	clk.Advance(time.Hour)
	require.False(t, e.works(byDate.Token))
	clk.Advance(10 * 366 * 24 * time.Hour)
	require.True(t, e.works(forever.Token))

	now := clk.Now()
	for name, body := range map[string]map[string]any{
		"both":           {"expires_in": 3600, "expires_at": now.Add(time.Hour).Format(time.RFC3339)},
		"in the past":    {"expires_at": now.Add(-time.Hour).Format(time.RFC3339)},
		"now":            {"expires_in": 0},
		"negative":       {"expires_in": -5},
		"too soon":       {"expires_in": 10},
		"absurd seconds": {"expires_in": 10 * 366 * 24 * 3600},
		"absurd date":    {"expires_at": now.Add(10 * 366 * 24 * time.Hour).Format(time.RFC3339)},
	} {
		body["role"], body["name"] = "viewer", "x"
		rec := e.do(http.MethodPost, "/v1/tokens", e.admin, jsonBody(body))
		require.Equal(t, http.StatusBadRequest, rec.Code, name+": "+rec.Body.String())
	}
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens", e.admin, jsonBody(map[string]any{"role": "viewer", "name": "x", "expires_at": "tomorrow"})),
		http.StatusBadRequest, "")
}

func TestTokenRotationWithGrace(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	old := e.createToken(map[string]any{"role": "editor", "name": "deploy"})

	rec := e.do(http.MethodPost, "/v1/tokens/"+string(old.ID)+"/rotate", e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rotated := decode[createTokenResponse](t, rec)
	require.Equal(t, old.ID, rotated.ID, "a rotated token keeps its id")
	require.Equal(t, "deploy", rotated.Name)
	require.Equal(t, apiary.RoleEditor, rotated.Role)
	require.NotEqual(t, old.Token, rotated.Token)
	require.Equal(t, rotated.Token[:tokenPrefixShown], rotated.Prefix)
	require.Equal(t, clk.Now().Add(24*time.Hour), *rotated.PreviousValidUntil)

	listed := e.listedToken(old.ID)
	require.Equal(t, rotated.Prefix, listed.Prefix)
	require.Equal(t, clk.Now().Add(24*time.Hour), *listed.PreviousValidUntil)

	require.True(t, e.works(old.Token), "the old secret works within the grace period")
	require.True(t, e.works(rotated.Token))
	clk.Advance(24*time.Hour - time.Second)
	require.True(t, e.works(old.Token))
	clk.Advance(time.Second)
	require.False(t, e.works(old.Token), "the old secret stops at the end of the grace period")
	require.True(t, e.works(rotated.Token))
	require.Nil(t, e.listedToken(old.ID).PreviousValidUntil)

	// Grace 0: the old secret stops at once.
	rec = e.do(http.MethodPost, "/v1/tokens/"+string(old.ID)+"/rotate", e.admin, jsonBody(map[string]any{"grace": "0s", "expires_in": 3600}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	again := decode[createTokenResponse](t, rec)
	require.Nil(t, again.PreviousValidUntil)
	require.Equal(t, clk.Now().Add(time.Hour), *again.ExpiresAt)
	require.False(t, e.works(rotated.Token))
	require.True(t, e.works(again.Token))
	toks, err := e.recs.Tokens(t.Context(), apiary.DefaultAccount)
	require.NoError(t, err)
	n := 0
	for _, tok := range toks {
		if tok.ID == old.ID {
			n++
		}
	}
	require.Equal(t, 1, n, "no record is kept of secrets that no longer work")

	// Deleting a token in its grace period revokes all of its secrets.
	rec = e.do(http.MethodPost, "/v1/tokens/"+string(old.ID)+"/rotate", e.admin, jsonBody(map[string]any{"grace": "1h"}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	last := decode[createTokenResponse](t, rec)
	require.Equal(t, http.StatusNoContent, e.do(http.MethodDelete, "/v1/tokens/"+string(old.ID), e.admin).Code)
	require.False(t, e.works(again.Token))
	require.False(t, e.works(last.Token))

	other := e.createToken(map[string]any{"role": "viewer", "name": "other"})
	for _, grace := range []string{"-1s", "721h", "soon"} {
		requireProblem(t, e.do(http.MethodPost, "/v1/tokens/"+string(other.ID)+"/rotate", e.admin, jsonBody(map[string]any{"grace": grace})),
			http.StatusBadRequest, "grace must be")
	}
}

func TestTokenRotationLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens/"+string(apiary.NewTokenID())+"/rotate", e.admin), http.StatusNotFound, "no such token")
	v := e.createToken(map[string]any{"role": "viewer", "name": "v"})
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens/"+string(v.ID)+"/rotate", e.editor), http.StatusForbidden, "role admin")

	// Another account's token, and the operator's to an admin, do not exist.
	_, otherAdmin := e.otherAccount("other")
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens/"+string(v.ID)+"/rotate", otherAdmin), http.StatusNotFound, "no such token")
	op := e.listedOperatorToken()
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens/"+string(op)+"/rotate", e.admin), http.StatusNotFound, "no such token")

	// A rotated admin token counts once: the account's last admin is kept.
	acct, admin := e.otherAccount("solo")
	toks, err := e.recs.Tokens(t.Context(), acct)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	rec := e.do(http.MethodPost, "/v1/tokens/"+string(toks[0].ID)+"/rotate", admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	newAdmin := decode[createTokenResponse](t, rec).Token
	requireProblem(t, e.do(http.MethodDelete, "/v1/tokens/"+string(toks[0].ID), newAdmin), http.StatusConflict, "last admin")
}

// listedOperatorToken is the id of the operator token Bootstrap made.
func (e *env) listedOperatorToken() apiary.TokenID {
	e.t.Helper()
	rec := e.do(http.MethodGet, "/v1/tokens", e.operator)
	for _, v := range decode[map[string][]tokenView](e.t, rec)["tokens"] {
		if v.Operator {
			return v.ID
		}
	}
	e.t.Fatal("no operator token")
	return ""
}

func TestTokenLastUsed(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	v := e.createToken(map[string]any{"role": "viewer", "name": "v"})
	require.Nil(t, e.listedToken(v.ID).LastUsedAt, "never used")

	first := clk.Now()
	require.True(t, e.works(v.Token))
	require.Equal(t, first, *e.listedToken(v.ID).LastUsedAt)
	clk.Advance(30 * time.Second)
	require.True(t, e.works(v.Token))
	require.Equal(t, first, *e.listedToken(v.ID).LastUsedAt, "written at most once a minute")
	clk.Advance(31 * time.Second)
	require.True(t, e.works(v.Token))
	require.Equal(t, clk.Now(), *e.listedToken(v.ID).LastUsedAt)

	rec := e.do(http.MethodGet, "/v1/tokens", e.admin)
	require.NotContains(t, rec.Body.String(), v.Token, "the listing never shows a secret")
	require.NotContains(t, rec.Body.String(), v.Token[tokenPrefixShown:])
}

// Expired admin tokens do not count as the admin an account keeps.
func TestExpiredAdminsDoNotCount(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	acct, admin := e.otherAccount("acme")
	rec := e.do(http.MethodPost, "/v1/tokens", admin, jsonBody(map[string]any{"role": "admin", "name": "temp", "expires_in": 60}))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	clk.Advance(time.Minute)
	toks, err := e.recs.Tokens(t.Context(), acct)
	require.NoError(t, err)
	self := e.tokenID(admin)
	requireProblem(t, e.do(http.MethodDelete, "/v1/tokens/"+string(self), admin), http.StatusConflict, "has expired")
	require.Len(t, toks, 2)
}

// A rotation ends the grace of every earlier rotation's secret: "grace
// 0s" after a routine rotation (a leak found during its grace period) must
// leave no old secret working, as its answer says, and rotating again and
// again never keeps more than one old secret alive (nor bypasses the
// account's token limit).
func TestRotationEndsEarlierGraceSecrets(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	first := e.createToken(map[string]any{"role": "editor", "name": "deploy"})

	rotate := func(body map[string]any) createTokenResponse {
		t.Helper()
		rec := e.do(http.MethodPost, "/v1/tokens/"+string(first.ID)+"/rotate", e.admin, jsonBody(body))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		return decode[createTokenResponse](t, rec)
	}
	second := rotate(map[string]any{"grace": "720h"})
	third := rotate(map[string]any{"grace": "720h"})
	require.True(t, e.works(second.Token), "the secret just replaced keeps its grace")
	require.False(t, e.works(first.Token), "an earlier rotation's secret ends with the next rotation")

	fourth := rotate(map[string]any{"grace": "0s"})
	require.Nil(t, fourth.PreviousValidUntil)
	require.Nil(t, e.listedToken(first.ID).PreviousValidUntil)
	for name, secret := range map[string]string{"first": first.Token, "second": second.Token, "third": third.Token} {
		require.False(t, e.works(secret), "%s secret still works after a rotation with grace 0s", name)
	}
	require.True(t, e.works(fourth.Token))
}

// Rotating an expired token without a new expiry used to answer 200 with a
// new secret that had already expired (and an old one "valid until" a time
// in the past). It is refused, saying how to give it a new expiry.
func TestRotatingAnExpiredToken(t *testing.T) {
	t.Parallel()
	e, tok := newEnvWithExpiredToken(t)
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens/"+string(tok.ID)+"/rotate", e.admin), http.StatusConflict, "expires_in")

	rec := e.do(http.MethodPost, "/v1/tokens/"+string(tok.ID)+"/rotate", e.admin, jsonBody(map[string]any{"expires_in": 3600}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rotated := decode[createTokenResponse](t, rec)
	require.Nil(t, rotated.PreviousValidUntil, "the expired secret does not come back")
	require.True(t, e.works(rotated.Token))
	require.False(t, e.works(tok.Token))
}

// newEnvWithExpiredToken is an env whose clock stands an hour after its
// viewer token tok expired.
func newEnvWithExpiredToken(t *testing.T) (*env, createTokenResponse) {
	t.Helper()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	tok := e.createToken(map[string]any{"role": "viewer", "name": "expired", "expires_in": 60})
	clk.Advance(time.Hour)
	return e, tok
}
