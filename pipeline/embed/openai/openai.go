// Package openai is the embedder on an OpenAI-compatible embeddings
// endpoint: OpenAI itself, Azure OpenAI, and the servers that speak the same
// API (vLLM, Hugging Face TEI, Ollama, LiteLLM).
//
// Each request is POST {BaseURL}/embeddings with
// {"model", "input": [...], "encoding_format": "float"} and "dimensions"
// when Config.Dimensions is set. Texts go in batches of at most BatchSize
// texts and MaxBatchBytes bytes (a token is at least one byte, so a byte
// bound is a token bound), one batch at a time; the vectors come back in
// input order whatever order the service lists them in ("index"), and are
// L2-normalised when the service has not done so. An empty text gets the
// zero vector without a request (the API refuses empty input).
//
// Dim is Config.Dimensions when set, else the known size of an OpenAI
// model (text-embedding-3-small, -3-large, ada-002), else the length of the
// vector the service returns for a fixed probe text at New: New then needs
// the service to answer.
//
// Failures, as apiary kinds. 429, 408 and 5xx answers and transport errors
// are retried, MaxRetries times at most, after the service's Retry-After
// (seconds or an HTTP date; Azure's retry-after-ms too) or else a jittered
// exponential backoff; a Retry-After longer than MaxRetryWait is not waited
// for here but returned as the error's RetryAfter, so the job is retried
// later. What is left is KindUnavailable, and so is the service refusing
// our own API key (401, 403), a missing model or endpoint (404) and an
// unusable answer: the caller's request is fine, Apiary's dependency is
// not. 400 and 422 are KindInvalid, 413 KindTooLarge. Messages carry the
// HTTP status and the service's error type or code, never the service's
// message (which may quote the input, or part of the key), the input text
// or the API key.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed"
)

var _ embed.Embedder = (*Embedder)(nil)

// Defaults.
const (
	DefaultBaseURL       = "https://api.openai.com/v1"
	DefaultBatchSize     = 96
	DefaultMaxBatchBytes = 256 << 10 // below OpenAI's 300,000 tokens per request
	DefaultTimeout       = 60 * time.Second
	DefaultMaxRetries    = 4
	DefaultMaxRetryWait  = 20 * time.Second
)

// knownDims are the native sizes of OpenAI's own models, so that New needs
// no probe for them.
var knownDims = map[string]int{
	"text-embedding-3-small": 1536,
	"text-embedding-3-large": 3072,
	"text-embedding-ada-002": 1536,
}

// maxDim bounds the vector size a response may claim (and, before Dim is
// known, sizes the response bound).
const maxDim = 16384

// probeText is embedded once at New when Dim is otherwise unknown.
const probeText = "Apiary asks for the size of this model's vectors."

// backoffBase is the first backoff without a Retry-After; it doubles with
// each retry, up to MaxRetryWait.
const backoffBase = 500 * time.Millisecond

// Config configures the embedder. Model is required.
type Config struct {
	// BaseURL is the API root that /embeddings is appended to. Default
	// DefaultBaseURL. For Azure OpenAI, the deployment's URL:
	// https://{resource}.openai.azure.com/openai/deployments/{deployment}.
	BaseURL string
	// Model is the model name sent with every request, and part of Model().
	Model string
	// Dimensions, when set, is sent with every request (models that can
	// shorten their vectors, such as text-embedding-3-*) and is Dim.
	Dimensions int
	// APIKey is sent as "Authorization: Bearer" (or as "api-key" for
	// Azure). Optional for servers without authentication. Never logged or
	// put in an error.
	APIKey string
	// AzureAPIVersion, when set, speaks Azure OpenAI: the key goes in the
	// api-key header and ?api-version= is added to the URL.
	AzureAPIVersion string
	// BatchSize is the most texts in one request. Default 96.
	BatchSize int
	// MaxBatchBytes is the most text bytes in one request (a single longer
	// text still goes, alone). Default 256 KiB.
	MaxBatchBytes int
	// Timeout bounds one request. Default 60 s.
	Timeout time.Duration
	// MaxRetries is how many times a failed request is retried. Default 4;
	// -1 for none.
	MaxRetries int
	// MaxRetryWait caps one wait between tries. Default 20 s.
	MaxRetryWait time.Duration
	// HTTPClient sends the requests (its redirects are refused, so that the
	// key never follows one). Default: a client on http.DefaultTransport.
	HTTPClient *http.Client
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.MaxRetryWait == 0 {
		c.MaxRetryWait = DefaultMaxRetryWait
	}
}

// Validate reports every problem with c once defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	u, err := url.Parse(c.BaseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, errors.New("openai: BaseURL must be an http or https URL"))
	case u.User != nil:
		errs = append(errs, errors.New("openai: BaseURL must not hold credentials: use APIKey"))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, errors.New("openai: BaseURL must have no query or fragment"))
	}
	if strings.TrimSpace(c.Model) == "" {
		errs = append(errs, errors.New("openai: Model is required"))
	}
	if c.Dimensions < 0 || c.Dimensions > maxDim {
		errs = append(errs, fmt.Errorf("openai: Dimensions must be from 0 (the model's own) to %d, got %d", maxDim, c.Dimensions))
	}
	if c.BatchSize < 1 || c.BatchSize > 2048 {
		errs = append(errs, fmt.Errorf("openai: BatchSize must be from 1 to 2048, got %d", c.BatchSize))
	}
	if c.MaxBatchBytes < 1 {
		errs = append(errs, fmt.Errorf("openai: MaxBatchBytes must be positive, got %d", c.MaxBatchBytes))
	}
	if c.Timeout < 0 || c.MaxRetryWait < 0 {
		errs = append(errs, errors.New("openai: Timeout and MaxRetryWait must not be negative"))
	}
	if c.MaxRetries < -1 || c.MaxRetries > 20 {
		errs = append(errs, fmt.Errorf("openai: MaxRetries must be from -1 (none) to 20, got %d", c.MaxRetries))
	}
	return errors.Join(errs...)
}

// String prints c with the API key redacted.
func (c Config) String() string {
	if c.APIKey != "" {
		c.APIKey = "[redacted]"
	}
	c.HTTPClient = nil
	type plain Config // no String method: no recursion
	return fmt.Sprintf("%+v", plain(c))
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// Embedder is the OpenAI-compatible embedder. Safe for concurrent use.
type Embedder struct {
	cfg    Config
	url    string
	client *http.Client
	dim    int
	model  string
	// sleep waits between tries; tests replace it to count the waits.
	sleep func(context.Context, time.Duration) error
}

// New returns an embedder. When Dim is not known from the config (see the
// package comment) it embeds a probe text to learn it.
func New(ctx context.Context, cfg Config) (*Embedder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "openai: config")
	}
	client := &http.Client{}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u := strings.TrimRight(cfg.BaseURL, "/") + "/embeddings"
	if cfg.AzureAPIVersion != "" {
		u += "?api-version=" + url.QueryEscape(cfg.AzureAPIVersion)
	}
	e := &Embedder{cfg: cfg, url: u, client: client, sleep: sleep, model: "openai/" + cfg.Model}
	switch {
	case cfg.Dimensions > 0:
		e.dim = cfg.Dimensions
		e.model += "@" + strconv.Itoa(cfg.Dimensions)
	case knownDims[cfg.Model] > 0:
		e.dim = knownDims[cfg.Model]
	default:
		vecs, err := e.Embed(ctx, []string{probeText})
		if err != nil {
			return nil, fmt.Errorf("openai: probe the vector size of %s: %w", cfg.Model, err)
		}
		e.dim = len(vecs[0])
	}
	return e, nil
}

// Dim returns the vector size.
func (e *Embedder) Dim() int { return e.dim }

// Model returns "openai/<model>", with "@<dimensions>" when Dimensions is set.
func (e *Embedder) Model() string { return e.model }

// Embed returns one vector per text, in order.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("openai: embed: %w", context.Cause(ctx))
	}
	out := make([][]float32, len(texts))
	for _, batch := range e.batches(texts) {
		inputs := make([]string, len(batch))
		for i, j := range batch {
			inputs[i] = texts[j]
		}
		vecs, err := e.post(ctx, inputs)
		if err != nil {
			return nil, err
		}
		for i, j := range batch {
			out[j] = vecs[i]
		}
	}
	for i, v := range out {
		if v == nil { // an empty text
			out[i] = make([]float32, e.dim)
		}
	}
	return out, nil
}

// batches splits the indexes of texts' non-empty texts into requests of at
// most BatchSize texts and MaxBatchBytes bytes.
func (e *Embedder) batches(texts []string) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for i, t := range texts {
		if t == "" {
			continue
		}
		if len(cur) > 0 && (len(cur) == e.cfg.BatchSize || size+len(t) > e.cfg.MaxBatchBytes) {
			out, cur, size = append(out, cur), nil, 0
		}
		cur = append(cur, i)
		size += len(t)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

type request struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	Dimensions     int      `json:"dimensions,omitempty"`
	EncodingFormat string   `json:"encoding_format"`
}

type response struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// failure is one failed try: err is what Embed returns if it is the last;
// retry says whether another try may succeed, after the service's
// Retry-After when it sent one.
type failure struct {
	err        *apiary.Error
	retry      bool
	retryAfter time.Duration
	hasAfter   bool
}

// post embeds one batch, retrying what may succeed on another try.
func (e *Embedder) post(ctx context.Context, inputs []string) ([][]float32, error) {
	body, err := json.Marshal(request{Model: e.cfg.Model, Input: inputs, Dimensions: e.cfg.Dimensions, EncodingFormat: "float"})
	if err != nil {
		return nil, fmt.Errorf("openai: embed: encode request: %w", err)
	}
	for attempt := 1; ; attempt++ {
		vecs, f := e.try(ctx, body, len(inputs))
		if f == nil {
			return vecs, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("openai: embed: %w", context.Cause(ctx))
		}
		if !f.retry {
			return nil, f.err
		}
		wait := e.backoff(attempt)
		if f.hasAfter {
			wait = f.retryAfter
		}
		if attempt > e.cfg.MaxRetries || wait > e.cfg.MaxRetryWait {
			// Not waited for here: the caller (a worker's retry, a client's
			// 503) waits instead.
			f.err.RetryAfter = max(wait, time.Second)
			return nil, f.err
		}
		if err := e.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("openai: embed: %w", err)
		}
	}
}

// backoff is backoffBase·2^(attempt-1), at most MaxRetryWait, less up to
// half of it at random.
func (e *Embedder) backoff(attempt int) time.Duration {
	d := backoffBase
	for i := 1; i < attempt && d < e.cfg.MaxRetryWait; i++ {
		d *= 2
	}
	d = min(d, e.cfg.MaxRetryWait)
	return d - rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// try sends one request.
func (e *Embedder) try(ctx context.Context, body []byte, n int) ([][]float32, *failure) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return nil, &failure{err: &apiary.Error{Kind: apiary.KindUnavailable, Msg: "openai: embed: build request", Err: err}}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "apiary")
	if e.cfg.APIKey != "" {
		if e.cfg.AzureAPIVersion != "" {
			req.Header.Set("api-key", e.cfg.APIKey)
		} else {
			req.Header.Set("Authorization", "Bearer "+e.cfg.APIKey)
		}
	}
	resp, err := e.client.Do(req)
	if err != nil {
		// The *url.Error names the URL; its cause is what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &failure{retry: true, err: &apiary.Error{Kind: apiary.KindUnavailable,
			Msg: "openai: embed: the embedding service did not answer", Err: err}}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, e.statusFailure(resp)
	}
	dim := e.dim
	if dim == 0 {
		dim = maxDim
	}
	// JSON floats take at most about 24 bytes each.
	limit := int64(1<<20) + int64(n)*int64(dim)*24
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &failure{retry: true, err: &apiary.Error{Kind: apiary.KindUnavailable,
			Msg: "openai: embed: read the embedding service's answer", Err: err}}
	}
	if int64(len(raw)) > limit {
		return nil, &failure{err: apiary.E(apiary.KindUnavailable,
			"openai: embed: the embedding service's answer is larger than %d bytes", limit)}
	}
	vecs, err := e.decode(raw, n)
	if err != nil {
		return nil, &failure{err: &apiary.Error{Kind: apiary.KindUnavailable,
			Msg: "openai: embed: unusable answer from the embedding service", Err: err}}
	}
	return vecs, nil
}

// decode checks the answer and puts its vectors in input order.
func (e *Embedder) decode(raw []byte, n int) ([][]float32, error) {
	var r response
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if len(r.Data) != n {
		return nil, fmt.Errorf("%d vectors for %d texts", len(r.Data), n)
	}
	out := make([][]float32, n)
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= n || out[d.Index] != nil {
			return nil, fmt.Errorf("index %d missing, repeated or out of range", d.Index)
		}
		switch {
		case len(d.Embedding) == 0 || len(d.Embedding) > maxDim:
			return nil, fmt.Errorf("a vector of %d dimensions", len(d.Embedding))
		case e.dim > 0 && len(d.Embedding) != e.dim:
			return nil, fmt.Errorf("a vector of %d dimensions, want %d", len(d.Embedding), e.dim)
		case e.dim == 0 && len(d.Embedding) != len(r.Data[0].Embedding):
			return nil, errors.New("vectors of different sizes")
		}
		embed.Normalize(d.Embedding)
		out[d.Index] = d.Embedding
	}
	return out, nil
}

// statusFailure classifies an answer other than 200.
func (e *Embedder) statusFailure(resp *http.Response) *failure {
	code := resp.StatusCode
	what := errorType(resp.Body)
	status := "HTTP " + strconv.Itoa(code)
	if what != "" {
		status += ": " + what
	}
	fail := func(kind apiary.Kind, format string) *failure {
		return &failure{err: apiary.E(kind, "openai: embed: "+format+" (%s)", status)}
	}
	switch {
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		f := fail(apiary.KindUnavailable, "the embedding service is overloaded or failing")
		if code == http.StatusTooManyRequests {
			f = fail(apiary.KindUnavailable, "the embedding service is throttling Apiary")
		}
		f.retry = true
		f.retryAfter, f.hasAfter = retryAfter(resp.Header, time.Now())
		return f
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fail(apiary.KindUnavailable, "the embedding service refused Apiary's API key")
	case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity:
		return fail(apiary.KindInvalid, "the embedding service refused the input")
	case code == http.StatusRequestEntityTooLarge:
		return fail(apiary.KindTooLarge, "the embedding service refused the request as too large")
	case code == http.StatusNotFound:
		return fail(apiary.KindUnavailable, "the embedding service has no such model or endpoint")
	case code >= 300 && code < 400:
		return fail(apiary.KindUnavailable, "the embedding service redirected; set the base URL to where it points")
	}
	return fail(apiary.KindUnavailable, "unexpected answer from the embedding service")
}

// errorType returns the "type" or "code" of an error body (OpenAI's
// {"error": {"type", "code"}}, TEI's {"error_type"}, vLLM's {"type"}) when
// it is a short identifier; never the message.
func errorType(body io.Reader) string {
	raw, err := io.ReadAll(io.LimitReader(body, 64<<10))
	if err != nil {
		return ""
	}
	var b struct {
		Error     json.RawMessage `json:"error"`
		ErrorType any             `json:"error_type"`
		Type      any             `json:"type"`
		Code      any             `json:"code"`
	}
	if json.Unmarshal(raw, &b) != nil {
		return ""
	}
	var inner struct {
		Type any `json:"type"`
		Code any `json:"code"`
	}
	_ = json.Unmarshal(b.Error, &inner) // a string for TEI and Ollama: no fields
	for _, v := range []any{inner.Code, inner.Type, b.ErrorType, b.Type, b.Code} {
		if s, ok := v.(string); ok && identifier(s) {
			return s
		}
	}
	return ""
}

// identifier reports whether s looks like an error code (letters, digits,
// '_', '-', '.'; at most 64 bytes), which cannot quote the input at length.
func identifier(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// retryAfter reads how long the service asks to wait: retry-after-ms
// (Azure), or Retry-After in seconds or as an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(min(s, 86400)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
