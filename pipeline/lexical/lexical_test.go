package lexical_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{"The running dogs ran quickly", "run dog ran quick"},
		{"Café naïve FRANÇOIS résumés", "cafe naiv francoi resum"},
		{"ﬁle Ｆｕｌｌｗｉｄｔｈ ①", "file fullwidth 1"},                                 // compatibility forms fold
		{"X509 certificates; TLS-1.3, ZQX7731!", "x509 certif tls 1 3 zqx7731"}, // words with digits are not stemmed
		{"to be or not to be", ""},
		{"", ""},
		{"  ...---  ", ""},
		{"東京タワー and Москва", "東京タワー москва"},
		{"connection connected connecting connections", "connect connect connect connect"},
	} {
		require.Equal(t, tc.want, strings.Join(lexical.Tokens(tc.text), " "), "%q", tc.text)
	}
	long := strings.Repeat("é", 100) // two bytes each once decomposed and folded: 1 byte each
	for _, tok := range lexical.Tokens(strings.Repeat("ab", 100) + " " + long) {
		require.LessOrEqual(t, len(tok), 64)
	}
}

func key(t *testing.T, b byte) lexical.Key {
	t.Helper()
	k, err := lexical.NewKey(bytes.Repeat([]byte{b}, 32))
	require.NoError(t, err)
	return k
}

func TestDocumentCountsKeyedTerms(t *testing.T) {
	t.Parallel()
	k := key(t, 1)
	terms := k.Document("Tomatoes and tomato plants: the tomato is a plant.")
	// tomato ×3, plant ×2 ("and", "the", "is", "a" are stop words)
	require.Len(t, terms, 2)
	var total uint32
	for i, tc := range terms {
		require.LessOrEqual(t, tc.Hash, uint32(storage.MaxTermHash))
		if i > 0 {
			require.Less(t, terms[i-1].Hash, tc.Hash, "sorted, each hash once")
		}
		total += tc.Count
	}
	require.Equal(t, uint32(5), total)
	q := k.Query("tomato plant tomatoes")
	require.Len(t, q, 2, "a repeated query term comes once")
	require.ElementsMatch(t, []uint32{terms[0].Hash, terms[1].Hash}, q, "the query hashes its terms as the document does")
	require.Empty(t, k.Document("the and of"))
	require.Empty(t, k.Query("..."))

	other := key(t, 2)
	require.NotEqual(t, q, other.Query("tomato plant"), "another key hashes the same words otherwise")

	_, err := lexical.NewKey([]byte("short"))
	require.ErrorIs(t, err, apiary.ErrInvalid)
}

func TestDocumentKeepsTheMostFrequentTerms(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range storage.MaxTerms + 10 {
		b.WriteString("w")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(string(rune('a' + i/26%26)))
		b.WriteString(string(rune('a' + i/676%26)))
		b.WriteString(" ")
	}
	b.WriteString(strings.Repeat("frequent ", 5))
	terms := key(t, 3).Document(b.String())
	require.Len(t, terms, storage.MaxTerms)
	h := key(t, 3).Query("frequent")[0]
	found := false
	for _, tc := range terms {
		if tc.Hash == h {
			found = true
			require.Equal(t, uint32(5), tc.Count)
		}
	}
	require.True(t, found, "the most frequent term is kept")
}

type keysEnv struct {
	dir  string
	kr   *keyring.Keyring
	recs *records.Store
}

func newKeysEnv(t *testing.T) keysEnv {
	t.Helper()
	dir := t.TempDir()
	kr, err := keyring.New(keyring.Config{Dir: dir, RootKey: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	recs, err := records.Open(context.Background(), memkv.NewKVStore())
	require.NoError(t, err)
	for _, a := range []apiary.AccountID{"acme", "globex"} {
		require.NoError(t, kr.CreateAccountKey(context.Background(), a))
	}
	return keysEnv{dir: dir, kr: kr, recs: recs}
}

func TestKeysAreMadeOncePerAccount(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	ctx := t.Context()
	// Processes racing to make an account's first key all end up with the
	// one stored first.
	var wg sync.WaitGroup
	got := make([][]uint32, 8)
	for i := range got {
		wg.Go(func() {
			k, err := lexical.NewKeys(e.kr, e.recs, lexical.KeysConfig{}).Key(ctx, "acme")
			require.NoError(t, err)
			got[i] = k.Query("invoice")
		})
	}
	wg.Wait()
	for _, g := range got {
		require.Equal(t, got[0], g)
	}
	wrapped, err := e.recs.LexicalKey(ctx, "acme")
	require.NoError(t, err)
	require.NotEmpty(t, wrapped)

	keys := lexical.NewKeys(e.kr, e.recs, lexical.KeysConfig{CacheSize: 1})
	acme, err := keys.Key(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, got[0], acme.Query("invoice"))
	globex, err := keys.Key(ctx, "globex") // evicts acme's from a cache of one
	require.NoError(t, err)
	require.NotEqual(t, acme.Query("invoice"), globex.Query("invoice"), "the same word in two accounts")
	again, err := keys.Key(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, got[0], again.Query("invoice"))

	// The wrapped key opens only for its account and purpose.
	_, err = e.kr.Decrypt(ctx, "globex", wrapped, map[string]string{"account": "globex", "purpose": "lexical"})
	require.Error(t, err)
	_, err = e.kr.Decrypt(ctx, "acme", wrapped, map[string]string{"account": "acme", "document": "lexical"})
	require.Error(t, err)
}

func TestErasingTheAccountKeyLosesTheLexicalKey(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	ctx := t.Context()
	_, err := lexical.NewKeys(e.kr, e.recs, lexical.KeysConfig{}).Key(ctx, "acme")
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(e.dir, "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		require.NoError(t, os.Remove(f))
	}
	kr, err := keyring.New(keyring.Config{Dir: e.dir, RootKey: bytes.Repeat([]byte{7}, 32)}) // nothing cached
	require.NoError(t, err)
	_, err = lexical.NewKeys(kr, e.recs, lexical.KeysConfig{}).Key(ctx, "acme")
	require.Error(t, err, "the lexical key opened without the account's key")
	require.ErrorIs(t, err, apiary.ErrNotFound, "the local vector store drops an account on NotFound")
}

func TestDerivedKeys(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	ctx := t.Context()
	keys := lexical.NewKeys(e.kr, e.recs, lexical.KeysConfig{})
	derive := func(account apiary.AccountID, purpose string) []byte {
		t.Helper()
		k, err := keys.Key(ctx, account)
		require.NoError(t, err)
		d, err := k.Derive(purpose)
		require.NoError(t, err)
		require.Len(t, d, 32)
		return d
	}
	acme := derive("acme", "local-vectors")
	require.Equal(t, acme, derive("acme", "local-vectors"), "the same key every time")
	again, err := lexical.NewKeys(e.kr, e.recs, lexical.KeysConfig{}).Key(ctx, "acme")
	require.NoError(t, err)
	d, err := again.Derive("local-vectors")
	require.NoError(t, err)
	require.Equal(t, acme, d, "and in another process")
	require.NotEqual(t, acme, derive("globex", "local-vectors"), "another account")
	require.NotEqual(t, acme, derive("acme", "other"), "another purpose")
	byDerived, err := keys.Derived("local-vectors").Key(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, acme, byDerived, "Derived hands out the same keys")
	_, err = lexical.Key{}.Derive("local-vectors")
	require.ErrorIs(t, err, apiary.ErrInvalid)
}

// gatedKeys counts Decrypt calls and, while entered is set, says when one
// has begun and waits to be let go.
type gatedKeys struct {
	*keyring.Keyring
	decrypts         atomic.Int32
	entered, release chan struct{}
}

func (g *gatedKeys) Decrypt(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	g.decrypts.Add(1)
	if g.entered != nil {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Keyring.Decrypt(ctx, account, wrapped, encCtx)
}

// Forget drops an account's key from the cache, also when the key was
// being loaded as Forget ran (an account deleted by another process while
// this one unwrapped its key): that key is used once, not cached.
func TestForgetDropsTheKeyEvenMidLoad(t *testing.T) {
	t.Parallel()
	e := newKeysEnv(t)
	ctx := t.Context()
	g := &gatedKeys{Keyring: e.kr}
	keys := lexical.NewKeys(g, e.recs, lexical.KeysConfig{})
	key := func() {
		t.Helper()
		_, err := keys.Key(ctx, "acme")
		require.NoError(t, err)
	}
	key() // made, not unwrapped
	keys.Forget("acme")
	key()
	require.Equal(t, int32(1), g.decrypts.Load(), "unwrapped again after Forget")
	key()
	require.Equal(t, int32(1), g.decrypts.Load(), "then cached")

	keys.Forget("acme")
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	loaded := make(chan error)
	go func() {
		_, err := keys.Key(ctx, "acme")
		loaded <- err
	}()
	<-g.entered
	keys.Forget("acme") // while the key is being unwrapped
	close(g.release)
	require.NoError(t, <-loaded)
	g.entered = nil
	key()
	require.Equal(t, int32(3), g.decrypts.Load(), "the key loaded during Forget was not cached")
}
