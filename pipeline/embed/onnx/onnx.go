package onnx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed"
)

var (
	_ embed.Embedder      = (*Embedder)(nil)
	_ embed.QueryEmbedder = (*Embedder)(nil)
	_ embed.TokenLimited  = (*Embedder)(nil)
	_ embed.Concurrent    = (*Embedder)(nil)
)

// DefaultBatchSize is the number of texts run through the model at once.
const DefaultBatchSize = 32

// Config configures the ONNX embedder.
type Config struct {
	// ModelsDir is the models directory (layout in models.go). Required.
	ModelsDir string
	// Model is a name from the model table. Default DefaultModel.
	Model string
	// BatchSize is the most texts run through the model at once. Default 32.
	BatchSize int
	// Threads is ONNX Runtime's intra-op thread count. Default
	// runtime.NumCPU().
	Threads int
}

func (c *Config) setDefaults() {
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Threads == 0 {
		c.Threads = runtime.NumCPU()
	}
}

// Validate reports every problem with c once defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.ModelsDir == "" {
		errs = append(errs, errors.New("onnx: ModelsDir is required"))
	}
	if _, ok := Lookup(c.Model); !ok {
		errs = append(errs, fmt.Errorf("onnx: unknown model %q (known: %v)", c.Model, modelNames()))
	}
	if c.BatchSize < 1 || c.BatchSize > 1024 {
		errs = append(errs, fmt.Errorf("onnx: BatchSize must be between 1 and 1024, got %d", c.BatchSize))
	}
	if c.Threads < 1 || c.Threads > 1024 {
		errs = append(errs, fmt.Errorf("onnx: Threads must be between 1 and 1024, got %d", c.Threads))
	}
	return errors.Join(errs...)
}

func modelNames() []string {
	names := make([]string, len(Models))
	for i, s := range Models {
		names[i] = s.Name
	}
	return names
}

// paths returns the files an Embedder of model needs in modelsDir: the
// runtime library, the model and its tokenizer.
func paths(modelsDir string, spec Spec) (runtimePath, modelPath, tokenizerPath string, err error) {
	rt, ok := Runtimes[runtime.GOOS+"/"+runtime.GOARCH]
	if !ok {
		return "", "", "", apiary.E(apiary.KindUnavailable, "onnx: no ONNX Runtime build for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	runtimePath = filepath.Join(RuntimeDir(modelsDir, runtime.GOOS, runtime.GOARCH), rt.Files[0].Name)
	return runtimePath, filepath.Join(spec.Dir(modelsDir), ModelFile), filepath.Join(spec.Dir(modelsDir), TokenizerFile), nil
}

// Available reports, without loading anything, whether the runtime library
// and the files of model (a table name; "" is DefaultModel) are in
// modelsDir. The error names the first missing file and says how to fetch it.
func Available(modelsDir, model string) error {
	if model == "" {
		model = DefaultModel
	}
	spec, ok := Lookup(model)
	if !ok {
		return apiary.E(apiary.KindInvalid, "onnx: unknown model %q (known: %v)", model, modelNames())
	}
	runtimePath, modelPath, tokenizerPath, err := paths(modelsDir, spec)
	if err != nil {
		return err
	}
	for _, p := range []string{runtimePath, modelPath, tokenizerPath} {
		fi, err := os.Stat(p)
		if err == nil && !fi.Mode().IsRegular() {
			err = errors.New("not a regular file")
		}
		if err != nil {
			return apiary.Wrap(err, apiary.KindUnavailable, "onnx: %s is missing: run `apiary models pull`", p)
		}
	}
	return nil
}

// session runs the model on one padded batch.
type session interface {
	// run returns the last hidden state, [b.n, b.seqLen, dim] flattened.
	run(ctx context.Context, b *batch) ([]float32, error)
	close() error
}

// batch is the model input for n texts padded to seqLen tokens, row-major.
type batch struct {
	n, seqLen        int
	ids, mask, types []int64
}

// Embedder embeds texts with one model of the table. Safe for concurrent
// use: texts are tokenised in the caller's goroutine, batches run one at a
// time (each on Config.Threads cores).
type Embedder struct {
	spec      Spec
	tok       *wordPiece
	sess      session
	batchSize int
	slot      chan struct{} // held while a batch runs or the model closes
	closed    bool          // guarded by slot
}

// New loads the runtime library (once per process), the model and its
// tokenizer from cfg.ModelsDir. A missing file gives an error naming it;
// `apiary models pull` fetches them.
func New(cfg Config) (*Embedder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "onnx: config")
	}
	if err := Available(cfg.ModelsDir, cfg.Model); err != nil {
		return nil, err
	}
	spec, _ := Lookup(cfg.Model)
	runtimePath, modelPath, tokenizerPath, err := paths(cfg.ModelsDir, spec)
	if err != nil {
		return nil, err
	}
	tok, err := loadTokenizer(tokenizerPath, spec.MaxTokens)
	if err != nil {
		return nil, err
	}
	sess, err := openSession(runtimePath, modelPath, spec.Dim, cfg.Threads)
	if err != nil {
		return nil, err
	}
	return &Embedder{spec: spec, tok: tok, sess: sess, batchSize: cfg.BatchSize, slot: make(chan struct{}, 1)}, nil
}

// Close waits for a running batch, then frees the model; Embed fails
// afterwards. The runtime library stays loaded for the process.
func (e *Embedder) Close() error {
	e.slot <- struct{}{}
	defer func() { <-e.slot }()
	if e.closed {
		return nil
	}
	e.closed = true
	return e.sess.close()
}

// MaxConcurrency is 1 (embed.Concurrent): calls run one at a time, each
// on Config.Threads cores.
func (e *Embedder) MaxConcurrency() int { return 1 }

// MaxTokens is the model's token limit (embed.TokenLimited): the chunker
// sizes chunks to fit it.
func (e *Embedder) MaxTokens() int { return e.spec.MaxTokens }

// Dim returns the vector size.
func (e *Embedder) Dim() int { return e.spec.Dim }

// Model returns "onnx/<name>@<version>", stored with every vector.
func (e *Embedder) Model() string { return "onnx/" + e.spec.Name + "@" + e.spec.Version }

// EmbedQuery embeds a search query: the model's query prefix, if it has
// one, then text.
func (e *Embedder) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	vs, err := e.Embed(ctx, []string{e.spec.QueryPrefix + text})
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// Embed returns one L2-normalised vector per text, in input order. A text
// longer than the model's token limit is truncated; an empty text still gets
// a vector. Texts are sorted by token count and run in batches of
// Config.BatchSize, so that a batch pads few tokens.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("onnx: embed: %w", context.Cause(ctx))
	}
	tokens := make([][]int64, len(texts))
	for i, t := range texts {
		ids, err := e.tok.encode(t)
		if err != nil {
			return nil, fmt.Errorf("onnx: embed text %d: %w", i, err)
		}
		tokens[i] = ids
	}
	order := make([]int, len(texts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(tokens[a]), len(tokens[b])) })

	out := make([][]float32, len(texts))
	for chunk := range slices.Chunk(order, e.batchSize) {
		b := e.pad(tokens, chunk)
		hidden, err := e.runBatch(ctx, b)
		if err != nil {
			return nil, err
		}
		for row, i := range chunk {
			out[i] = pool(e.spec.Pooling, hidden, b, row, e.spec.Dim)
		}
	}
	return out, nil
}

// runBatch waits for the model to be free, then runs b on it.
func (e *Embedder) runBatch(ctx context.Context, b *batch) ([]float32, error) {
	select {
	case e.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("onnx: embed: %w", context.Cause(ctx))
	}
	defer func() { <-e.slot }()
	if e.closed {
		return nil, apiary.E(apiary.KindUnavailable, "onnx: embed: the embedder is closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("onnx: embed: %w", context.Cause(ctx))
	}
	return e.sess.run(ctx, b)
}

// pad builds the model input for the texts rows (indexes into tokens),
// padded to the longest of them.
func (e *Embedder) pad(tokens [][]int64, rows []int) *batch {
	seqLen := 0
	for _, i := range rows {
		seqLen = max(seqLen, len(tokens[i]))
	}
	n := len(rows) * seqLen
	b := &batch{n: len(rows), seqLen: seqLen, ids: make([]int64, n), mask: make([]int64, n), types: make([]int64, n)}
	for r, i := range rows {
		row := b.ids[r*seqLen : (r+1)*seqLen]
		copy(row, tokens[i])
		for j := len(tokens[i]); j < seqLen; j++ {
			row[j] = e.tok.padID
		}
		for j := range tokens[i] {
			b.mask[r*seqLen+j] = 1
		}
	}
	return b
}

// pool turns row of hidden ([b.n, b.seqLen, dim]) into one L2-normalised
// vector: the mean of the token vectors under the attention mask, or the
// first ([CLS]) token's vector.
//
// It computes in float32 in sentence-transformers' order (each component
// summed over the tokens in turn, divided by the token count, divided by the
// norm), as the published reference vectors were: summing in float64 lands
// further from them (5.2e-8 against 2.6e-8 on the reference sentence).
func pool(p Pooling, hidden []float32, b *batch, row, dim int) []float32 {
	v := make([]float32, dim)
	var tokens float32
	for j := range b.seqLen {
		if b.mask[row*b.seqLen+j] == 0 || (p == PoolCLS && j > 0) {
			continue
		}
		tok := hidden[(row*b.seqLen+j)*dim : (row*b.seqLen+j+1)*dim]
		for k, x := range tok {
			v[k] += x
		}
		tokens++
	}
	var sq float64
	for k := range v {
		v[k] /= max(tokens, 1)
		sq += float64(v[k]) * float64(v[k])
	}
	norm := float32(max(math.Sqrt(sq), 1e-12)) // as torch.nn.functional.normalize
	for k := range v {
		v[k] /= norm
	}
	return v
}
