package api

import (
	"context"
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
