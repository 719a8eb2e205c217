package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestNewTokenFormat(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		tok, err := NewToken()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(tok, "apy_"))
		require.Len(t, tok, tokenLen)
		require.NoError(t, CheckTokenFormat(tok))
		require.False(t, seen[tok], "duplicate token")
		seen[tok] = true
		h := HashToken(tok)
		require.Len(t, h, 64)
		require.NotContains(t, h, tok[4:])
	}
}

func TestCheckTokenFormatRejects(t *testing.T) {
	t.Parallel()
	good, err := NewToken()
	require.NoError(t, err)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for name, s := range map[string]string{
		"empty":           "",
		"no prefix":       good[4:],
		"other prefix":    "ghp_" + good[4:],
		"short":           good[:len(good)-1],
		"long":            good + "0",
		"bad alphabet":    good[:10] + "-" + good[11:],
		"random changed":  flip(good, 10),
		"checksum change": flip(good, len(good)-1),
	} {
		t.Run(name, func(t *testing.T) {
			err := CheckTokenFormat(s)
			require.Error(t, err)
			require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err))
			if s != "" {
				require.NotContains(t, err.Error(), s, "the error must not echo the token")
			}
		})
	}
}

func TestBootstrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("random token", func(t *testing.T) {
		t.Parallel()
		env := newStores(t)
		issued, created, err := Bootstrap(ctx, env.recs, env.keys, "")
		require.NoError(t, err)
		require.True(t, created)
		require.NoError(t, CheckTokenFormat(issued))
		tok, err := env.recs.TokenByHash(ctx, HashToken(issued))
		require.NoError(t, err)
		require.Equal(t, apiary.DefaultAccount, tok.Account)
		require.Equal(t, apiary.RoleAdmin, tok.Role)
		require.True(t, tok.Operator)
		_, err = env.recs.Account(ctx, apiary.DefaultAccount)
		require.NoError(t, err)
		_, err = env.keys.GenerateDataKey(ctx, apiary.DefaultAccount, map[string]string{"document": "x"})
		require.NoError(t, err, "the default account has a key")

		again, created, err := Bootstrap(ctx, env.recs, env.keys, "")
		require.NoError(t, err)
		require.False(t, created)
		require.Empty(t, again)
		toks, err := env.recs.Tokens(ctx, apiary.DefaultAccount)
		require.NoError(t, err)
		require.Len(t, toks, 1)
	})

	t.Run("given token", func(t *testing.T) {
		t.Parallel()
		env := newStores(t)
		given, err := NewToken()
		require.NoError(t, err)
		issued, created, err := Bootstrap(ctx, env.recs, env.keys, given)
		require.NoError(t, err)
		require.True(t, created)
		require.Empty(t, issued, "the caller already knows its token")
		tok, err := env.recs.TokenByHash(ctx, HashToken(given))
		require.NoError(t, err)
		require.True(t, tok.Operator)
	})

	t.Run("malformed given token", func(t *testing.T) {
		t.Parallel()
		env := newStores(t)
		_, _, err := Bootstrap(ctx, env.recs, env.keys, "hunter2-not-a-token")
		require.Error(t, err)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
		require.Contains(t, err.Error(), "generate one")
		require.NotContains(t, err.Error(), "hunter2")
		has, err := env.recs.HasAccounts(ctx)
		require.NoError(t, err)
		require.False(t, has)
	})

	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		env := newStores(t)
		const n = 6
		type result struct {
			tok     string
			created bool
			err     error
		}
		var (
			wg      sync.WaitGroup
			results [n]result
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, ok, err := Bootstrap(ctx, env.recs, env.keys, "")
				results[i] = result{tok, ok, err}
			}()
		}
		wg.Wait()
		var issued []string
		for _, r := range results {
			require.NoError(t, r.err)
			if r.created {
				issued = append(issued, r.tok)
			} else {
				require.Empty(t, r.tok)
			}
		}
		require.Len(t, issued, 1)
		toks, err := env.recs.Tokens(ctx, apiary.DefaultAccount)
		require.NoError(t, err)
		require.Len(t, toks, 1, "losers withdraw their tokens")
		require.Equal(t, HashToken(issued[0]), toks[0].Hash)
	})
}

// Two admins revoking each other at once: one of them always stays.
func TestMutualAdminDeletionLeavesOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 25 {
		account, first := e.otherAccount(fmt.Sprintf("acct %d", i))
		rec := e.do(http.MethodPost, "/v1/tokens", first, jsonBody(map[string]string{"role": "admin", "name": "second"}))
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		second := decode[createTokenResponse](t, rec)
		toks, err := e.recs.Tokens(context.Background(), account)
		require.NoError(t, err)
		firstID := toks[0].ID
		if firstID == second.ID {
			firstID = toks[1].ID
		}

		var (
			wg    sync.WaitGroup
			codes [2]int
		)
		for j, del := range []struct {
			token string
			id    apiary.TokenID
		}{{first, second.ID}, {second.Token, firstID}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := httptest.NewRequest(http.MethodDelete, "/v1/tokens/"+string(del.id), nil)
				req.Header.Set("Authorization", "Bearer "+del.token)
				rec := httptest.NewRecorder()
				e.srv.Echo().ServeHTTP(rec, req)
				codes[j] = rec.Code
			}()
		}
		wg.Wait()
		toks, err = e.recs.Tokens(context.Background(), account)
		require.NoError(t, err)
		require.Len(t, toks, 1, "iteration %d: answers %v", i, codes)
		// One deletion succeeds; the other is refused as the last admin's, or
		// its token was already revoked.
		require.Contains(t, codes, http.StatusNoContent, "iteration %d", i)
		require.Subset(t, []int{http.StatusNoContent, http.StatusConflict, http.StatusUnauthorized}, codes[:], "iteration %d", i)
	}
}

// Operator tokens are the operator's: an admin of the default account
// neither sees nor deletes them.
func TestOperatorTokensAreTheOperators(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op, err := e.recs.TokenByHash(context.Background(), HashToken(e.operator))
	require.NoError(t, err)

	rec := e.do(http.MethodGet, "/v1/tokens", e.admin)
	require.Equal(t, http.StatusOK, rec.Code)
	for _, v := range decode[map[string][]tokenView](t, rec)["tokens"] {
		require.NotEqual(t, op.ID, v.ID, "an admin's listing holds no operator token")
		require.False(t, v.Operator)
	}
	requireProblem(t, e.do(http.MethodDelete, "/v1/tokens/"+string(op.ID), e.admin), http.StatusNotFound, "no such token")
	require.Equal(t, http.StatusCreated, e.do(http.MethodPost, "/v1/accounts", e.operator, jsonBody(map[string]string{"name": "x"})).Code, "the operator token still works")

	rec = e.do(http.MethodGet, "/v1/tokens", e.operator)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), string(op.ID), "the operator sees it")

	// The operator may delete an operator token (another admin remains);
	// NewOperatorToken, behind `apiary token --operator`, mints a new one.
	minted, err := NewOperatorToken(context.Background(), e.recs, "replacement")
	require.NoError(t, err)
	// Minted offline, it is still in the audit log: a new operator token
	// must never appear without a trace.
	got := e.lastAudit(minted)
	require.Equal(t, []string{"token.create", auditSuccess, string(e.tokenID(minted))}, []string{got.Action, got.Result, got.Target})
	require.True(t, got.Operator)
	require.Equal(t, http.StatusNoContent, e.do(http.MethodDelete, "/v1/tokens/"+string(op.ID), minted).Code)
	require.Equal(t, http.StatusCreated, e.do(http.MethodPost, "/v1/accounts", minted, jsonBody(map[string]string{"name": "y"})).Code)
	requireProblem(t, e.do(http.MethodGet, "/v1/jobs", e.operator), http.StatusUnauthorized, "revoked")
}
