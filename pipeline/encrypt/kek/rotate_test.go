package kek_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/kek"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
)

// twoProcesses returns two account key providers on the same keys (one
// keyring directory, or one KMS), each with caches of its own: what two
// processes of one deployment hold.
type twoProcesses func(t *testing.T) (a, b encrypt.KeyProvider)

func keyringTwice(t *testing.T) (encrypt.KeyProvider, encrypt.KeyProvider) {
	dir := t.TempDir()
	root := make([]byte, 32)
	_, err := rand.Read(root)
	require.NoError(t, err)
	open := func() encrypt.KeyProvider {
		kr, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
		require.NoError(t, err)
		return kr
	}
	return open(), open()
}

func kmsTwice(t *testing.T) (encrypt.KeyProvider, encrypt.KeyProvider) {
	return newKMS(t), newKMS(t)
}

func overBoth(t *testing.T, test func(t *testing.T, open twoProcesses)) {
	t.Run("keyring", func(t *testing.T) { t.Parallel(); test(t, keyringTwice) })
	t.Run("kms", func(t *testing.T) { t.Parallel(); test(t, kmsTwice) })
}

// newAccount makes an account's key through p, erased when the test ends.
func newAccount(t *testing.T, p *kek.Provider) apiary.AccountID {
	t.Helper()
	acc := apiary.NewAccountID()
	require.NoError(t, p.CreateAccountKey(t.Context(), acc))
	t.Cleanup(func() { _ = p.EraseAccountKey(context.Background(), acc) })
	return acc
}

// requireKEKsUnder checks that every KEK record of acc is wrapped by
// version (both providers' versioned formats start with 2, then the
// version as a one-byte uvarint).
func requireKEKsUnder(t *testing.T, store kek.Store, acc apiary.AccountID, version int, what string) []string {
	t.Helper()
	ids, err := store.KEKIDs(t.Context(), acc)
	require.NoError(t, err)
	for _, id := range ids {
		w, err := store.KEK(t.Context(), acc, id)
		require.NoError(t, err)
		require.Equal(t, []byte{2, byte(version)}, w[:2], "%s: KEK %s is not wrapped by version %d", what, id, version)
	}
	return ids
}

// A process that made a KEK before another process rotated the account
// key makes its next KEK under the new version, not under the version it
// knew (which, on KMS, it would otherwise trust for up to a minute).
func TestNewKEKAfterRotationElsewhere(t *testing.T) {
	t.Parallel()
	overBoth(t, func(t *testing.T, open twoProcesses) {
		ctx := t.Context()
		baseA, baseB := open(t)
		store := newRecords(t)
		a := decorate(t, baseA, store, kek.Config{})
		b := decorate(t, baseB, store, kek.Config{MaxUses: 1}) // a new KEK for every data key
		acc := newAccount(t, a)
		old, err := b.GenerateDataKey(ctx, acc, docCtx("old"))
		require.NoError(t, err)

		v, err := a.RotateAccountKey(ctx, acc)
		require.NoError(t, err)
		require.Equal(t, 2, v)
		fresh, err := b.GenerateDataKey(ctx, acc, docCtx("fresh"))
		require.NoError(t, err)
		require.Len(t, requireKEKsUnder(t, store, acc, 2, "after the rotation"), 2)
		requireOpens(t, a, acc, old, "old")
		requireOpens(t, a, acc, fresh, "fresh")
	})
}

// hooked is a keyring that runs after each time its GenerateDataKey has
// made a key, before the key is returned.
type hooked struct {
	*keyring.Keyring
	after func()
}

func (h hooked) GenerateDataKey(ctx context.Context, acc apiary.AccountID, encCtx encrypt.Context) (encrypt.DataKey, error) {
	dk, err := h.Keyring.GenerateDataKey(ctx, acc, encCtx)
	h.after()
	return dk, err
}

// A KEK made under the old version while another process rotates, and
// stored after that rotation listed the KEKs to re-wrap, is re-wrapped by
// its maker before it wraps anything: no KEK is left under the old version.
func TestKEKMadeDuringRotationIsRewrapped(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	krA, krB := keyringTwice(t)
	store := newRecords(t)
	a := decorate(t, krA, store, kek.Config{})
	var acc apiary.AccountID
	rotated := false
	b := decorate(t, hooked{krB.(*keyring.Keyring), func() {
		if !rotated { // the other process rotates between the making and the storing of b's KEK
			rotated = true
			_, err := a.RotateAccountKey(ctx, acc)
			require.NoError(t, err)
		}
	}}, store, kek.Config{})
	acc = newAccount(t, a)
	dk, err := b.GenerateDataKey(ctx, acc, docCtx("d"))
	require.NoError(t, err)
	require.True(t, rotated)
	require.Len(t, requireKEKsUnder(t, store, acc, 2, "a KEK made during the rotation"), 1)
	requireOpens(t, decorate(t, krA, store, kek.Config{}), acc, dk, "d")
}

// failingRewrap is an account key provider whose re-wraps fail from the
// failAt-th one on (a KMS outage in the middle of a rotation) until heal.
type failingRewrap struct {
	encrypt.KeyProvider
	encrypt.Versioned
	encrypt.Eraser
	failAt int64
	calls  atomic.Int64
	healed atomic.Bool
}

func (f *failingRewrap) Rewrap(ctx context.Context, acc apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	if f.calls.Add(1) >= f.failAt && !f.healed.Load() {
		return nil, apiary.E(apiary.KindUnavailable, "injected: key service unavailable")
	}
	return f.Versioned.Rewrap(ctx, acc, wrapped, encCtx)
}

// A rotation whose re-wrapping fails half-way is finished by the next
// rotation request, under the version it made, instead of making another
// version (which an outage would otherwise repeat up to the limit of
// versions); once a rotation has finished, the next one makes a version.
func TestFailedRotationIsResumed(t *testing.T) {
	t.Parallel()
	overBoth(t, func(t *testing.T, open twoProcesses) {
		ctx := t.Context()
		base, other := open(t)
		store := newRecords(t)
		faulty := &failingRewrap{KeyProvider: base, Versioned: base.(encrypt.Versioned), Eraser: base.(encrypt.Eraser), failAt: 2}
		p := decorate(t, faulty, store, kek.Config{MaxUses: 1})
		acc := newAccount(t, p)
		var dks []encrypt.DataKey
		for i := range 4 { // four KEKs
			dk, err := p.GenerateDataKey(ctx, acc, docCtx(fmt.Sprint(i)))
			require.NoError(t, err)
			dks = append(dks, dk)
		}

		for range 3 { // the outage lasts three tries
			_, err := p.RotateAccountKey(ctx, acc)
			require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
		}
		faulty.healed.Store(true)
		v, err := p.RotateAccountKey(ctx, acc)
		require.NoError(t, err)
		require.Equal(t, 2, v, "the retry finishes the rotation to version 2")
		require.Len(t, requireKEKsUnder(t, store, acc, 2, "after the resumed rotation"), 4)

		// Another process, with nothing cached, opens every data key, and
		// makes new KEKs under version 2.
		q := decorate(t, other, store, kek.Config{})
		for i, dk := range dks {
			requireOpens(t, q, acc, dk, fmt.Sprint(i))
		}
		_, err = q.GenerateDataKey(ctx, acc, docCtx("new"))
		require.NoError(t, err)
		requireKEKsUnder(t, store, acc, 2, "a new KEK")

		v, err = p.RotateAccountKey(ctx, acc)
		require.NoError(t, err)
		require.Equal(t, 3, v, "a rotation after a finished one makes a version")
		requireKEKsUnder(t, store, acc, 3, "after the next rotation")
	})
}
