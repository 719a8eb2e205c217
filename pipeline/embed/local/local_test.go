package local_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary/pipeline/embed/embedtest"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	embedtest.Run(t, local.New(local.Config{}))
	embedtest.Run(t, local.New(local.Config{Dim: 64}))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	e := local.New(local.Config{})
	require.Equal(t, 384, e.Dim())
	require.Equal(t, "apiary-local-hash-v1-384", e.Model())
	require.Equal(t, "apiary-local-hash-v1-1024", local.New(local.Config{Dim: 1024}).Model())
	require.ErrorContains(t, local.Config{Dim: 3}.Validate(), "Dim must be between")
	require.Equal(t, 384, local.New(local.Config{Dim: -1}).Dim())
}

func TestLexicalProperties(t *testing.T) {
	t.Parallel()
	e := local.New(local.Config{})
	vs, err := e.Embed(t.Context(), []string{
		"", "!!! ...",
		"Kubernetes deployment failed",
		"KUBERNETES Deployment FAILED!",
		"kubernetes deployments failing",
		"chocolate cake recipe",
		"failed deployment kubernetes",
	})
	require.NoError(t, err)
	zero := make([]float32, 384)
	require.Equal(t, zero, vs[0], "empty text gives the zero vector")
	require.Equal(t, zero, vs[1], "text without words gives the zero vector")

	var norm float64
	for _, x := range vs[2] {
		norm += float64(x) * float64(x)
	}
	require.InDelta(t, 1, norm, 1e-5, "vectors are L2-normalized")

	cos := embedtest.Cosine
	require.InDelta(t, 1, cos(vs[2], vs[3]), 1e-6, "case and punctuation do not matter")
	require.Greater(t, cos(vs[2], vs[4]), cos(vs[2], vs[5]), "spelling variants share 3-grams")
	require.Greater(t, cos(vs[2], vs[4]), 0.3)
	require.Less(t, cos(vs[2], vs[6]), cos(vs[2], vs[3]), "word order matters through bigrams")
	require.Greater(t, cos(vs[2], vs[6]), 0.5, "but shared words dominate")
}

func BenchmarkEmbed(b *testing.B) {
	e := local.New(local.Config{})
	chunk := strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 40) // ~2.6 KB
	batch := make([]string, 64)
	for i := range batch {
		batch[i] = chunk
	}
	b.SetBytes(int64(len(chunk) * len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Embed(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
}
