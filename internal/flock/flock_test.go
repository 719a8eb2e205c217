//go:build unix

package flock_test

import (
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/internal/flock"
)

func TestSecondLockIsHeldUntilTheFirstCloses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "LOCK")
	f, err := flock.Exclusive(path)
	require.NoError(t, err)
	_, err = flock.Exclusive(path)
	require.ErrorIs(t, err, flock.ErrHeld)
	require.NoError(t, f.Close())
	f, err = flock.Exclusive(path)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// A child forked while the lock file is open holds the lock until it execs;
// locking again right after a close must not take that for another holder.
func TestLockAgainWhileTheProcessForks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "LOCK")
	stop := make(chan struct{})
	var forkers sync.WaitGroup
	for range 4 {
		forkers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = exec.Command("/bin/true").Run()
			}
		})
	}
	defer forkers.Wait()
	defer close(stop)
	for range 2000 {
		f, err := flock.Exclusive(path)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
}
