package embed_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/pipeline/embed"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	v := []float32{3, 4}
	embed.Normalize(v)
	require.Equal(t, []float32{0.6, 0.8}, v)

	zero := []float32{0, 0}
	embed.Normalize(zero)
	require.Equal(t, []float32{0, 0}, zero)

	unit := []float32{float32(math.Sqrt(0.5)), float32(math.Sqrt(0.5))}
	want := append([]float32(nil), unit...)
	embed.Normalize(unit)
	require.Equal(t, want, unit, "already of unit length: untouched")
}
