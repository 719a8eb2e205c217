package records_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func adminToken(account apiary.AccountID, n int) apiary.Token {
	return apiary.Token{ID: apiary.NewTokenID(), Account: account, Role: apiary.RoleAdmin, Name: fmt.Sprint(n),
		Hash: fmt.Sprintf("%064x", time.Now().UnixNano()+int64(n)), CreatedAt: time.Now().UTC()}
}

// Two admins deleting each other at once: the last-admin check is a
// compare-and-swap, so at most one deletion succeeds, every time.
func TestLastAdminSurvivesConcurrentDeletes(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, ctx := open(t, newKVS), context.Background()
			for i := range 40 {
				account := apiary.AccountID(fmt.Sprintf("acct%d", i))
				a, b := adminToken(account, 2*i), adminToken(account, 2*i+1)
				require.NoError(t, s.CreateToken(ctx, a))
				require.NoError(t, s.CreateToken(ctx, b))
				var (
					wg   sync.WaitGroup
					errs [2]error
				)
				for j, id := range []apiary.TokenID{a.ID, b.ID} {
					wg.Add(1)
					go func() { defer wg.Done(); errs[j] = s.DeleteToken(ctx, account, id) }()
				}
				wg.Wait()
				toks, err := s.Tokens(ctx, account)
				require.NoError(t, err)
				require.Len(t, toks, 1, "iteration %d: one admin is left (errors %v)", i, errs)
				failed := 0
				for _, err := range errs {
					if err != nil {
						require.Equal(t, apiary.KindConflict, apiary.KindOf(err))
						require.ErrorContains(t, err, "last admin token")
						failed++
					}
				}
				require.Equal(t, 1, failed)
			}
		})
	}
}

func TestLastAdminTokenIsKept(t *testing.T) {
	t.Parallel()
	s, ctx := open(t, backends["memkv"]), context.Background()
	a := adminToken("acme", 1)
	v := apiary.Token{ID: apiary.NewTokenID(), Account: "acme", Role: apiary.RoleViewer, Hash: fmt.Sprintf("%064x", 99)}
	require.NoError(t, s.CreateToken(ctx, a))
	require.NoError(t, s.CreateToken(ctx, v))
	require.NoError(t, s.DeleteToken(ctx, "acme", v.ID), "a viewer token goes")
	err := s.DeleteToken(ctx, "acme", a.ID)
	require.Equal(t, apiary.KindConflict, apiary.KindOf(err))
	b := adminToken("acme", 2)
	require.NoError(t, s.CreateToken(ctx, b))
	require.NoError(t, s.DeleteToken(ctx, "acme", a.ID), "not the last one any more")
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(s.DeleteToken(ctx, "globex", b.ID)))
}

// Two rotations of one token at once: one wins, the other's secret is
// withdrawn, so the token has one current secret.
func TestConcurrentRotationsLeaveOneSecret(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, ctx := open(t, newKVS), context.Background()
			for i := range 20 {
				tok := adminToken("acct", 100+i)
				require.NoError(t, s.CreateToken(ctx, tok))
				now := time.Now()
				var (
					wg   sync.WaitGroup
					errs [2]error
				)
				for j := range errs {
					next := tok
					next.Hash = fmt.Sprintf("%064x", 1000*i+j+1)
					wg.Go(func() { errs[j] = s.RotateToken(ctx, "acct", next, now, now.Add(time.Hour)) })
				}
				wg.Wait()
				require.True(t, errs[0] == nil || errs[1] == nil, "one rotation succeeds: %v", errs)
				toks, err := s.Tokens(ctx, "acct")
				require.NoError(t, err)
				current := 0
				for _, x := range toks {
					if x.ID == tok.ID && !x.Replaced {
						current++
					}
				}
				require.Equal(t, 1, current, "iteration %d: %v", i, errs)
			}
		})
	}
}
