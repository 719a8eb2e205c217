package connections

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// A connection begun and never completed stays pending: an admin (or a
// script with an admin token) could begin connections without end, each a
// record that every scheduler pass reads. Authorizations in progress are
// bounded per account, and one whose flow expired, which can never
// complete, is removed when another begins.
func TestPendingConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	recs := w.recs
	svc, err := New(Config{PublicURL: "https://apiary.example.com", Providers: []Provider{{
		Name: "oidc", ClientID: "id", ClientSecret: "secret", Issuer: "https://idp.example.com",
		AuthURL: "https://idp.example.com/auth", TokenURL: "https://idp.example.com/token",
	}}}, recs, w.keys, nil)
	require.NoError(t, err)
	now := time.Now().UTC()
	require.NoError(t, recs.CreateConnection(ctx, records.Connection{ID: "con_live", Account: acc, Provider: "oidc",
		Status: records.ConnectionActive, CreatedAt: now, UpdatedAt: now}))

	var first, second records.Connection
	for i := range MaxPendingConnections {
		c, _, err := svc.Begin(ctx, acc, "oidc")
		require.NoError(t, err, "connection %d", i)
		switch i {
		case 0:
			first = c
		case 1:
			second = c
		}
	}
	_, _, err = svc.Begin(ctx, acc, "oidc")
	require.ErrorIs(t, err, apiary.ErrConflict)
	require.ErrorContains(t, err, fmt.Sprintf("%d authorizations in progress", MaxPendingConnections))

	// The first one's flow expires, the second's was spent (refused at
	// the provider) longer than a flow lives: neither can complete, and
	// they go when the next connection begins.
	_, err = recs.UpdateConnection(ctx, acc, first.ID, func(c *records.Connection) error {
		c.Flow.ExpiresAt = now.Add(-time.Minute)
		return nil
	})
	require.NoError(t, err)
	_, err = recs.UpdateConnection(ctx, acc, second.ID, func(c *records.Connection) error {
		c.Flow, c.UpdatedAt = nil, now.Add(-time.Hour)
		return nil
	})
	require.NoError(t, err)
	_, _, err = svc.Begin(ctx, acc, "oidc")
	require.NoError(t, err)
	_, _, err = svc.Begin(ctx, acc, "oidc")
	require.NoError(t, err)
	_, _, err = svc.Begin(ctx, acc, "oidc")
	require.ErrorIs(t, err, apiary.ErrConflict)
	for _, id := range []string{first.ID, second.ID} {
		_, err = recs.Connection(ctx, acc, id)
		require.ErrorIs(t, err, apiary.ErrNotFound)
	}
	_, err = recs.Connection(ctx, acc, "con_live")
	require.NoError(t, err, "an active connection is not touched")
}

// The bound is hard: authorizations begun at once, in one process and in
// two, never make more than MaxPendingConnections pending; the others are
// refused with a Conflict.
func TestPendingBoundHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	cfg := Config{PublicURL: "https://apiary.example.com", Providers: []Provider{{
		Name: "oidc", ClientID: "id", ClientSecret: "secret", Issuer: "https://idp.example.com",
		AuthURL: "https://idp.example.com/auth", TokenURL: "https://idp.example.com/token",
	}}}
	var procs [2]*Service // two processes over one record store
	for i := range procs {
		var err error
		procs[i], err = New(cfg, w.recs, w.keys, nil)
		require.NoError(t, err)
	}
	const starts = 50
	errs := make(chan error, starts)
	var wg sync.WaitGroup
	for i := range starts {
		wg.Go(func() {
			_, _, err := procs[i%len(procs)].Begin(ctx, acc, "oidc")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	began := 0
	for err := range errs {
		if err == nil {
			began++
			continue
		}
		require.ErrorIs(t, err, apiary.ErrConflict)
	}
	conns, _, err := w.recs.Connections(ctx, acc, 500, "")
	require.NoError(t, err)
	pending := 0
	for _, c := range conns {
		if c.Status == records.ConnectionPending {
			pending++
		}
	}
	require.LessOrEqual(t, pending, MaxPendingConnections)
	require.Equal(t, began, pending, "every Begin that answered is pending, no other")
	require.Positive(t, began)
}

// A Begin waiting for its account's turn stops waiting when its request is
// given up, and leaves the turn as it found it.
func TestBeginStopsWaitingForItsTurnWithItsRequest(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	svc, err := New(Config{PublicURL: "https://apiary.example.com", Providers: []Provider{{
		Name: "oidc", ClientID: "id", ClientSecret: "secret", Issuer: "https://idp.example.com",
		AuthURL: "https://idp.example.com/auth", TokenURL: "https://idp.example.com/token",
	}}}, w.recs, w.keys, nil)
	require.NoError(t, err)
	unlock, err := svc.lockBegin(ctx, acc) // another Begin has the turn
	require.NoError(t, err)

	gone, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		_, _, err := svc.Begin(gone, acc, "oidc")
		waited <- err
	}()
	cancel()
	require.ErrorIs(t, <-waited, context.Canceled)

	unlock()
	_, _, err = svc.Begin(ctx, acc, "oidc")
	require.NoError(t, err, "the turn is free again")
	svc.mu.Lock()
	defer svc.mu.Unlock()
	require.Empty(t, svc.beginning, "no turn is left behind")
}
