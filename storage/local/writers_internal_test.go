package local

import (
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

// TestWritersTakeTurnsAcrossAccounts: every write fsyncs while it holds the
// writer's place, so a first-come-first-served lock queued a quiet
// account's one write behind all of a noisy account's. The place goes
// instead to the waiting account that wrote least recently.
func TestWritersTakeTurnsAcrossAccounts(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(dir, Options{})
		require.NoError(t, err)
		defer s.Close()
		ctx := t.Context()
		const noisy, quiet apiary.AccountID = "acc_noisy", "acc_quiet"

		require.NoError(t, s.lockWriter(ctx, noisy))
		var (
			mu    sync.Mutex
			order []apiary.AccountID
			wg    sync.WaitGroup
		)
		write := func(account apiary.AccountID) {
			wg.Go(func() {
				require.NoError(t, s.lockWriter(ctx, account))
				mu.Lock()
				order = append(order, account)
				mu.Unlock()
				s.unlockWriter(account)
			})
		}
		for range 3 {
			write(noisy)
		}
		synctest.Wait() // the noisy account's writes wait in line
		write(quiet)
		synctest.Wait()
		s.unlockWriter(noisy)
		wg.Wait()
		require.Equal(t, []apiary.AccountID{quiet, noisy, noisy, noisy}, order)
	})
}
