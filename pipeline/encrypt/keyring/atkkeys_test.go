package keyring_test

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
)

// An erasure racing a rotation (an admin rotating while the account is
// deleted) leaves no key file of the account behind: a version made by the
// rotation after the erasure listed the versions would otherwise outlive
// the account, unfindable by a later erasure (versions are looked for from
// version 1 up, which is gone).
func TestEraseRacingRotation(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	root := rootKey(t)
	for range 200 {
		eraser, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
		require.NoError(t, err)
		rotator, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
		require.NoError(t, err)
		acc := apiary.NewAccountID()
		require.NoError(t, eraser.CreateAccountKey(ctx, acc))
		_, err = eraser.RotateAccountKey(ctx, acc)
		require.NoError(t, err)
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = rotator.RotateAccountKey(ctx, acc) }) // may fail: the key is going
		wg.Go(func() { require.NoError(t, eraser.EraseAccountKey(ctx, acc)) })
		wg.Wait()
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			require.False(t, strings.HasPrefix(e.Name(), string(acc)), "%s left after the account's erasure", e.Name())
		}
	}
}
