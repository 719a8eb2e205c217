package bedrock_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/bedrock"
	"github.com/apiaryhq/apiary/pipeline/embed/embedtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	titan  = "amazon.titan-embed-text-v2:0"
	cohere = "cohere.embed-english-v3"
)

// awsConfig is the shared AWS configuration cmd/apiary would load, with the
// given key pair and a retryer that does not wait between tries.
func awsConfig(f *fakeBedrock, access, secret string) aws.Config {
	return aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, ""),
		HTTPClient:  f.Client(),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			})
		},
	}
}

func open(t *testing.T, f *fakeBedrock, cfg bedrock.Config) *bedrock.Embedder {
	t.Helper()
	if cfg.Client == nil {
		cfg.Client = bedrock.NewClient(awsConfig(f, accessKey, secretKey), f.URL)
	}
	e, err := bedrock.New(cfg)
	require.NoError(t, err)
	return e
}

func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  bedrock.Config
	}{
		{"TitanV2", bedrock.Config{}},
		{"TitanV2-256", bedrock.Config{Model: titan, Dimensions: 256, Concurrency: 2}},
		{"CohereEnglishV3", bedrock.Config{Model: cohere}},
		{"CohereMultilingualV3", bedrock.Config{Model: "cohere.embed-multilingual-v3"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.queue(fault{code: "ThrottlingException", msg: "Too many requests, please wait before trying again."})
			e := open(t, f, tt.cfg)
			t.Run("Suite", func(t *testing.T) { embedtest.Run(t, e) })
		})
	}
}

func TestModelAndDim(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	for _, tt := range []struct {
		cfg   bedrock.Config
		model string
		dim   int
	}{
		{bedrock.Config{}, "bedrock/amazon.titan-embed-text-v2:0@1024", 1024},
		{bedrock.Config{Model: titan, Dimensions: 512}, "bedrock/amazon.titan-embed-text-v2:0@512", 512},
		{bedrock.Config{Model: cohere}, "bedrock/cohere.embed-english-v3@1024", 1024},
	} {
		e := open(t, f, tt.cfg)
		require.Equal(t, tt.model, e.Model())
		require.Equal(t, tt.dim, e.Dim())
	}
	require.Zero(t, f.count(), "New makes no call")
}

func TestCohereQueriesAreQueries(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e := open(t, f, bedrock.Config{Model: cohere})
	text := "when is the steel invoice due"
	q, err := embed.Query(t.Context(), e, text)
	require.NoError(t, err)
	docs, err := e.Embed(t.Context(), []string{text})
	require.NoError(t, err)
	require.Equal(t, []string{"search_query", "search_document"}, f.types())
	c := embedtest.Cosine(q, docs[0])
	require.Less(t, c, 0.999, "a query is embedded differently from a document")
	require.Greater(t, c, 0.5)
	var sum float64
	for _, x := range q {
		sum += float64(x) * float64(x)
	}
	require.InDelta(t, 1, sum, 1e-4, "normalised here: Cohere's vectors are not")
}

func TestCohereFloatsShape(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.floatsOnly = true
	e := open(t, f, bedrock.Config{Model: cohere})
	vs, err := e.Embed(t.Context(), []string{"a", "b"})
	require.NoError(t, err)
	require.Len(t, vs, 2)
	require.Len(t, vs[1], 1024)
}

func TestBatchesAndLimits(t *testing.T) {
	t.Parallel()
	texts := make([]string, 200)
	for i := range texts {
		texts[i] = strings.Repeat("word ", i%7+1)
	}
	texts[5] = ""
	texts[7] = strings.Repeat("é", 3000) // over Cohere's 2,048 characters: cut, not refused

	f := newFake(t)
	e := open(t, f, bedrock.Config{Model: cohere})
	vs, err := e.Embed(t.Context(), texts)
	require.NoError(t, err)
	require.Len(t, vs, len(texts))
	require.Equal(t, 3, f.count(), "199 texts in calls of at most 96")
	require.Equal(t, make([]float32, 1024), vs[5], "an empty text is the zero vector")

	f = newFake(t)
	e = open(t, f, bedrock.Config{Model: titan, Concurrency: 3})
	long := strings.Repeat("x", 60_000) // over Titan's 50,000 characters: cut
	vs, err = e.Embed(t.Context(), append(texts[:20:20], long))
	require.NoError(t, err)
	require.Len(t, vs, 21)
	require.Equal(t, 20, f.count(), "one call per non-empty text")
	require.LessOrEqual(t, f.maxInFlight(), 3, "at most Concurrency calls at once")
}

func TestThrottlingIsRetried(t *testing.T) {
	t.Parallel()
	throttled := fault{code: "ThrottlingException", msg: "Too many requests"}

	f := newFake(t)
	e := open(t, f, bedrock.Config{Model: cohere, MaxAttempts: 3})
	f.queue(throttled, fault{code: "ServiceUnavailableException", msg: "busy"})
	_, err := e.Embed(t.Context(), []string{"a text"})
	require.NoError(t, err)
	require.Equal(t, 3, f.count(), "two retries")

	f = newFake(t)
	e = open(t, f, bedrock.Config{Model: cohere, MaxAttempts: 3})
	f.queue(throttled, throttled, throttled, throttled)
	_, err = e.Embed(t.Context(), []string{"a text"})
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
	require.Equal(t, 3, f.count(), "MaxAttempts tries in all")
	d, ok := apiary.RetryDelay(err)
	require.True(t, ok)
	require.Positive(t, d)
	require.Contains(t, err.Error(), "ThrottlingException (HTTP 429")
}

// AWS refusing Apiary's own key or permissions is an outage, not the
// caller's authentication failure, and the secret appears nowhere.
func TestRefusedCredentialsAreAnOutage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, access, secret string
		denied               bool
		code                 string
	}{
		{"wrong secret", accessKey, "not-the-secret-SECRET-SECRET-SECRET", false, "InvalidSignatureException"},
		{"unknown key", "AKIAUNKNOWN000000000", secretKey, false, "UnrecognizedClientException"},
		{"no permission", accessKey, secretKey, true, "AccessDeniedException"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.denied = tt.denied
			e := open(t, f, bedrock.Config{Model: cohere, Client: bedrock.NewClient(awsConfig(f, tt.access, tt.secret), f.URL)})
			_, err := e.Embed(t.Context(), []string{"a private sentence"})
			require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
			require.False(t, apiary.IsPermanent(err))
			require.NotErrorIs(t, err, apiary.ErrUnauthenticated)
			require.NotErrorIs(t, err, apiary.ErrForbidden)
			require.Contains(t, err.Error(), tt.code)
			requireClean(t, err, tt.secret, secretKey, "a private sentence")
			require.Equal(t, 1, f.count(), "not retried")
		})
	}
}

func TestValidationIsInvalid(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e := open(t, f, bedrock.Config{})
	f.queue(fault{code: "ValidationException", msg: "Malformed input request: %s"})
	_, err := e.Embed(t.Context(), []string{"confidential merger plan"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	require.Contains(t, err.Error(), "ValidationException (HTTP 400, request id req-0001)")
	requireClean(t, err, secretKey, "confidential merger plan")
	require.Equal(t, 1, f.count())
}

func TestUnusableAnswers(t *testing.T) {
	t.Parallel()
	huge := `{"embedding":[` + strings.Repeat("0.1,", 1<<19) + `0.1]}`
	for name, ft := range map[string]fault{
		"wrong dimensions":  {body: `{"embedding":[1,0,0]}`},
		"no vector":         {body: `{}`},
		"not JSON":          {body: `<html>`},
		"larger than bound": {body: huge},
		"unknown model":     {code: "ResourceNotFoundException", msg: "no such model"},
		"model failed":      {code: "ModelErrorException", msg: "failed on %s"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			e := open(t, f, bedrock.Config{Model: titan, MaxAttempts: 1})
			f.queue(ft)
			_, err := e.Embed(t.Context(), []string{"a private sentence"})
			require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
			requireClean(t, err, secretKey, "a private sentence")
		})
	}
}

func TestCanceled(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e := open(t, f, bedrock.Config{})
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(context.Canceled)
	_, err := e.Embed(ctx, []string{"a"})
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, f.count())
}

func TestConfig(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	client := bedrock.NewClient(awsConfig(f, accessKey, secretKey), f.URL)
	for _, tt := range []struct {
		cfg  bedrock.Config
		want string
	}{
		{bedrock.Config{Client: client}, ""},
		{bedrock.Config{Client: client, Model: "us.cohere.embed-multilingual-v3"}, ""},
		{bedrock.Config{}, "Client is required"},
		{bedrock.Config{Client: client, Model: "amazon.titan-embed-text-v1"}, "use amazon.titan-embed-text-v2:0, cohere.embed-english-v3 or cohere.embed-multilingual-v3"},
		{bedrock.Config{Client: client, Dimensions: 768}, "offers 1024, 512, 256 dimensions, not 768"},
		{bedrock.Config{Client: client, Model: cohere, Dimensions: 512}, "offers 1024 dimensions, not 512"},
		{bedrock.Config{Client: client, Concurrency: 100}, "Concurrency must be"},
		{bedrock.Config{Client: client, MaxAttempts: -1}, "MaxAttempts must be"},
	} {
		err := tt.cfg.Validate()
		if tt.want == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorContains(t, err, tt.want)
		_, err = bedrock.New(tt.cfg)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
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
