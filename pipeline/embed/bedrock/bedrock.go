// Package bedrock is the embedder on Amazon Bedrock's InvokeModel, for two
// model families:
//
//   - Amazon Titan Text Embeddings v2 (amazon.titan-embed-text-v2:0):
//     {"inputText", "dimensions": 256|512|1024, "normalize": true}, one text
//     per call, so a batch is sent as Concurrency calls at once; texts are
//     cut to the model's 50,000 characters.
//   - Cohere Embed v3 (cohere.embed-english-v3, cohere.embed-multilingual-v3):
//     {"texts": [≤ 96], "input_type", "truncate": "END",
//     "embedding_types": ["float"]}, 1,024 dimensions; texts are cut to the
//     2,048 characters Bedrock accepts and the model truncates the rest to
//     its token limit. Documents are embedded as "search_document" and
//     queries (EmbedQuery) as "search_query".
//
// A model id may also be an inference profile or ARN that names one of
// these. Vectors come back in input order, L2-normalised (here when the
// model has not); an empty text gets the zero vector without a call.
//
// Failures, as apiary kinds. Throttling and 5xx answers are retried by the
// SDK's retryer, MaxAttempts tries in all; then, like AWS refusing Apiary's
// own credentials (AccessDeniedException, UnrecognizedClientException and
// the like), a model that is not there or not enabled, or an unusable
// answer, they are KindUnavailable: the caller's request is fine, Apiary's
// dependency is not. ValidationException is KindInvalid. Errors carry
// Bedrock's error code and request id, never its message (which may quote
// the input) nor the input.
package bedrock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed"
)

var (
	_ embed.Embedder      = (*Embedder)(nil)
	_ embed.QueryEmbedder = (*Embedder)(nil)
)

// Defaults.
const (
	DefaultModel       = "amazon.titan-embed-text-v2:0"
	DefaultConcurrency = 4
	DefaultMaxAttempts = 4
)

// family is how one kind of model is called.
type family struct {
	// batch is the most texts in one call; maxChars the longest text sent.
	batch, maxChars int
	// dims are the vector sizes the model offers; the first is the default.
	dims []int
	// body is the request for texts.
	body func(texts []string, dim int, inputType string) ([]byte, error)
	// vectors reads the answer.
	vectors func(raw []byte) ([][]float32, error)
}

var titanV2 = family{
	batch: 1, maxChars: 50_000, dims: []int{1024, 512, 256},
	body: func(texts []string, dim int, _ string) ([]byte, error) {
		return json.Marshal(struct {
			InputText  string `json:"inputText"`
			Dimensions int    `json:"dimensions"`
			Normalize  bool   `json:"normalize"`
		}{texts[0], dim, true})
	},
	vectors: func(raw []byte) ([][]float32, error) {
		var r struct {
			Embedding []float32 `json:"embedding"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		return [][]float32{r.Embedding}, nil
	},
}

var cohereV3 = family{
	batch: 96, maxChars: 2048, dims: []int{1024},
	body: func(texts []string, _ int, inputType string) ([]byte, error) {
		return json.Marshal(struct {
			Texts          []string `json:"texts"`
			InputType      string   `json:"input_type"`
			Truncate       string   `json:"truncate"`
			EmbeddingTypes []string `json:"embedding_types"`
		}{texts, inputType, "END", []string{"float"}})
	},
	vectors: func(raw []byte) ([][]float32, error) {
		// {"embeddings": {"float": [...]}} when embedding_types is sent,
		// {"embeddings": [...]} without.
		var r struct {
			Embeddings json.RawMessage `json:"embeddings"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		var byType struct {
			Float [][]float32 `json:"float"`
		}
		if err := json.Unmarshal(r.Embeddings, &byType); err == nil {
			return byType.Float, nil
		}
		var floats [][]float32
		err := json.Unmarshal(r.Embeddings, &floats)
		return floats, err
	},
}

// familyOf returns the family of a model id (or an inference profile or ARN
// that names the model).
func familyOf(model string) (family, bool) {
	switch {
	case strings.Contains(model, "amazon.titan-embed-text-v2"):
		return titanV2, true
	case strings.Contains(model, "cohere.embed-english-v3"), strings.Contains(model, "cohere.embed-multilingual-v3"):
		return cohereV3, true
	}
	return family{}, false
}

// Config configures the embedder. Client is required.
type Config struct {
	// Client calls Bedrock (see NewClient). Required.
	Client *bedrockruntime.Client
	// Model is the model id. Default DefaultModel (Titan Text Embeddings v2).
	Model string
	// Dimensions is the vector size: 256, 512 or 1024 for Titan v2
	// (default 1024), 1024 for Cohere v3.
	Dimensions int
	// Concurrency is how many calls one Embed makes at once. Default 4.
	Concurrency int
	// MaxAttempts is how many tries the SDK's retryer gives one call
	// (throttling, 5xx). Default 4.
	MaxAttempts int
}

func (c *Config) setDefaults() {
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if f, ok := familyOf(c.Model); ok && c.Dimensions == 0 {
		c.Dimensions = f.dims[0]
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
}

// Validate reports every problem with c once defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("bedrock: Client is required"))
	}
	if err := CheckModel(c.Model, c.Dimensions); err != nil {
		errs = append(errs, err)
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("bedrock: Concurrency must be from 1 to 64, got %d", c.Concurrency))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 20 {
		errs = append(errs, fmt.Errorf("bedrock: MaxAttempts must be from 1 to 20, got %d", c.MaxAttempts))
	}
	return errors.Join(errs...)
}

// CheckModel reports whether model (empty: DefaultModel) is one this
// package speaks, with dimensions (0: the model's default) one it offers.
func CheckModel(model string, dimensions int) error {
	if model == "" {
		model = DefaultModel
	}
	f, ok := familyOf(model)
	if !ok {
		return fmt.Errorf("bedrock: model %q: use amazon.titan-embed-text-v2:0, cohere.embed-english-v3 or cohere.embed-multilingual-v3", model)
	}
	if dimensions != 0 && !contains(f.dims, dimensions) {
		return fmt.Errorf("bedrock: model %s offers %s dimensions, not %d", model, list(f.dims), dimensions)
	}
	return nil
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func list(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// NewClient returns a Bedrock runtime client for awsCfg (region,
// credentials, HTTP client, retryer). A non-empty endpoint replaces the
// regional one: a VPC endpoint, or a test server.
func NewClient(awsCfg aws.Config, endpoint string) *bedrockruntime.Client {
	return bedrockruntime.NewFromConfig(awsCfg, func(o *bedrockruntime.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// Embedder is the Bedrock embedder. Safe for concurrent use.
type Embedder struct {
	cfg    Config
	fam    family
	model  string
	client *bedrockruntime.Client
}

// New returns an embedder. It makes no call to Bedrock.
func New(cfg Config) (*Embedder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "bedrock: config")
	}
	fam, _ := familyOf(cfg.Model)
	return &Embedder{
		cfg: cfg, fam: fam, client: cfg.Client,
		model: "bedrock/" + cfg.Model + "@" + strconv.Itoa(cfg.Dimensions),
	}, nil
}

// Dim returns the vector size.
func (e *Embedder) Dim() int { return e.cfg.Dimensions }

// Model returns "bedrock/<model id>@<dimensions>".
func (e *Embedder) Model() string { return e.model }

// Embed returns one vector per text, in order, embedded as documents.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	return e.embed(ctx, texts, "search_document")
}

// EmbedQuery embeds a search query: as "search_query" for Cohere, as any
// text for Titan.
func (e *Embedder) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	vs, err := e.embed(ctx, []string{text}, "search_query")
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

func (e *Embedder) embed(ctx context.Context, texts []string, inputType string) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bedrock: embed: %w", context.Cause(ctx))
	}
	out := make([][]float32, len(texts))
	var batch []int
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.Concurrency)
	send := func(idx []int) {
		g.Go(func() error {
			inputs := make([]string, len(idx))
			for i, j := range idx {
				inputs[i] = cut(texts[j], e.fam.maxChars)
			}
			vecs, err := e.invoke(gctx, inputs, inputType)
			if err != nil {
				return err
			}
			for i, j := range idx {
				out[j] = vecs[i]
			}
			return nil
		})
	}
	for i, t := range texts {
		if t == "" {
			out[i] = make([]float32, e.cfg.Dimensions)
			continue
		}
		batch = append(batch, i)
		if len(batch) == e.fam.batch {
			send(batch)
			batch = nil
		}
	}
	if len(batch) > 0 {
		send(batch)
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("bedrock: embed: %w", context.Cause(ctx))
		}
		return nil, err
	}
	return out, nil
}

// cut returns s's first n characters.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// maxAnswerBytes bounds an answer: JSON floats take at most about 24 bytes.
func (e *Embedder) maxAnswerBytes(texts int) int64 {
	return 1<<20 + int64(texts)*int64(e.cfg.Dimensions)*24
}

// invoke embeds one batch.
func (e *Embedder) invoke(ctx context.Context, texts []string, inputType string) ([][]float32, error) {
	body, err := e.fam.body(texts, e.cfg.Dimensions, inputType)
	if err != nil {
		return nil, fmt.Errorf("bedrock: embed: encode request: %w", err)
	}
	out, err := e.client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
		ModelId:     aws.String(e.cfg.Model),
		Body:        body,
		ContentType: aws.String("application/json"),
		Accept:      aws.String("application/json"),
	}, func(o *bedrockruntime.Options) {
		o.RetryMaxAttempts = e.cfg.MaxAttempts
		o.APIOptions = append(o.APIOptions, limitAnswer(e.maxAnswerBytes(len(texts))))
	})
	if err != nil {
		return nil, classify(ctx, err, e.cfg.Model)
	}
	vecs, err := e.fam.vectors(out.Body)
	if err == nil {
		err = e.check(vecs, len(texts))
	}
	if err != nil {
		return nil, &apiary.Error{Kind: apiary.KindUnavailable,
			Msg: fmt.Sprintf("bedrock: embed with %s: unusable answer", e.cfg.Model), Err: err}
	}
	for _, v := range vecs {
		embed.Normalize(v)
	}
	return vecs, nil
}

func (e *Embedder) check(vecs [][]float32, n int) error {
	if len(vecs) != n {
		return fmt.Errorf("%d vectors for %d texts", len(vecs), n)
	}
	for _, v := range vecs {
		if len(v) != e.cfg.Dimensions {
			return fmt.Errorf("a vector of %d dimensions, want %d", len(v), e.cfg.Dimensions)
		}
	}
	return nil
}

// limitAnswer makes reading an answer of more than n bytes fail.
func limitAnswer(n int64) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("ApiaryLimitAnswer",
			func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleDeserialize(ctx, in)
				if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp.Body != nil {
					resp.Body = &limitedBody{ReadCloser: resp.Body, left: n}
				}
				return out, md, err
			}), middleware.After)
	}
}

var errTooLarge = errors.New("answer larger than its bound")

// limitedBody fails a read past its bound rather than cutting the answer
// short.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errTooLarge
	}
	return n, err
}

// classify translates an InvokeModel error into apiary kinds. The cause kept
// is Bedrock's error code, HTTP status and request id, never its message.
func classify(ctx context.Context, err error, model string) error {
	msg := "bedrock: embed with " + model
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", msg, context.Cause(ctx))
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		if errors.Is(err, errTooLarge) {
			return apiary.E(apiary.KindUnavailable, "%s: the answer is larger than its bound", msg)
		}
		// A transport or credentials-chain failure: no Bedrock message in it.
		return apiary.Wrap(err, apiary.KindUnavailable, "%s: Bedrock did not answer", msg)
	}
	cause := safeCause(err, apiErr.ErrorCode())
	switch apiErr.ErrorCode() {
	case "ValidationException":
		return apiary.Wrap(cause, apiary.KindInvalid, "%s: Bedrock refused the input", msg)
	case "ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException", "TooManyRequestsException":
		return &apiary.Error{Kind: apiary.KindUnavailable, Msg: msg + ": Bedrock is throttling Apiary", Err: cause, RetryAfter: 5 * time.Second}
	case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch",
		"ExpiredTokenException", "IncompleteSignature", "MissingAuthenticationToken", "InvalidClientTokenId":
		// Apiary's own AWS credentials, not the caller's: an outage for the
		// caller, a configuration problem for the operator.
		return apiary.Wrap(cause, apiary.KindUnavailable, "%s: AWS refused Apiary's credentials or permissions", msg)
	case "ResourceNotFoundException":
		return apiary.Wrap(cause, apiary.KindUnavailable, "%s: no such model, or it is not enabled in this account and region", msg)
	}
	return apiary.Wrap(cause, apiary.KindUnavailable, "%s: Bedrock failed", msg)
}

// safeCause is code with the HTTP status and request id of err.
func safeCause(err error, code string) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("%s (HTTP %d, request id %s)", code, re.HTTPStatusCode(), re.ServiceRequestID())
	}
	return errors.New(code)
}
