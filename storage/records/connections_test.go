package records_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

func TestConnectionRecords(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testConnectionRecords(t, open(t, newKVS))
		})
	}
}

func testConnectionRecords(t *testing.T, s *records.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	for _, id := range []string{"con_a", "con_b", "con_c"} {
		require.NoError(t, s.CreateConnection(ctx, records.Connection{ID: id, Account: "acc_one", Provider: "oidc",
			Status: records.ConnectionPending, CreatedAt: now, UpdatedAt: now}))
	}
	err := s.CreateConnection(ctx, records.Connection{ID: "con_a", Account: "acc_one"})
	require.ErrorIs(t, err, apiary.ErrConflict)

	// Another account's id is not found, for every operation.
	_, err = s.Connection(ctx, "acc_two", "con_a")
	require.ErrorIs(t, err, apiary.ErrNotFound)
	_, err = s.UpdateConnection(ctx, "acc_two", "con_a", func(*records.Connection) error { return nil })
	require.ErrorIs(t, err, apiary.ErrNotFound)
	require.ErrorIs(t, s.DeleteConnection(ctx, "acc_two", "con_a"), apiary.ErrNotFound)
	other, next, err := s.Connections(ctx, "acc_two", 0, "")
	require.NoError(t, err)
	require.Empty(t, other)
	require.Empty(t, next)

	// Pages by id.
	page, next, err := s.Connections(ctx, "acc_one", 2, "")
	require.NoError(t, err)
	require.Equal(t, []string{"con_a", "con_b"}, []string{page[0].ID, page[1].ID})
	page, next, err = s.Connections(ctx, "acc_one", 2, next)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, "con_c", page[0].ID)
	require.Empty(t, next)

	// Concurrent updates (the refresh lease is one) lose nothing.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := s.UpdateConnection(ctx, "acc_one", "con_a", func(c *records.Connection) error {
				c.Sealed = append(c.Sealed, 1)
				return nil
			})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	c, err := s.Connection(ctx, "acc_one", "con_a")
	require.NoError(t, err)
	require.Len(t, c.Sealed, 20)

	require.NoError(t, s.DeleteConnection(ctx, "acc_one", "con_a"))
	_, err = s.Connection(ctx, "acc_one", "con_a")
	require.ErrorIs(t, err, apiary.ErrNotFound)
}
