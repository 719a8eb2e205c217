package kek_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/awskms"
	"github.com/apiaryhq/apiary/pipeline/encrypt/encrypttest"
	"github.com/apiaryhq/apiary/pipeline/encrypt/kek"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const kmsEndpointVar = "APIARY_TEST_KMS_ENDPOINT"

func newKeyring(tb testing.TB) encrypt.KeyProvider {
	tb.Helper()
	root := make([]byte, 32)
	_, err := rand.Read(root)
	require.NoError(tb, err)
	kr, err := keyring.New(keyring.Config{Dir: tb.TempDir(), RootKey: root})
	require.NoError(tb, err)
	return kr
}

// newKMS is an awskms provider on local-kms, skipping without one.
func newKMS(tb testing.TB) encrypt.KeyProvider {
	tb.Helper()
	endpoint := os.Getenv(kmsEndpointVar)
	if endpoint == "" {
		tb.Skipf("%s is not set: run scripts/test-services.sh start && source .test-services/env", kmsEndpointVar)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tb.Cleanup(tr.CloseIdleConnections)
	p, err := awskms.New(awskms.Config{Client: awskms.NewClient(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:  &http.Client{Transport: tr},
	}, endpoint)})
	require.NoError(tb, err)
	tb.Cleanup(p.Purge)
	return p
}

func newRecords(tb testing.TB) *records.Store {
	tb.Helper()
	s, err := records.Open(context.Background(), memkv.NewKVStore())
	require.NoError(tb, err)
	return s
}

func decorate(tb testing.TB, base encrypt.KeyProvider, store kek.Store, cfg kek.Config) *kek.Provider {
	tb.Helper()
	p, err := kek.New(base, store, cfg)
	require.NoError(tb, err)
	return p
}

func TestConformanceOverKeyring(t *testing.T) {
	encrypttest.Run(t, func(t *testing.T) encrypt.KeyProvider {
		return decorate(t, newKeyring(t), newRecords(t), kek.Config{})
	})
}

func TestConformanceOverKMS(t *testing.T) {
	encrypttest.Run(t, func(t *testing.T) encrypt.KeyProvider {
		return decorate(t, newKMS(t), newRecords(t), kek.Config{})
	})
}

func docCtx(doc string) encrypt.Context { return encrypt.Context{"document": doc} }

// The account key provider is called once per KEK, not once per document,
// and a KEK is replaced after MaxUses data keys.
func TestProviderCalledOncePerKEK(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kr, store := newKeyring(t), newRecords(t)
	base := kek.Count(kr)
	p := decorate(t, base, store, kek.Config{MaxUses: 100})
	acc := apiary.AccountID("acme")
	require.NoError(t, p.CreateAccountKey(ctx, acc))
	wrapped := make([][]byte, 250)
	for i := range wrapped {
		dk, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
		require.NoError(t, err)
		wrapped[i] = dk.Wrapped
	}
	require.Equal(t, int64(3), base.Calls(), "250 data keys with at most 100 per KEK: 3 KEKs")
	for i, w := range wrapped {
		_, err := p.Decrypt(ctx, acc, w, docCtx("d"))
		require.NoError(t, err, "data key %d", i)
	}
	require.Equal(t, int64(5), base.Calls(), "the two retired KEKs are opened once each, the current one is in memory")

	// Another process on the same records opens each KEK once.
	other := kek.Count(kr)
	q := decorate(t, other, store, kek.Config{})
	for i, w := range wrapped {
		_, err := q.Decrypt(ctx, acc, w, docCtx("d"))
		require.NoError(t, err, "data key %d in another process", i)
	}
	require.Equal(t, int64(3), other.Calls())
}

// Erasing an account drops its KEKs from memory and from the records:
// nothing wrapped under them opens again, not even in a process that had
// them cached, and another account is untouched.
func TestEraseAccountKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kr, store := newKeyring(t), newRecords(t)
	p := decorate(t, kr, store, kek.Config{})
	acme, globex := apiary.AccountID("acme"), apiary.AccountID("globex")
	var keep encrypt.DataKey
	var gone []encrypt.DataKey
	for _, acc := range []apiary.AccountID{acme, globex} {
		require.NoError(t, p.CreateAccountKey(ctx, acc))
		dk, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
		require.NoError(t, err)
		if acc == acme {
			gone = append(gone, dk)
		} else {
			keep = dk
		}
	}
	err := p.EraseAccountKey(ctx, acme)
	if _, canErase := kr.(encrypt.Eraser); !canErase {
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a base that cannot erase is said so")
	} else {
		require.NoError(t, err)
	}
	ids, err := store.KEKIDs(ctx, acme)
	require.NoError(t, err)
	require.Empty(t, ids)
	for _, dk := range gone {
		got, err := p.Decrypt(ctx, acme, dk.Wrapped, docCtx("d"))
		require.Error(t, err)
		require.Nil(t, got)
	}
	requireOpens(t, p, globex, keep, "d")
}

// A data key wrapped directly by the account key provider, before the
// decorator was turned on, still opens through it.
func TestDirectWrappedKeysStillOpen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := newKeyring(t)
	acc := apiary.AccountID("acme")
	require.NoError(t, base.CreateAccountKey(ctx, acc))
	old, err := base.GenerateDataKey(ctx, acc, docCtx("d"))
	require.NoError(t, err)
	env, err := encrypt.SealEnvelope(ctx, base, acc, encrypt.Context{"job": "j"}, []byte("old upload"))
	require.NoError(t, err)

	p := decorate(t, base, newRecords(t), kek.Config{})
	requireOpens(t, p, acc, old, "d")
	body, err := encrypt.OpenEnvelope(ctx, p, acc, encrypt.Context{"job": "j"}, env)
	require.NoError(t, err)
	require.Equal(t, []byte("old upload"), body)

	// New keys are in the KEK format, which the base provider alone cannot open.
	dk, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
	require.NoError(t, err)
	require.NotEqual(t, old.Wrapped[0], dk.Wrapped[0])
	_, err = base.Decrypt(ctx, acc, dk.Wrapped, docCtx("d"))
	require.Error(t, err)
}

// A KEK past MaxAge is dropped from memory and opened again from its
// record: it keeps wrapping new data keys until Lifetime, so a busy account
// does not pile up a KEK every MaxAge. Past Lifetime a new one is made, and
// the old one still opens what it wrapped.
func TestKEKMaxAgeAndLifetime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  kek.Config
		keks int
	}{
		{"past MaxAge: the same KEK opened again", kek.Config{MaxAge: time.Nanosecond}, 1},
		{"past Lifetime: a new KEK", kek.Config{Lifetime: time.Nanosecond}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			base, store := kek.Count(newKeyring(t)), newRecords(t)
			p := decorate(t, base, store, tc.cfg)
			acc := apiary.AccountID("acme")
			require.NoError(t, p.CreateAccountKey(ctx, acc))
			a, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
			require.NoError(t, err)
			b, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
			require.NoError(t, err)
			require.Equal(t, int64(2), base.Calls(), "one call to make the first KEK, one to open it again or make the next")
			ids, err := store.KEKIDs(ctx, acc)
			require.NoError(t, err)
			require.Len(t, ids, tc.keks)
			for _, dk := range []encrypt.DataKey{a, b} {
				requireOpens(t, p, acc, dk, "d")
			}
		})
	}
}

// The KEK record holds the KEK only wrapped; the wrapped data key holds
// neither the data key nor the KEK.
func TestNoPlaintextKeysStored(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := newRecords(t)
	base := newKeyring(t)
	p := decorate(t, base, store, kek.Config{})
	acc := apiary.AccountID("acme")
	require.NoError(t, p.CreateAccountKey(ctx, acc))
	dk, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
	require.NoError(t, err)
	ids, err := store.KEKIDs(ctx, acc)
	require.NoError(t, err)
	require.Len(t, ids, 1)
	wrappedKEK, err := store.KEK(ctx, acc, ids[0])
	require.NoError(t, err)
	kekPlain, err := base.Decrypt(ctx, acc, wrappedKEK, encrypt.Context{"purpose": "kek", "kek": ids[0]})
	require.NoError(t, err)
	require.False(t, bytes.Contains(wrappedKEK, kekPlain))
	require.False(t, bytes.Contains(dk.Wrapped, kekPlain))
	require.False(t, bytes.Contains(dk.Wrapped, dk.Plaintext))
}

// Rotation moves the account to a new key version and re-wraps its KEKs:
// every data key keeps opening, with no re-embedding and no change to the
// data keys, and once the old version is gone only what was re-wrapped opens.
func TestRotateAccountKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	root := make([]byte, 32)
	_, err := rand.Read(root)
	require.NoError(t, err)
	kr, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	store := newRecords(t)
	p := decorate(t, kr, store, kek.Config{})
	acc := apiary.AccountID("acme")
	require.NoError(t, p.CreateAccountKey(ctx, acc))
	direct, err := kr.GenerateDataKey(ctx, acc, docCtx("old")) // from before KEKs were on
	require.NoError(t, err)
	dk, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
	require.NoError(t, err)
	ids, err := store.KEKIDs(ctx, acc)
	require.NoError(t, err)
	require.Len(t, ids, 1)
	before, err := store.KEK(ctx, acc, ids[0])
	require.NoError(t, err)

	v, err := p.RotateAccountKey(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, 2, v)
	after, err := store.KEK(ctx, acc, ids[0])
	require.NoError(t, err)
	require.NotEqual(t, before, after, "the KEK record is re-wrapped")

	moved, err := p.Rewrap(ctx, acc, direct.Wrapped, docCtx("old"))
	require.NoError(t, err)
	same, err := p.Rewrap(ctx, acc, dk.Wrapped, docCtx("d"))
	require.NoError(t, err)
	require.Equal(t, dk.Wrapped, same, "a data key under a KEK follows its KEK")

	require.Equal(t, byte(2), after[0], "the KEK is wrapped by version 2 (the keyring's versioned format)")
	require.Equal(t, byte(2), moved[0], "the direct data key is re-wrapped by version 2")

	// A fresh process opens everything; new KEKs are made under version 2.
	kr2, err := keyring.New(keyring.Config{Dir: dir, RootKey: root})
	require.NoError(t, err)
	q := decorate(t, kr2, store, kek.Config{})
	for _, c := range []struct {
		wrapped, plain []byte
		doc            string
	}{{dk.Wrapped, dk.Plaintext, "d"}, {moved, direct.Plaintext, "old"}, {direct.Wrapped, direct.Plaintext, "old"}} {
		got, err := q.Decrypt(ctx, acc, c.wrapped, docCtx(c.doc))
		require.NoError(t, err)
		require.Equal(t, c.plain, got)
	}

	// Without key versions below, rotation says so.
	plain := decorate(t, kek.Count(noRotation{kr}), newRecords(t), kek.Config{})
	_, err = plain.RotateAccountKey(ctx, acc)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

// noRotation hides a provider's key versions.
type noRotation struct{ encrypt.KeyProvider }

// requireOpens checks that kp opens dk of acc's document doc.
func requireOpens(t *testing.T, kp encrypt.KeyProvider, acc apiary.AccountID, dk encrypt.DataKey, doc string) {
	t.Helper()
	got, err := kp.Decrypt(t.Context(), acc, dk.Wrapped, docCtx(doc))
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)
}

// Forget drops an account's KEKs from memory and nothing else: the next
// use opens them again through the base provider (one call), and they
// still open; the other accounts' stay in memory.
func TestForget(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := kek.Count(newKeyring(t))
	p := decorate(t, base, newRecords(t), kek.Config{})
	acme, globex := apiary.AccountID("acme"), apiary.AccountID("globex")
	keys := map[apiary.AccountID]encrypt.DataKey{}
	for _, acc := range []apiary.AccountID{acme, globex} {
		require.NoError(t, p.CreateAccountKey(ctx, acc))
		dk, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
		require.NoError(t, err)
		keys[acc] = dk
	}
	calls := base.Calls()
	p.Forget(acme)
	p.Forget("nobody")
	requireOpens(t, p, globex, keys[globex], "d")
	require.Equal(t, calls, base.Calls(), "another account's KEK stays in memory")
	requireOpens(t, p, acme, keys[acme], "d")
	require.Equal(t, calls+1, base.Calls(), "the forgotten KEK is opened again")
	requireOpens(t, p, acme, keys[acme], "d")
	require.Equal(t, calls+1, base.Calls(), "and kept again")
}

// The newest key version is looked up twice per KEK made (before, and once
// it is stored), never per data key; a Counter counts those lookups, which
// reach KMS (DescribeKey) like the calls it counts.
func TestVersionLookupsAreCounted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := kek.Count(newKeyring(t))
	p := decorate(t, base, newRecords(t), kek.Config{})
	acc := apiary.AccountID("acme")
	require.NoError(t, p.CreateAccountKey(ctx, acc))
	for range 10 {
		_, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
		require.NoError(t, err)
	}
	require.Equal(t, int64(1), base.Calls(), "one KEK")
	require.Equal(t, int64(2), base.Lookups(), "its version looked up before it is made and once it is stored")
}
