package encrypt_test

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, encrypt.KeySize)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	aad := encrypt.AAD("acc", "doc", "chunk")
	for _, pt := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("apiary "), 1000)} {
		sealed, err := encrypt.Seal(key, pt, aad)
		require.NoError(t, err)
		require.Len(t, sealed, len(pt)+encrypt.Overhead)
		if len(pt) > 4 {
			require.False(t, bytes.Contains(sealed, pt))
		}
		got, err := encrypt.Open(key, sealed, aad)
		require.NoError(t, err)
		require.Equal(t, len(pt), len(got))
		require.True(t, bytes.Equal(pt, got))
	}
}

func TestSealNoncesDiffer(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	a, err := encrypt.Seal(key, []byte("same"), nil)
	require.NoError(t, err)
	b, err := encrypt.Seal(key, []byte("same"), nil)
	require.NoError(t, err)
	require.NotEqual(t, a, b)
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	aad := encrypt.AAD("acc", "doc")
	sealed, err := encrypt.Seal(key, []byte("secret text"), aad)
	require.NoError(t, err)

	flip := func(i int) []byte { b := bytes.Clone(sealed); b[i] ^= 1; return b }
	cases := map[string]struct {
		key, sealed, aad []byte
	}{
		"wrong key":        {newKey(t), sealed, aad},
		"wrong aad":        {key, sealed, encrypt.AAD("acc", "other")},
		"no aad":           {key, sealed, nil},
		"version flipped":  {key, flip(0), aad},
		"nonce flipped":    {key, flip(3), aad},
		"body flipped":     {key, flip(len(sealed) - 1), aad},
		"truncated":        {key, sealed[:len(sealed)-1], aad},
		"too short":        {key, sealed[:5], aad},
		"empty":            {key, nil, aad},
		"appended garbage": {key, append(bytes.Clone(sealed), 0), aad},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := encrypt.Open(c.key, c.sealed, c.aad)
			require.Nil(t, got)
			require.Error(t, err)
			require.Equal(t, apiary.KindPermanent, apiary.KindOf(err))
			require.Equal(t, "decrypt: authentication failed", err.Error())
		})
	}
}

func TestBadKeySize(t *testing.T) {
	t.Parallel()
	_, err := encrypt.Seal(make([]byte, 16), []byte("x"), nil)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = encrypt.Open(make([]byte, 31), make([]byte, 64), nil)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestAADUnambiguous(t *testing.T) {
	t.Parallel()
	seen := map[string][]string{}
	for _, parts := range [][]string{
		{"ab", "c"}, {"a", "bc"}, {"abc"}, {"abc", ""}, {"", "abc"}, {}, {""}, {"", ""},
		{"a|b"}, {"a", "b"},
	} {
		k := string(encrypt.AAD(parts...))
		prev, dup := seen[k]
		require.False(t, dup, "%q and %q encode the same", prev, parts)
		seen[k] = parts
	}
}

func TestContextCanonical(t *testing.T) {
	t.Parallel()
	a := encrypt.Context{"account": "a", "document": "d", "job": "j"}
	b := encrypt.Context{"job": "j", "document": "d", "account": "a"}
	for range 20 { // map iteration order is random: repeat to catch order dependence
		require.Equal(t, a.Canonical(), b.Canonical())
	}
	require.NotEqual(t, a.Canonical(), encrypt.Context{"account": "a", "document": "dj"}.Canonical())
	require.NotEqual(t, encrypt.Context{"a": "bc"}.Canonical(), encrypt.Context{"ab": "c"}.Canonical())
}

func TestWipe(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	encrypt.Wipe(k)
	require.Equal(t, make([]byte, encrypt.KeySize), k)
	encrypt.Wipe(nil)
}

func FuzzOpen(f *testing.F) {
	key := bytes.Repeat([]byte{7}, encrypt.KeySize)
	good, err := encrypt.Seal(key, []byte("hello"), []byte("aad"))
	require.NoError(f, err)
	f.Add(good, []byte("aad"))
	f.Add([]byte{1}, []byte(nil))
	f.Add([]byte{}, []byte("x"))
	f.Add(bytes.Repeat([]byte{1}, 40), []byte(nil))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := encrypt.Open(key, sealed, aad)
		if err != nil {
			require.Nil(t, pt)
			require.Equal(t, apiary.KindPermanent, apiary.KindOf(err))
			return
		}
		// Only a genuine seal opens (the fuzzer cannot forge a GCM tag), and
		// only with its own aad.
		require.Equal(t, []byte("hello"), pt)
		require.Equal(t, []byte("aad"), aad)
	})
}

func BenchmarkSeal(b *testing.B) {
	key := newKey(b)
	chunk := bytes.Repeat([]byte("a"), 1024)
	aad := encrypt.AAD("account", "document", "chunk")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encrypt.Seal(key, chunk, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	key := newKey(b)
	chunk := bytes.Repeat([]byte("a"), 1024)
	aad := encrypt.AAD("account", "document", "chunk")
	sealed, err := encrypt.Seal(key, chunk, aad)
	require.NoError(b, err)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encrypt.Open(key, sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}
