package encrypt_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
)

func newKeyring(t *testing.T) *keyring.Keyring {
	t.Helper()
	kr, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: newKey(t)})
	require.NoError(t, err)
	return kr
}

func TestEnvelope(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kr := newKeyring(t)
	const acc, other apiary.AccountID = "acme", "globex"
	require.NoError(t, kr.CreateAccountKey(ctx, acc))
	require.NoError(t, kr.CreateAccountKey(ctx, other))
	encCtx := encrypt.Context{"job": "job_1"}
	msg := []byte("the quarterly numbers are confidential")

	env, err := encrypt.SealEnvelope(ctx, kr, acc, encCtx, msg)
	require.NoError(t, err)
	require.False(t, bytes.Contains(env, msg))
	require.Equal(t, encrypt.Context{"job": "job_1"}, encCtx, "SealEnvelope changed the caller's context")

	got, err := encrypt.OpenEnvelope(ctx, kr, acc, encCtx, env)
	require.NoError(t, err)
	require.Equal(t, msg, got)

	refused := func(name string, env []byte, acc apiary.AccountID, c encrypt.Context) {
		t.Helper()
		got, err := encrypt.OpenEnvelope(ctx, kr, acc, c, env)
		require.Error(t, err, name)
		require.Nil(t, got, name)
		require.Equal(t, apiary.KindPermanent, apiary.KindOf(err), "%s: %v", name, err)
	}
	refused("other account", env, other, encCtx)
	refused("other job", env, acc, encrypt.Context{"job": "job_2"})
	refused("empty", nil, acc, encCtx)
	refused("version", append([]byte{9}, env[1:]...), acc, encCtx)
	refused("truncated", env[:len(env)-1], acc, encCtx)
	refused("length past end", []byte{1, 0xff, 0x7f}, acc, encCtx)
	last := bytes.Clone(env)
	last[len(last)-1] ^= 1
	refused("body flipped", last, acc, encCtx)
	wrapped := bytes.Clone(env)
	wrapped[5] ^= 1
	refused("wrapped key flipped", wrapped, acc, encCtx)
	require.Less(t, env[1], byte(0x80), "a one-byte length")
	refused("length in a longer varint", append([]byte{env[0], env[1] | 0x80, 0}, env[2:]...), acc, encCtx)
}

func FuzzOpenEnvelope(f *testing.F) {
	kr, err := keyring.New(keyring.Config{Dir: f.TempDir(), RootKey: bytes.Repeat([]byte{3}, 32)})
	require.NoError(f, err)
	require.NoError(f, kr.CreateAccountKey(f.Context(), "acme"))
	env, err := encrypt.SealEnvelope(f.Context(), kr, "acme", nil, []byte("x"))
	require.NoError(f, err)
	f.Add(env)
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, env []byte) {
		pt, err := encrypt.OpenEnvelope(t.Context(), kr, "acme", nil, env)
		if err != nil {
			require.Nil(t, pt)
		}
	})
}
