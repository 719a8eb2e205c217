package openai_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed/embedtest"
	"github.com/apiaryhq/apiary/pipeline/embed/openai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waits records the waits between tries instead of taking them.
type waits struct {
	mu sync.Mutex
	ds []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ds = append(w.ds, d)
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.ds...)
}

// open returns an embedder on f whose waits are recorded.
func open(t *testing.T, f *fakeServer, cfg openai.Config) (*openai.Embedder, *waits) {
	t.Helper()
	if cfg.BaseURL == "" {
		cfg.BaseURL = f.baseURL()
	}
	if cfg.APIKey == "" {
		cfg.APIKey = f.key
	}
	if f.azure {
		cfg.AzureAPIVersion = azureVersion
	}
	e, err := openai.New(t.Context(), cfg)
	require.NoError(t, err)
	w := &waits{}
	openai.SetSleep(e, w.sleep)
	return e, w
}

func rateLimited(retryAfter string) fault {
	return fault{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": retryAfter},
		body: `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`}
}

func TestConformance(t *testing.T) {
	t.Run("OpenAI", func(t *testing.T) {
		f := newFake(t)
		f.queue(rateLimited("1"))
		e, w := open(t, f, openai.Config{Model: "text-embedding-3-small", Dimensions: 256})
		t.Run("Suite", func(t *testing.T) { embedtest.Run(t, e) })
		require.Equal(t, []time.Duration{time.Second}, w.all(), "the 429's Retry-After was waited once")
	})
	t.Run("AzureOpenAI", func(t *testing.T) {
		f := newFake(t)
		f.azure = true
		e, _ := open(t, f, openai.Config{Model: "text-embedding-3-small"})
		require.Equal(t, 1536, e.Dim())
		embedtest.Run(t, e)
	})
	t.Run("OllamaUnnormalisedProbed", func(t *testing.T) {
		f := newFake(t)
		f.key, f.scale = "", 2.5
		e, err := openai.New(t.Context(), openai.Config{BaseURL: f.baseURL(), Model: "nomic-embed-text"})
		require.NoError(t, err)
		require.Equal(t, 768, e.Dim(), "probed")
		require.Equal(t, 1, f.count(), "one probe")
		embedtest.Run(t, e)
		vs, err := e.Embed(t.Context(), []string{"hello world"})
		require.NoError(t, err)
		var sum float64
		for _, x := range vs[0] {
			sum += float64(x) * float64(x)
		}
		require.InDelta(t, 1, sum, 1e-4, "normalised here")
	})
}

func TestModelAndDim(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e, _ := open(t, f, openai.Config{Model: "text-embedding-3-small", Dimensions: 512})
	require.Equal(t, "openai/text-embedding-3-small@512", e.Model())
	require.Equal(t, 512, e.Dim())
	e, _ = open(t, f, openai.Config{Model: "text-embedding-3-small"})
	require.Equal(t, "openai/text-embedding-3-small", e.Model())
	require.Equal(t, 1536, e.Dim())
	require.Zero(t, f.count(), "known sizes need no probe")
}

func TestBatches(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e, _ := open(t, f, openai.Config{Model: "text-embedding-3-small", Dimensions: 64, BatchSize: 4, MaxBatchBytes: 100})
	texts := []string{
		"one", "two", "", "three", "four", "five", // 4 non-empty, then a new batch
		strings.Repeat("x", 97), "six", // over 100 bytes with five, so five goes alone; then with six
		strings.Repeat("long ", 40), // longer than MaxBatchBytes: alone
	}
	vs, err := e.Embed(t.Context(), texts)
	require.NoError(t, err)
	require.Len(t, vs, len(texts))
	require.Equal(t, []int{4, 1, 2, 1}, f.batchSizes())
	require.Equal(t, make([]float32, 64), vs[2], "an empty text is the zero vector, not sent")
	for i, text := range texts {
		if text == "" {
			continue
		}
		one, err := e.Embed(t.Context(), []string{text})
		require.NoError(t, err)
		require.InDelta(t, 1, embedtest.Cosine(one[0], vs[i]), 1e-6, "text %d", i)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	unavailable := fault{status: http.StatusServiceUnavailable, body: `{"error":{"message":"overloaded","type":"server_error"}}`}
	tests := []struct {
		name       string
		maxRetries int // default 3
		faults     []fault
		// faultsNow, when set, gives the faults when the subtest runs: a
		// parallel subtest may start seconds after the table is built.
		faultsNow func() []fault
		wantErr   bool
		attempts  int
		check     func(t *testing.T, ws []time.Duration, err error)
	}{
		{name: "Retry-After seconds", faults: []fault{rateLimited("3")}, attempts: 2,
			check: func(t *testing.T, ws []time.Duration, _ error) {
				require.Equal(t, []time.Duration{3 * time.Second}, ws)
			}},
		{name: "Retry-After date", attempts: 2,
			faultsNow: func() []fault {
				return []fault{rateLimited(time.Now().Add(10 * time.Second).UTC().Format(http.TimeFormat))}
			},
			check: func(t *testing.T, ws []time.Duration, _ error) {
				require.Len(t, ws, 1)
				require.True(t, ws[0] > 8*time.Second && ws[0] <= 10*time.Second, "waited %v", ws[0])
			}},
		{name: "retry-after-ms", attempts: 2,
			faults: []fault{{status: http.StatusTooManyRequests, header: map[string]string{"retry-after-ms": "1500", "Retry-After": "2"}}},
			check: func(t *testing.T, ws []time.Duration, _ error) {
				require.Equal(t, []time.Duration{1500 * time.Millisecond}, ws)
			}},
		{name: "5xx backs off", faults: []fault{unavailable, unavailable, {status: http.StatusBadGateway}}, attempts: 4,
			check: func(t *testing.T, ws []time.Duration, _ error) {
				require.Len(t, ws, 3)
				for i, d := range ws {
					ceiling := 500 * time.Millisecond << i
					require.True(t, d >= ceiling/2 && d <= ceiling, "wait %d: %v", i, d)
				}
			}},
		{name: "tries are bounded", maxRetries: 2, wantErr: true, attempts: 3,
			faults: []fault{rateLimited("1"), rateLimited("1"), rateLimited("1"), rateLimited("1")},
			check: func(t *testing.T, ws []time.Duration, err error) {
				require.Len(t, ws, 2)
				require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
				d, ok := apiary.RetryDelay(err)
				require.True(t, ok)
				require.Equal(t, time.Second, d)
			}},
		{name: "a long Retry-After goes to the caller", faults: []fault{rateLimited("3600")}, wantErr: true, attempts: 1,
			check: func(t *testing.T, ws []time.Duration, err error) {
				require.Empty(t, ws)
				require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
				d, _ := apiary.RetryDelay(err)
				require.Equal(t, time.Hour, d)
			}},
		{name: "401 is not retried", faults: []fault{{status: http.StatusUnauthorized}}, wantErr: true, attempts: 1},
		{name: "400 is not retried", faults: []fault{{status: http.StatusBadRequest}}, wantErr: true, attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			retries := cmp.Or(tt.maxRetries, 3)
			e, w := open(t, f, openai.Config{Model: "text-embedding-3-small", MaxRetries: retries, MaxRetryWait: 15 * time.Second})
			faults := tt.faults
			if tt.faultsNow != nil {
				faults = tt.faultsNow()
			}
			f.queue(faults...)
			vs, err := e.Embed(t.Context(), []string{"a text"})
			if tt.wantErr {
				require.Error(t, err)
				require.Nil(t, vs)
			} else {
				require.NoError(t, err)
				require.Len(t, vs, 1)
			}
			require.Equal(t, tt.attempts, f.count(), "attempts")
			if tt.check != nil {
				tt.check(t, w.all(), err)
			}
		})
	}
}

// The service refusing Apiary's own key is an outage, not the caller's
// authentication failure, and the key appears nowhere.
func TestRefusedKeyIsAnOutage(t *testing.T) {
	t.Parallel()
	for _, azure := range []bool{false, true} {
		f := newFake(t)
		f.azure = azure
		wrong := "sk-wrong-key-THAT-MUST-NOT-LEAK"
		e, _ := open(t, f, openai.Config{Model: "text-embedding-3-small", APIKey: wrong})
		_, err := e.Embed(t.Context(), []string{"a private sentence"})
		require.Error(t, err)
		require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
		require.False(t, apiary.IsPermanent(err), "workers retry it")
		require.NotErrorIs(t, err, apiary.ErrUnauthenticated)
		require.NotErrorIs(t, err, apiary.ErrForbidden)
		require.Contains(t, err.Error(), "HTTP 401")
		requireClean(t, err, wrong, "a private sentence")
		require.Equal(t, 1, f.count(), "not retried")
	}
}

func TestRefusedInputIsInvalid(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e, _ := open(t, f, openai.Config{Model: "text-embedding-3-small"})
	secret := "confidential merger plan " + strings.Repeat("word ", maxTokens)
	_, err := e.Embed(t.Context(), []string{"fine", secret})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	require.Contains(t, err.Error(), "HTTP 400: context_length_exceeded")
	requireClean(t, err, f.key, "confidential merger plan")
	require.Equal(t, 1, f.count())
}

func TestUnusableAnswers(t *testing.T) {
	t.Parallel()
	huge := `{"data":[{"index":0,"embedding":[` + strings.Repeat("0.1,", 1<<19) + `0.1]}]}`
	tests := map[string]fault{
		"too few vectors":   {status: 200, body: `{"data":[]}`},
		"index repeated":    {status: 200, body: `{"data":[{"index":0,"embedding":[1,0]},{"index":0,"embedding":[0,1]}]}`},
		"index too large":   {status: 200, body: `{"data":[{"index":1,"embedding":[1,0]}]}`},
		"wrong dimensions":  {status: 200, body: `{"data":[{"index":0,"embedding":[1,0,0]}]}`},
		"not JSON":          {status: 200, body: `<html>`},
		"larger than bound": {status: 200, body: huge},
		"redirect":          {status: http.StatusTemporaryRedirect, header: map[string]string{"Location": "http://127.0.0.1:1/steal"}},
		"not found":         {status: http.StatusNotFound, body: `{"error":{"message":"The model does not exist","code":"model_not_found"}}`},
	}
	for name, ft := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			e, _ := open(t, f, openai.Config{Model: "text-embedding-3-small", Dimensions: 2})
			f.queue(ft)
			_, err := e.Embed(t.Context(), []string{"a text"})
			require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
			require.Equal(t, 1, f.count(), "not retried")
			requireClean(t, err, f.key, "a text")
		})
	}
}

func TestCanceledWhileWaiting(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e, err := openai.New(t.Context(), openai.Config{BaseURL: f.baseURL(), APIKey: f.key, Model: "text-embedding-3-small"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	openai.SetSleep(e, func(context.Context, time.Duration) error { cancel(); return context.Canceled })
	f.queue(rateLimited("1"))
	_, err = e.Embed(ctx, []string{"a text"})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, f.count())
}

func TestUnreachableIsAnOutage(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	url := f.baseURL()
	f.Close()
	_, err := openai.New(t.Context(), openai.Config{BaseURL: url, Model: "nomic-embed-text", MaxRetries: -1})
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
	require.ErrorContains(t, err, "probe the vector size")
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg  openai.Config
		want string
	}{
		{openai.Config{Model: "m"}, ""},
		{openai.Config{}, "Model is required"},
		{openai.Config{Model: "m", BaseURL: "ftp://x"}, "BaseURL must be an http or https URL"},
		{openai.Config{Model: "m", BaseURL: "https://user:pw@x/v1"}, "must not hold credentials"},
		{openai.Config{Model: "m", BaseURL: "https://x/v1?key=k"}, "no query"},
		{openai.Config{Model: "m", Dimensions: -1}, "Dimensions must be"},
		{openai.Config{Model: "m", BatchSize: 5000}, "BatchSize must be"},
		{openai.Config{Model: "m", MaxRetries: -2}, "MaxRetries must be"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.want == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorContains(t, err, tt.want)
		_, err = openai.New(t.Context(), tt.cfg)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	}
	cfg := openai.Config{Model: "m", APIKey: testKey}
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		require.NotContains(t, s, testKey)
		require.Contains(t, s, "[redacted]")
	}
}

// requireClean checks that neither err's text nor its caller-safe message
// holds any of secrets.
func requireClean(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		require.NotContains(t, err.Error(), s)
		require.NotContains(t, apiary.Message(err), s)
	}
}
