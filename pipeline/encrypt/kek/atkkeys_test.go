package kek_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/kek"
)

// Rotations racing the making of new KEKs (a KEK every 3 data keys, in two
// processes) lose no data key: every one made before, during and after
// five rotations opens in a third process that has nothing cached; over
// the keyring and over KMS.
func TestRotationRacingNewKEKs(t *testing.T) {
	t.Parallel()
	t.Run("keyring", func(t *testing.T) { t.Parallel(); rotationRacingNewKEKs(t, newKeyring(t)) })
	t.Run("kms", func(t *testing.T) { t.Parallel(); rotationRacingNewKEKs(t, newKMS(t)) })
}

func rotationRacingNewKEKs(t *testing.T, kr encrypt.KeyProvider) {
	ctx := t.Context()
	store := newRecords(t)
	p1 := decorate(t, kr, store, kek.Config{MaxUses: 3})
	p2 := decorate(t, kr, store, kek.Config{MaxUses: 3})
	acc := apiary.NewAccountID()
	require.NoError(t, p1.CreateAccountKey(ctx, acc))
	t.Cleanup(func() { _ = p1.EraseAccountKey(context.Background(), acc) })

	type made struct {
		dk  encrypt.DataKey
		doc string
	}
	var mu sync.Mutex
	var all []made
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w, p := range []*kek.Provider{p1, p2, p1, p2} {
		wg.Go(func() {
			for i := range 60 {
				doc := fmt.Sprintf("w%d-%d", w, i)
				dk, err := p.GenerateDataKey(ctx, acc, docCtx(doc))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, made{dk, doc})
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if _, err := p1.RotateAccountKey(ctx, acc); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	fresh := decorate(t, kr, store, kek.Config{})
	for _, m := range all {
		requireOpens(t, fresh, acc, m.dk, m.doc)
	}
	require.Len(t, all, 240)
}
