package onnx

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/embedtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	int8Model = "all-minilm-l6-v2-q"
	fp32Model = "all-minilm-l6-v2"
	bgeModel  = "bge-small-en-v1.5-q"
)

// modelsDir returns the models directory the tests run against, skipping
// when none is set.
func modelsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("APIARY_TEST_MODELS_DIR")
	if dir == "" {
		t.Skip("APIARY_TEST_MODELS_DIR is unset: point it at a models directory filled by `apiary models pull` to run the ONNX model tests")
	}
	return dir
}

// shared holds one Embedder per model for the whole test binary: loading a
// model takes a while, and an Embedder is safe for concurrent use.
var shared sync.Map // model name → func() (*Embedder, error)

// open returns the shared Embedder of model.
func open(t testing.TB, model string) *Embedder {
	t.Helper()
	dir := modelsDir(t)
	load, _ := shared.LoadOrStore(model, sync.OnceValues(func() (*Embedder, error) {
		return New(Config{ModelsDir: dir, Model: model})
	}))
	e, err := load.(func() (*Embedder, error))()
	require.NoError(t, err)
	return e
}

func embedOne(t testing.TB, e *Embedder, text string) []float32 {
	t.Helper()
	vs, err := e.Embed(t.Context(), []string{text})
	require.NoError(t, err)
	require.Len(t, vs, 1)
	return vs[0]
}

// The sentence-transformers reference: all-MiniLM-L6-v2's normalised vector
// for this sentence starts and ends with these components.
const referenceText = "I love sentence transformers."

var (
	referenceHead = []float64{-0.0803190097, -0.0171345081}
	referenceTail = []float64{0.0478825271, -0.0561899580}
)

func TestReferenceVectorFP32(t *testing.T) {
	t.Parallel()
	v := embedOne(t, open(t, fp32Model), referenceText)
	require.Len(t, v, 384)
	got := []float64{float64(v[0]), float64(v[1]), float64(v[382]), float64(v[383])}
	want := append(append([]float64{}, referenceHead...), referenceTail...)
	for i := range want {
		require.InDelta(t, want[i], got[i], 5e-8, "component %d: got %v", i, got)
	}
	require.InDelta(t, 1, l2(v), 1e-6)
}

// int8 models quantise activations per batch, so their vectors are compared
// with the fp32 model's by cosine, never by equality.
func TestInt8CloseToFP32(t *testing.T) {
	t.Parallel()
	q, f := open(t, int8Model), open(t, fp32Model)
	texts := []string{
		referenceText,
		"The invoice for the March shipment of steel pipes is overdue by thirty days.",
		"Our cat sleeps on the warm windowsill every sunny afternoon.",
		"Kubernetes schedules pods onto nodes according to resource requests and affinity rules.",
		"François ordered a café crème and a croissant at the bakery near the station.",
	}
	qv, err := q.Embed(t.Context(), texts)
	require.NoError(t, err)
	fv, err := f.Embed(t.Context(), texts)
	require.NoError(t, err)
	for i := range texts {
		require.GreaterOrEqual(t, embedtest.Cosine(qv[i], fv[i]), 0.98, "text %d", i)
	}
	// Padded in a batch with a long text, where the quantisation ranges
	// differ most from the texts' own.
	long := strings.Repeat("A long text about warehouses, pipes and the invoices of every month. ", 30)
	qv, err = q.Embed(t.Context(), append([]string{long}, texts...))
	require.NoError(t, err)
	for i := range texts {
		require.GreaterOrEqual(t, embedtest.Cosine(qv[i+1], fv[i]), 0.98, "text %d beside a long text", i)
	}
	require.InDelta(t, embedtest.Cosine(fv[0], embedOne(t, f, referenceText)), 1, 1e-6)
}

// A batch of texts of mixed lengths gives the vectors each text gets alone:
// padding to the batch's longest text and the attention mask change
// nothing (fp32: no per-batch quantisation).
func TestBatchEqualsAlone(t *testing.T) {
	t.Parallel()
	e := open(t, fp32Model)
	texts := []string{
		"short",
		"",
		strings.Repeat("A much longer text about the pipes and the invoices of March. ", 12),
		"Medium length text, with punctuation; and a few more words.",
		strings.Repeat("word ", 400), // truncated
		"x",
	}
	batch, err := e.Embed(t.Context(), texts)
	require.NoError(t, err)
	require.Len(t, batch, len(texts))
	for i, text := range texts {
		alone := embedOne(t, e, text)
		for k := range alone {
			require.InDelta(t, alone[k], batch[i][k], 1e-6, "text %d component %d", i, k)
		}
	}
}

// Canceling the context stops an Embed in progress (a running batch is
// terminated) with the context's cause.
func TestCancelStopsEmbed(t *testing.T) {
	t.Parallel()
	e := open(t, fp32Model)
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = strings.Repeat("word ", 300) // 256 tokens each: seconds of work
	}
	cause := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(t.Context())
	go cancel(cause)
	vs, err := e.Embed(ctx, texts)
	require.ErrorIs(t, err, cause)
	require.Nil(t, vs)
	// The Embedder still works afterwards.
	require.Len(t, embedOne(t, e, "after"), 384)

	// A run already under way is terminated: ORT checks the flag between
	// operators, so a canceled context ends a batch of seconds at once.
	ctx, cancel = context.WithCancelCause(t.Context())
	cancel(cause)
	tokens := make([][]int64, 32)
	rows := make([]int, 32)
	for i := range tokens {
		tokens[i], _ = e.tok.encode(texts[i])
		rows[i] = i
	}
	_, err = e.sess.run(ctx, e.pad(tokens, rows))
	require.ErrorIs(t, err, cause)
}

func TestEmptyTextGetsAVector(t *testing.T) {
	t.Parallel()
	e := open(t, int8Model)
	vs, err := e.Embed(t.Context(), []string{"", "   ", "\u0000\u200b"})
	require.NoError(t, err)
	for i, v := range vs {
		require.Len(t, v, e.Dim(), "text %d", i)
		require.InDelta(t, 1, l2(v), 1e-5, "text %d", i)
	}
}

// The shared suite demands that a text's vector not depend on its batch
// (cosine within 1e-3). That holds for fp32 models exactly; int8 models
// quantise activations per batch (the same text in two batches: cosine
// ≈ 0.99), so the suite runs against fp32 and the int8 model is held to the
// fp32 vectors by TestInt8CloseToFP32.
func TestSuiteFP32(t *testing.T) {
	t.Parallel()
	embedtest.Run(t, open(t, fp32Model))
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	e := open(t, int8Model)
	require.Equal(t, "onnx/all-minilm-l6-v2-q@1.20.0-beta30", e.Model())
	require.Equal(t, 384, e.Dim())
}

// bge-small takes a query instruction: a query and the same text as a
// document get different vectors; a query's vector is the prefixed text's.
func TestQueryPrefix(t *testing.T) {
	t.Parallel()
	e := open(t, bgeModel)
	spec, _ := Lookup(bgeModel)
	require.NotEmpty(t, spec.QueryPrefix)
	require.Equal(t, PoolCLS, spec.Pooling)

	q, err := embed.Query(t.Context(), e, "x")
	require.NoError(t, err)
	doc := embedOne(t, e, "x")
	require.Less(t, embedtest.Cosine(q, doc), 0.999, "query and document vectors of one text must differ")
	require.Equal(t, embedOne(t, e, spec.QueryPrefix+"x"), q)

	// MiniLM has no prefix: a query is embedded like a document.
	m := open(t, int8Model)
	mq, err := m.EmbedQuery(t.Context(), "x")
	require.NoError(t, err)
	require.Equal(t, embedOne(t, m, "x"), mq)
}

// Two Embedders of different models load at the same time and share the
// process's one runtime.
func TestTwoModelsAtOnce(t *testing.T) {
	t.Parallel()
	dir := modelsDir(t)
	models := []string{int8Model, bgeModel}
	es := make([]*Embedder, len(models))
	errs := make([]error, len(models))
	var wg sync.WaitGroup
	for i, m := range models {
		wg.Go(func() { es[i], errs[i] = New(Config{ModelsDir: dir, Model: m, Threads: 1}) })
	}
	wg.Wait()
	for i := range models {
		require.NoError(t, errs[i], models[i])
		t.Cleanup(func() { require.NoError(t, es[i].Close()) }) // a second Close is a no-op
	}
	for i := range models {
		require.Len(t, embedOne(t, es[i], referenceText), 384, models[i])
	}

	// A closed Embedder refuses work; the other one goes on.
	require.NoError(t, es[0].Close())
	require.NoError(t, es[0].Close())
	_, err := es[0].Embed(t.Context(), []string{"x"})
	require.ErrorContains(t, err, "closed")
	require.Len(t, embedOne(t, es[1], "x"), 384)
}

func TestMissingFilesNamePathAndFix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, err := range []error{Available(dir, ""), func() error { _, err := New(Config{ModelsDir: dir}); return err }()} {
		require.Error(t, err)
		require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
		require.Contains(t, err.Error(), filepath.Join(dir, "onnxruntime-"+RuntimeVersion))
		require.Contains(t, err.Error(), "apiary models pull")
	}

	// With the runtime present, the model's own file is the one named.
	if r, ok := Runtimes[runtime.GOOS+"/"+runtime.GOARCH]; ok {
		rt := filepath.Join(RuntimeDir(dir, runtime.GOOS, runtime.GOARCH), r.Files[0].Name)
		require.NoError(t, os.MkdirAll(filepath.Dir(rt), 0o755))
		require.NoError(t, os.WriteFile(rt, nil, 0o644))
		err := Available(dir, bgeModel)
		require.ErrorContains(t, err, filepath.Join(dir, "bge-small-en-v1.5-q-1.20.0-beta30", ModelFile))
		require.ErrorContains(t, err, "apiary models pull")
	}

	require.Equal(t, apiary.KindInvalid, apiary.KindOf(Available(dir, "no-such-model")))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Config{ModelsDir: "/m"}.Validate())
	err := Config{Model: "nope", BatchSize: -1, Threads: -2}.Validate()
	for _, want := range []string{"ModelsDir is required", `unknown model "nope"`, "BatchSize", "Threads"} {
		require.ErrorContains(t, err, want)
	}
	_, err = New(Config{})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestAvailableWithModels(t *testing.T) {
	t.Parallel()
	dir := modelsDir(t)
	for _, m := range Models {
		require.NoError(t, Available(dir, m.Name), m.Name)
	}
}

func TestPool(t *testing.T) {
	t.Parallel()
	// Two texts, 3 positions, dim 2: the second text has one pad token.
	b := &batch{n: 2, seqLen: 3, mask: []int64{1, 1, 1, 1, 1, 0}}
	hidden := []float32{
		3, 0, 0, 4, 0, 2, // text 0: (3,0) (0,4) (0,2)
		1, 1, 1, 3, 99, 99, // text 1: (1,1) (1,3) pad
	}
	// Mean of text 0: (1, 2) → /√5.
	requireVec(t, []float64{1 / math.Sqrt(5), 2 / math.Sqrt(5)}, pool(PoolMean, hidden, b, 0, 2))
	// Mean of text 1 ignores the pad: (1, 2) → /√5.
	requireVec(t, []float64{1 / math.Sqrt(5), 2 / math.Sqrt(5)}, pool(PoolMean, hidden, b, 1, 2))
	// CLS takes the first token: (3, 0) → (1, 0); (1, 1) → /√2.
	requireVec(t, []float64{1, 0}, pool(PoolCLS, hidden, b, 0, 2))
	requireVec(t, []float64{1 / math.Sqrt2, 1 / math.Sqrt2}, pool(PoolCLS, hidden, b, 1, 2))
}

func requireVec(t *testing.T, want []float64, got []float32) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.InDelta(t, want[i], got[i], 1e-7, "component %d: got %v", i, got)
	}
}

func l2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
