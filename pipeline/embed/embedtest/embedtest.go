// Package embedtest is the conformance suite every embed.Embedder adapter
// passes.
package embedtest

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/pipeline/embed"
)

// Texts used by the suite: a base text, the same text with one word changed,
// and an unrelated text.
const (
	base      = "The invoice for the March shipment of steel pipes is overdue by thirty days."
	oneWord   = "The invoice for the April shipment of steel pipes is overdue by thirty days."
	unrelated = "Our cat sleeps on the warm windowsill every sunny afternoon."
)

// Run runs the suite against e.
func Run(t *testing.T, e embed.Embedder) {
	t.Helper()
	require.Positive(t, e.Dim(), "Dim")
	require.NotEmpty(t, e.Model(), "Model")

	t.Run("LengthDimOrder", func(t *testing.T) {
		t.Parallel()
		texts := []string{base, unrelated, oneWord, "short", base}
		vs, err := e.Embed(t.Context(), texts)
		require.NoError(t, err)
		require.Len(t, vs, len(texts))
		for i, v := range vs {
			require.Len(t, v, e.Dim(), "vector %d", i)
		}
		// Order: each vector is the one of its own text.
		for i, text := range texts {
			one, err := e.Embed(t.Context(), []string{text})
			require.NoError(t, err)
			requireClose(t, one[0], vs[i], "vector %d out of order", i)
		}
		requireClose(t, vs[0], vs[4], "same text, different vectors in one batch")
	})

	t.Run("Deterministic", func(t *testing.T) {
		t.Parallel()
		a, err := e.Embed(t.Context(), []string{base, unrelated})
		require.NoError(t, err)
		b, err := e.Embed(t.Context(), []string{base, unrelated})
		require.NoError(t, err)
		requireClose(t, a[0], b[0], "base")
		requireClose(t, a[1], b[1], "unrelated")
	})

	t.Run("EmptyInput", func(t *testing.T) {
		t.Parallel()
		vs, err := e.Embed(t.Context(), nil)
		require.NoError(t, err)
		require.Empty(t, vs)
		vs, err = e.Embed(t.Context(), []string{})
		require.NoError(t, err)
		require.Empty(t, vs)
	})

	t.Run("CanceledContext", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		vs, err := e.Embed(ctx, []string{base})
		require.Error(t, err)
		require.Nil(t, vs)
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		want, err := e.Embed(t.Context(), []string{base, oneWord, unrelated})
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		got := make([][][]float32, 8)
		for i := range errs {
			wg.Go(func() { got[i], errs[i] = e.Embed(t.Context(), []string{base, oneWord, unrelated}) })
		}
		wg.Wait()
		for i := range errs {
			require.NoError(t, errs[i])
			for j := range want {
				requireClose(t, want[j], got[i][j], "goroutine %d vector %d", i, j)
			}
		}
	})

	t.Run("Similarity", func(t *testing.T) {
		t.Parallel()
		vs, err := e.Embed(t.Context(), []string{base, oneWord, unrelated})
		require.NoError(t, err)
		near, far := Cosine(vs[0], vs[1]), Cosine(vs[0], vs[2])
		require.Greater(t, near, far, "a text with one word changed must be closer than an unrelated text")
		require.InDelta(t, 1, Cosine(vs[0], vs[0]), 1e-4)
	})
}

// Cosine returns the cosine similarity of a and b (0 when either is zero).
func Cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// requireClose allows for the float noise of remote models, which may not
// return bit-identical vectors for identical input.
func requireClose(t *testing.T, want, got []float32, msg string, args ...any) {
	t.Helper()
	require.Len(t, got, len(want), append([]any{msg}, args...)...)
	require.InDelta(t, 1, Cosine(want, got), 1e-3, append([]any{msg}, args...)...)
}
