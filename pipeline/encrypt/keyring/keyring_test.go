package keyring_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/encrypttest"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func rootKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func TestConformance(t *testing.T) {
	encrypttest.Run(t, func(t *testing.T) encrypt.KeyProvider {
		kr, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: rootKey(t)})
		require.NoError(t, err)
		return kr
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	_, err := keyring.New(keyring.Config{})
	require.Error(t, err)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.ErrorContains(t, err, "Dir is required")
	require.ErrorContains(t, err, "RootKey must be 32 bytes")

	c := keyring.Config{Dir: "/x", RootKey: bytes.Repeat([]byte{'k'}, 32)}
	require.NotContains(t, c.String(), strings.Repeat("k", 32))
}

func TestFilesAndReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "keys")
	root := rootKey(t)
	kr, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	require.NoError(t, kr.CreateAccountKey(ctx, "acme"))

	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(dir, "acme.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "temporary files left behind")

	dk, err := kr.GenerateDataKey(ctx, "acme", encrypt.Context{"document": "d"})
	require.NoError(t, err)

	// The key survives a restart.
	kr2, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	got, err := kr2.Decrypt(ctx, "acme", dk.Wrapped, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)

	// Another root key cannot open the account key.
	kr3, err := keyring.New(keyring.Config{Dir: dir, RootKey: rootKey(t)})
	require.NoError(t, err)
	_, err = kr3.Decrypt(ctx, "acme", dk.Wrapped, encrypt.Context{"document": "d"})
	require.Equal(t, apiary.KindPermanent, apiary.KindOf(err))

	// A key file moved to another account's name does not open (AAD binds the account).
	raw, err := os.ReadFile(filepath.Join(dir, "acme.key"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "globex.key"), raw, 0o600))
	_, err = kr2.GenerateDataKey(ctx, "globex", nil)
	require.Equal(t, apiary.KindPermanent, apiary.KindOf(err))
}

func TestUnknownAccountNotFound(t *testing.T) {
	t.Parallel()
	kr, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: rootKey(t)})
	require.NoError(t, err)
	_, err = kr.GenerateDataKey(t.Context(), "nobody", nil)
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
	_, err = kr.Decrypt(t.Context(), "nobody", make([]byte, 60), nil)
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
}

func TestBadAccountID(t *testing.T) {
	t.Parallel()
	kr, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: rootKey(t)})
	require.NoError(t, err)
	for _, acc := range []apiary.AccountID{"", "../etc", "a/b", "UPPER"} {
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(kr.CreateAccountKey(t.Context(), acc)), "%q", acc)
	}
}

func TestConcurrentKeyringsOneKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir, root := t.TempDir(), rootKey(t)
	// Separate Keyrings over one directory stand for separate processes.
	const n = 6
	rings := make([]*keyring.Keyring, n)
	for i := range rings {
		var err error
		rings[i], err = keyring.New(keyring.Config{Dir: dir, RootKey: root})
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	dks := make([]encrypt.DataKey, n)
	errs := make([]error, n)
	for i, kr := range rings {
		wg.Go(func() {
			if errs[i] = kr.CreateAccountKey(ctx, "acme"); errs[i] == nil {
				dks[i], errs[i] = kr.GenerateDataKey(ctx, "acme", nil)
			}
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		for j := range n { // every ring opens every other ring's data key
			got, err := rings[j].Decrypt(ctx, "acme", dks[i].Wrapped, nil)
			require.NoError(t, err)
			require.Equal(t, dks[i].Plaintext, got)
		}
	}
}

func TestLoadOrCreateRootKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "secrets", "root.key")
	k1, err := keyring.LoadOrCreateRootKey(path)
	require.NoError(t, err)
	require.Len(t, k1, 32)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	k2, err := keyring.LoadOrCreateRootKey(path)
	require.NoError(t, err)
	require.Equal(t, k1, k2)

	require.NoError(t, os.Chmod(path, 0o640))
	_, err = keyring.LoadOrCreateRootKey(path)
	require.ErrorContains(t, err, "must not be accessible by group or others")
	require.NotContains(t, err.Error(), string(k1))

	short := filepath.Join(t.TempDir(), "short.key")
	require.NoError(t, os.WriteFile(short, []byte("tooshort"), 0o600))
	_, err = keyring.LoadOrCreateRootKey(short)
	require.ErrorContains(t, err, "exactly 32 bytes")
}

func TestParseRootKey(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0xfb, 0xff, 0x01}, 11)[:32]
	for name, s := range map[string]string{
		"hex":        hex.EncodeToString(key),
		"std":        base64.StdEncoding.EncodeToString(key),
		"raw std":    base64.RawStdEncoding.EncodeToString(key),
		"url":        base64.URLEncoding.EncodeToString(key),
		"raw url":    base64.RawURLEncoding.EncodeToString(key),
		"whitespace": " " + hex.EncodeToString(key) + "\n",
	} {
		got, err := keyring.ParseRootKey(s)
		require.NoError(t, err, name)
		require.Equal(t, key, got, name)
	}
	for name, s := range map[string]string{
		"empty":     "",
		"short hex": hex.EncodeToString(key[:31]),
		"long b64":  base64.StdEncoding.EncodeToString(append(key, 1)),
		"garbage":   "not a key at all!!",
	} {
		_, err := keyring.ParseRootKey(s)
		require.Error(t, err, name)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), name)
		if s != "" {
			require.NotContains(t, err.Error(), s, name)
		}
	}
}

// Rotation: a new version wraps new data keys, keys wrapped under the old
// one keep opening until re-wrapped, and a reopened keyring (another
// process) sees the new version.
func TestRotateAccountKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir, root := t.TempDir(), rootKey(t)
	kr, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	acc := apiary.AccountID("acme")
	encCtx := encrypt.Context{"document": "d"}

	_, err = kr.RotateAccountKey(ctx, acc)
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err), "no key to rotate yet")

	require.NoError(t, kr.CreateAccountKey(ctx, acc))
	old, err := kr.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)

	v, err := kr.RotateAccountKey(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, 2, v)
	require.FileExists(t, filepath.Join(dir, "acme.v2.key"))

	// Another process on the same dir generates under version 2 and opens both.
	other, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	fresh, err := other.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)
	for _, kp := range []*keyring.Keyring{kr, other} {
		for _, dk := range []encrypt.DataKey{old, fresh} {
			got, err := kp.Decrypt(ctx, acc, dk.Wrapped, encCtx)
			require.NoError(t, err)
			require.Equal(t, dk.Plaintext, got)
		}
	}

	// Rewrap moves the old key to version 2: without version 1's file it
	// still opens, the old wrapping does not.
	moved, err := kr.Rewrap(ctx, acc, old.Wrapped, encCtx)
	require.NoError(t, err)
	require.NotEqual(t, old.Wrapped, moved)
	_, err = kr.Rewrap(ctx, acc, old.Wrapped, encrypt.Context{"document": "other"})
	require.Error(t, err, "a rewrap checks the context like a decrypt")

	vs, err := kr.Versions(acc)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, vs)

	// Concurrent rotations each make a version of their own.
	var wg sync.WaitGroup
	got, errs := make([]int, 4), make([]error, 4)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = kr.RotateAccountKey(ctx, acc) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.ElementsMatch(t, []int{3, 4, 5, 6}, got)

	// Version 2 destroyed (its file gone, a fresh process): what it wraps
	// no longer opens, what version 1 wraps still does.
	require.NoError(t, os.Remove(filepath.Join(dir, "acme.v2.key")))
	third, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	_, err = third.Decrypt(ctx, acc, moved, encCtx)
	require.Equal(t, apiary.KindPermanent, apiary.KindOf(err))
	back, err := third.Decrypt(ctx, acc, old.Wrapped, encCtx)
	require.NoError(t, err)
	require.Equal(t, old.Plaintext, back)
}

// Another process on the same directory erased an account's key: a
// keyring that has it cached serves it until told to Forget it, then no
// more. Other accounts stay cached.
func TestForget(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	root := rootKey(t)
	kr, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	other, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	wrapped := map[apiary.AccountID][]byte{}
	for _, acc := range []apiary.AccountID{"acme", "globex"} {
		require.NoError(t, kr.CreateAccountKey(ctx, acc))
		dk, err := kr.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"})
		require.NoError(t, err)
		wrapped[acc] = dk.Wrapped
	}
	require.NoError(t, other.EraseAccountKey(ctx, "acme"))
	_, err = kr.Decrypt(ctx, "acme", wrapped["acme"], encrypt.Context{"document": "d"})
	require.NoError(t, err, "the erased key is cached")

	kr.Forget("acme")
	_, err = kr.Decrypt(ctx, "acme", wrapped["acme"], encrypt.Context{"document": "d"})
	require.ErrorIs(t, err, apiary.ErrNotFound)
	require.NoError(t, os.Remove(filepath.Join(dir, "globex.key")))
	_, err = kr.Decrypt(ctx, "globex", wrapped["globex"], encrypt.Context{"document": "d"})
	require.NoError(t, err, "another account stays cached")
}
