package records_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/memkv"
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

// TestClaimSchedule: of processes claiming the same due run, one wins; a
// run not due, or a connection without a schedule, is claimed by none.
func TestClaimSchedule(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, ctx := open(t, newKVS), context.Background()
			now := time.Now().UTC()
			require.NoError(t, s.CreateConnection(ctx, records.Connection{ID: "con_s", Account: "acc_one", Provider: "github",
				Status: records.ConnectionActive, CreatedAt: now, UpdatedAt: now,
				Schedule: &records.ConnectionSchedule{Every: time.Hour, NextRun: now.Add(-time.Minute), LastJob: "job_prev"}}))
			require.NoError(t, s.CreateConnection(ctx, records.Connection{ID: "con_none", Account: "acc_one", Provider: "github",
				Status: records.ConnectionActive, CreatedAt: now, UpdatedAt: now}))

			due, err := s.DueSchedules(ctx, now, 10)
			require.NoError(t, err)
			require.Len(t, due, 1)
			require.Equal(t, "con_s", due[0].ID)

			var wins sync.Map
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					c, ok, err := s.ClaimSchedule(ctx, "acc_one", "con_s", now)
					if err != nil {
						t.Error(err)
					}
					if ok {
						wins.Store(i, c)
					}
				})
			}
			wg.Wait()
			n := 0
			wins.Range(func(_, v any) bool {
				n++
				c := v.(records.Connection)
				require.Equal(t, now.Add(59*time.Minute), c.Schedule.NextRun, "the next run is one interval after the one claimed")
				require.Equal(t, apiary.JobID("job_prev"), c.Schedule.LastJob, "the claim keeps the previous job, for the skip check")
				return true
			})
			require.Equal(t, 1, n, "exactly one claimer wins")

			due, err = s.DueSchedules(ctx, now, 10)
			require.NoError(t, err)
			require.Empty(t, due)
			_, ok, err := s.ClaimSchedule(ctx, "acc_one", "con_none", now)
			require.NoError(t, err)
			require.False(t, ok)
			// Long missed runs are not made up: the next is one interval past now.
			later := now.Add(5 * time.Hour)
			c, ok, err := s.ClaimSchedule(ctx, "acc_one", "con_s", later)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, later.Add(time.Hour), c.Schedule.NextRun)
			_, _, err = s.ClaimSchedule(ctx, "acc_two", "con_s", now.Add(9*time.Hour))
			require.ErrorIs(t, err, apiary.ErrNotFound, "another account's connection is not found")
		})
	}
}

// One record that cannot be read does not stop the pruning of the others:
// it is skipped and reported, and the revoked connections after it go.
func TestPruneRevokedConnectionsSkipsAnUnreadableRecord(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kvs := memkv.NewKVStore()
	s, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	bucket, err := kvs.Bucket(ctx, "connections")
	require.NoError(t, err)
	_, err = bucket.Put(ctx, "0.unreadable", []byte("not a record"))
	require.NoError(t, err)
	old := time.Now().UTC().Add(-40 * 24 * time.Hour)
	require.NoError(t, s.CreateConnection(ctx, records.Connection{ID: "con_old", Account: "acc_prune", Provider: "github",
		Status: records.ConnectionRevoked, CreatedAt: old, UpdatedAt: old}))

	n, err := s.PruneRevokedConnections(ctx, time.Now().Add(-30*24*time.Hour))
	require.Error(t, err, "the unreadable record is reported")
	require.Equal(t, 1, n, "the revoked connection after it is pruned all the same")
	_, err = s.Connection(ctx, "acc_prune", "con_old")
	require.ErrorIs(t, err, apiary.ErrNotFound)
}
