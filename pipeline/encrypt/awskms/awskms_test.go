package awskms_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/awskms"
	"github.com/apiaryhq/apiary/pipeline/encrypt/encrypttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const endpointVar = "APIARY_TEST_KMS_ENDPOINT"

// transport counts KMS calls by operation and, while faults are queued,
// answers with them instead of reaching local-kms.
type transport struct {
	next *http.Transport

	mu     sync.Mutex
	calls  map[string]int
	faults []string // error codes to answer, one per request, in order
	always string   // error code to answer every request with, when set
	// before runs once, before the next request of its operation is sent:
	// what another process does just then.
	before map[string]func()
	// held, when set, gets each answer of operation holdOp from local-kms
	// before it is returned, which waits for release.
	holdOp        string
	held, release chan struct{}
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "TrentService.")
	tr.mu.Lock()
	tr.calls[op]++
	hook := tr.before[op]
	delete(tr.before, op)
	code := tr.always
	if code == "" && len(tr.faults) > 0 {
		code, tr.faults = tr.faults[0], tr.faults[1:]
	}
	held, release := tr.held, tr.release
	if op != tr.holdOp {
		held = nil
	}
	tr.mu.Unlock()
	if hook != nil {
		hook()
	}
	if code == "" && held != nil {
		res, err := tr.next.RoundTrip(req)
		held <- struct{}{}
		<-release
		return res, err
	}
	if code == "" {
		return tr.next.RoundTrip(req)
	}
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	status := http.StatusBadRequest
	if code == "KMSInternalException" {
		status = http.StatusInternalServerError
	}
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
		Body:       io.NopCloser(strings.NewReader(`{"__type":"` + code + `","message":"injected"}`)),
		Request:    req,
	}, nil
}

func (tr *transport) count(op string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.calls[op]
}

// beforeNext runs f once, just before the next request of op is sent.
func (tr *transport) beforeNext(op string, f func()) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.before == nil {
		tr.before = map[string]func(){}
	}
	tr.before[op] = f
}

func (tr *transport) inject(always string, faults ...string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.always, tr.faults = always, faults
}

// client returns a KMS client on local-kms with the SDK's own retries off,
// skipping the test when no local-kms is configured.
func client(t *testing.T) (*kms.Client, *transport) {
	t.Helper()
	endpoint := os.Getenv(endpointVar)
	if endpoint == "" {
		t.Skipf("%s is not set: run scripts/test-services.sh start && source .test-services/env", endpointVar)
	}
	tr := &transport{next: http.DefaultTransport.(*http.Transport).Clone(), calls: map[string]int{}}
	t.Cleanup(tr.next.CloseIdleConnections)
	awsCfg := aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:       &http.Client{Transport: tr},
		RetryMaxAttempts: 1,
	}
	return awskms.NewClient(awsCfg, endpoint), tr
}

func newProvider(t *testing.T, c *kms.Client, cfg awskms.Config) *awskms.Provider {
	t.Helper()
	cfg.Client = c
	p, err := awskms.New(cfg)
	require.NoError(t, err)
	t.Cleanup(p.Purge)
	return p
}

func newAccount(t *testing.T, p *awskms.Provider) apiary.AccountID {
	t.Helper()
	acc := apiary.AccountID(apiary.RandomID("kms_"))
	require.NoError(t, p.CreateAccountKey(t.Context(), acc))
	return acc
}

func requireKind(t *testing.T, want apiary.Kind, err error, what string) {
	t.Helper()
	require.Error(t, err, what)
	require.Equal(t, want, apiary.KindOf(err), "%s: %v", what, err)
}

func TestConformance(t *testing.T) {
	encrypttest.Run(t, func(t *testing.T) encrypt.KeyProvider {
		c, _ := client(t)
		return newProvider(t, c, awskms.Config{})
	})
}

func TestCreateAccountKey(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)

	desc, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/apiary/" + string(acc))})
	require.NoError(t, err)
	md := desc.KeyMetadata
	require.Equal(t, types.KeySpecSymmetricDefault, md.KeySpec)
	require.Equal(t, types.KeyUsageTypeEncryptDecrypt, md.KeyUsage)
	require.True(t, md.Enabled)
	rot, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: md.KeyId})
	require.NoError(t, err)
	require.True(t, rot.KeyRotationEnabled)
	tags, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: md.KeyId})
	require.NoError(t, err)
	require.Len(t, tags.Tags, 1)
	require.Equal(t, "account", aws.ToString(tags.Tags[0].TagKey))
	require.Equal(t, string(acc), aws.ToString(tags.Tags[0].TagValue))

	// Again: the alias exists, nothing is created.
	creates := tr.count("CreateKey")
	require.NoError(t, p.CreateAccountKey(ctx, acc))
	require.Equal(t, creates, tr.count("CreateKey"))
}

func TestCreateAccountKeyAcrossProviders(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	ctx := t.Context()
	// Separate providers stand for separate processes: no in-process
	// de-duplication helps them, CreateAlias settles the race.
	const n = 4
	providers := make([]*awskms.Provider, n)
	for i := range providers {
		providers[i] = newProvider(t, c, awskms.Config{})
	}
	acc := apiary.AccountID(apiary.RandomID("kms_"))
	keys := make([]encrypt.DataKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, p := range providers {
		wg.Go(func() {
			if errs[i] = p.CreateAccountKey(ctx, acc); errs[i] == nil {
				keys[i], errs[i] = p.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"})
			}
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "provider %d", i)
	}
	for i := range n {
		for j, p := range providers {
			got, err := p.Decrypt(ctx, acc, keys[i].Wrapped, encrypt.Context{"document": "d"})
			require.NoError(t, err, "key of %d opened by %d", i, j)
			require.Equal(t, keys[i].Plaintext, got)
		}
	}
}

func TestDecryptCachesDataKeys(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)
	encCtx := encrypt.Context{"document": "report.pdf"}
	dk, err := p.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)

	got, err := p.Decrypt(ctx, acc, dk.Wrapped, encCtx)
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)
	require.Equal(t, 1, tr.count("Decrypt"))
	encrypt.Wipe(got) // the caller wipes its copy...

	again, err := p.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "report.pdf"})
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, again, "...and the cache still holds the key")
	require.Equal(t, 1, tr.count("Decrypt"), "a cache hit makes no KMS call")

	// Another context is another cache entry, and KMS refuses it.
	_, err = p.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "other.pdf"})
	requireKind(t, apiary.KindPermanent, err, "wrong context after a cached decrypt")
	require.Equal(t, 2, tr.count("Decrypt"))
}

func TestCacheMaxUses(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	p := newProvider(t, c, awskms.Config{Cache: awskms.CacheConfig{MaxUses: 2}})
	ctx := t.Context()
	acc := newAccount(t, p)
	dk, err := p.GenerateDataKey(ctx, acc, nil)
	require.NoError(t, err)
	for range 6 {
		got, err := p.Decrypt(ctx, acc, dk.Wrapped, nil)
		require.NoError(t, err)
		require.Equal(t, dk.Plaintext, got)
	}
	require.Equal(t, 3, tr.count("Decrypt"), "each fetched key serves 2 decrypts")
}

func TestWrongContextRefused(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)
	dk, err := p.GenerateDataKey(ctx, acc, encrypt.Context{"document": "a", "job": "job_1"})
	require.NoError(t, err)
	for name, wrong := range map[string]encrypt.Context{
		"other document": {"document": "b", "job": "job_1"},
		"missing key":    {"document": "a"},
		"extra key":      {"document": "a", "job": "job_1", "x": "y"},
		"none":           nil,
	} {
		got, err := p.Decrypt(ctx, acc, dk.Wrapped, wrong)
		requireKind(t, apiary.KindPermanent, err, name)
		require.Nil(t, got)
	}
}

func TestOtherAccountsKeyRefused(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	a, b := newAccount(t, p), newAccount(t, p)
	dk, err := p.GenerateDataKey(ctx, a, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	// Cached for a: the cache must not hand it to b.
	_, err = p.Decrypt(ctx, a, dk.Wrapped, encrypt.Context{"document": "d"})
	require.NoError(t, err)

	got, err := p.Decrypt(ctx, b, dk.Wrapped, encrypt.Context{"document": "d"})
	requireKind(t, apiary.KindPermanent, err, "a's wrapped key under b")
	require.Nil(t, got)
	// Even with a's account in the context, b's key is asked and refuses.
	got, err = p.Decrypt(ctx, b, dk.Wrapped, encrypt.Context{"document": "d", "account": string(a)})
	requireKind(t, apiary.KindPermanent, err, "a's wrapped key under b, a's context")
	require.Nil(t, got)

	_, err = p.GenerateDataKey(ctx, apiary.AccountID(apiary.RandomID("nokey_")), nil)
	requireKind(t, apiary.KindNotFound, err, "account without a key")
}

func TestDisabledKeyStopsDecrypt(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	// Long enough for the KMS calls between caching and the cached read
	// below on a loaded machine; the last wait lasts about this long.
	const maxAge = 10 * time.Second
	reader := newProvider(t, c, awskms.Config{Cache: awskms.CacheConfig{MaxAge: maxAge}})
	operator := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, operator)
	dk, err := reader.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	_, err = reader.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	// operator also caches the key; disabling drops its own copy at once.
	_, err = operator.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "d"})
	require.NoError(t, err)

	require.NoError(t, operator.DisableAccountKey(ctx, acc))
	// Within MaxAge the reader still serves its cached copy, without KMS.
	got, err := reader.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "d"})
	require.NoError(t, err, "cached key within MaxAge")
	require.Equal(t, dk.Plaintext, got)

	_, err = operator.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "d"})
	requireKind(t, apiary.KindForbidden, err, "decrypt in the disabling provider")
	_, err = reader.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d2"})
	requireKind(t, apiary.KindForbidden, err, "generate under a disabled key")
	// The reader's cached copy lasts at most MaxAge, then KMS refuses.
	require.Eventually(t, func() bool {
		_, err := reader.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "d"})
		return apiary.KindOf(err) == apiary.KindForbidden
	}, maxAge+30*time.Second, 100*time.Millisecond)
}

func TestThrottlingRetriedThenUnavailable(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	p := newProvider(t, c, awskms.Config{Retry: awskms.RetryConfig{MaxAttempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond}})
	ctx := t.Context()
	acc := newAccount(t, p)

	// Throttled twice, then through: the caller sees success.
	before := tr.count("GenerateDataKey")
	tr.inject("", "ThrottlingException", "LimitExceededException")
	dk, err := p.GenerateDataKey(ctx, acc, nil)
	require.NoError(t, err)
	require.Len(t, dk.Plaintext, 32)
	require.Equal(t, before+3, tr.count("GenerateDataKey"))

	// Throttled for good: MaxAttempts tries, then Unavailable with a hint.
	before = tr.count("GenerateDataKey")
	tr.inject("ThrottlingException")
	_, err = p.GenerateDataKey(ctx, acc, nil)
	tr.inject("")
	requireKind(t, apiary.KindUnavailable, err, "throttled")
	delay, ok := apiary.RetryDelay(err)
	require.True(t, ok)
	require.Equal(t, 50*time.Millisecond, delay)
	require.Equal(t, before+3, tr.count("GenerateDataKey"))

	// Other faults are not retried, and keep their kinds.
	for code, want := range map[string]apiary.Kind{
		"KMSInternalException":        apiary.KindUnavailable,
		"AccessDeniedException":       apiary.KindForbidden,
		"IncorrectKeyException":       apiary.KindPermanent,
		"UnrecognizedClientException": apiary.KindUnavailable,
	} {
		before := tr.count("Decrypt")
		tr.inject(code)
		got, err := p.Decrypt(ctx, acc, dk.Wrapped, nil)
		tr.inject("")
		requireKind(t, want, err, code)
		require.Nil(t, got)
		require.Equal(t, before+1, tr.count("Decrypt"), "%s is not retried", code)
	}
}

func TestAnyAlteredByteRefused(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)
	dk, err := p.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	for i := range dk.Wrapped {
		bad := bytes.Clone(dk.Wrapped)
		bad[i] ^= 0x80
		got, err := p.Decrypt(ctx, acc, bad, encrypt.Context{"document": "d"})
		requireKind(t, apiary.KindPermanent, err, fmt.Sprintf("byte %d of %d altered", i, len(bad)))
		require.Nil(t, got)
	}
	for _, bad := range [][]byte{nil, {1}, dk.Wrapped[:len(dk.Wrapped)-1], append(bytes.Clone(dk.Wrapped), 0)} {
		got, err := p.Decrypt(ctx, acc, bad, encrypt.Context{"document": "d"})
		requireKind(t, apiary.KindPermanent, err, fmt.Sprintf("%d-byte wrapped key", len(bad)))
		require.Nil(t, got)
	}
	// The original still opens, and no refused attempt poisoned the cache.
	calls := tr.count("Decrypt")
	got, err := p.Decrypt(ctx, acc, dk.Wrapped, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)
	require.Equal(t, calls+1, tr.count("Decrypt"))
}

func TestErrorsHoldNoKeyMaterial(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)
	dk, err := p.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	bad := bytes.Clone(dk.Wrapped)
	bad[len(bad)/2] ^= 1
	_, err = p.Decrypt(ctx, acc, bad, encrypt.Context{"document": "d"})
	require.Error(t, err)
	for _, secret := range [][]byte{dk.Plaintext, dk.Wrapped} {
		require.NotContains(t, err.Error(), string(secret))
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	c := kms.New(kms.Options{Region: "us-east-1"})
	for name, cfg := range map[string]awskms.Config{
		"no client":            {},
		"prefix without alias": {Client: c, AliasPrefix: "apiary/"},
		"prefix without slash": {Client: c, AliasPrefix: "alias/apiary"},
		"aws reserved prefix":  {Client: c, AliasPrefix: "alias/aws/"},
		"negative cache":       {Client: c, Cache: awskms.CacheConfig{MaxAge: -time.Second}},
		"too many attempts":    {Client: c, Retry: awskms.RetryConfig{MaxAttempts: 100}},
		"delays inverted":      {Client: c, Retry: awskms.RetryConfig{BaseDelay: time.Second, MaxDelay: time.Millisecond}},
		"deletion too soon":    {Client: c, DeletionDays: 6},
		"deletion too late":    {Client: c, DeletionDays: 31},
	} {
		_, err := awskms.New(cfg)
		requireKind(t, apiary.KindInvalid, err, name)
	}
	_, err := awskms.New(awskms.Config{Client: c})
	require.NoError(t, err)
}

func TestAccountIDValidated(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	c := kms.New(kms.Options{Region: "us-east-1", HTTPClient: countingClient{&calls}})
	p, err := awskms.New(awskms.Config{Client: c})
	require.NoError(t, err)
	for _, acc := range []apiary.AccountID{"", "Upper", "../x", apiary.AccountID(strings.Repeat("a", 65))} {
		requireKind(t, apiary.KindInvalid, p.CreateAccountKey(t.Context(), acc), "create "+string(acc))
		_, err := p.GenerateDataKey(t.Context(), acc, nil)
		requireKind(t, apiary.KindInvalid, err, "generate "+string(acc))
		_, err = p.Decrypt(t.Context(), acc, []byte("x"), nil)
		requireKind(t, apiary.KindInvalid, err, "decrypt "+string(acc))
	}
	require.Zero(t, calls.Load(), "a bad account id never reaches KMS")
}

// countingClient fails every request; it only counts that one was made.
type countingClient struct{ n *atomic.Int32 }

func (c countingClient) Do(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, io.ErrUnexpectedEOF
}

// Forget drops an account's cached data keys at once (another process
// deleted the account): the next Decrypt asks KMS, which refuses a
// disabled key, instead of serving the cached copy until MaxAge.
func TestForgetDropsCachedDataKeys(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	reader := newProvider(t, c, awskms.Config{Cache: awskms.CacheConfig{MaxAge: time.Hour}})
	operator := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc, other := newAccount(t, operator), newAccount(t, operator)
	encCtx := encrypt.Context{"document": "d"}
	wrapped := map[apiary.AccountID][]byte{}
	for _, a := range []apiary.AccountID{acc, other} {
		dk, err := reader.GenerateDataKey(ctx, a, encCtx)
		require.NoError(t, err)
		_, err = reader.Decrypt(ctx, a, dk.Wrapped, encCtx)
		require.NoError(t, err)
		wrapped[a] = dk.Wrapped
	}
	require.NoError(t, operator.DisableAccountKey(ctx, acc))
	_, err := reader.Decrypt(ctx, acc, wrapped[acc], encCtx)
	require.NoError(t, err, "cached within MaxAge")

	reader.Forget(acc)
	_, err = reader.Decrypt(ctx, acc, wrapped[acc], encCtx)
	requireKind(t, apiary.KindForbidden, err, "decrypt after Forget")
	calls := tr.count("Decrypt")
	_, err = reader.Decrypt(ctx, other, wrapped[other], encCtx)
	require.NoError(t, err)
	require.Equal(t, calls, tr.count("Decrypt"), "another account's keys stay cached")
}

// A data key KMS unwrapped while Forget ran (the account deleted by
// another process as the call was in flight) is returned to its caller
// but not cached: it would serve the deleted account's key until MaxAge.
func TestForgetDuringDecryptIsNotCached(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	reader := newProvider(t, c, awskms.Config{Cache: awskms.CacheConfig{MaxAge: time.Hour}})
	operator := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, operator)
	encCtx := encrypt.Context{"document": "d"}
	dk, err := reader.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)

	held, release := make(chan struct{}), make(chan struct{})
	tr.mu.Lock()
	tr.holdOp, tr.held, tr.release = "Decrypt", held, release
	tr.mu.Unlock()
	done := make(chan error)
	go func() {
		_, err := reader.Decrypt(ctx, acc, dk.Wrapped, encCtx)
		done <- err
	}()
	<-held // KMS has answered; the key is not cached yet
	tr.mu.Lock()
	tr.held = nil
	tr.mu.Unlock()
	require.NoError(t, operator.DisableAccountKey(ctx, acc))
	reader.Forget(acc)
	close(release)
	require.NoError(t, <-done, "the call in flight gets its key")

	_, err = reader.Decrypt(ctx, acc, dk.Wrapped, encCtx)
	requireKind(t, apiary.KindForbidden, err, "decrypt after Forget")
}
