package vecguard

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// A rotation keeps norms and dot products, its transpose undoes it, the
// same secret and dimension give the same rotation, and another secret
// another one.
func TestRotationIsOrthogonal(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, dim := range []int{1, 2, 8, 384} {
		r, err := newRotation(secret, dim)
		require.NoError(t, err)
		vec := func() []float32 {
			v := make([]float32, dim)
			for i := range v {
				v[i] = float32(rng.NormFloat64())
			}
			return v
		}
		for range 20 {
			x, y := vec(), vec()
			rx, ry := r.apply(x, true), r.apply(y, true)
			require.InDelta(t, dot(x, y), dot(rx, ry), 1e-4*math.Sqrt(dot(x, x)*dot(y, y)), "dim %d: dot product", dim)
			require.InDeltaSlice(t, x, r.apply(rx, false), 1e-4, "dim %d: the transpose undoes it", dim)
		}
		// Q's columns are orthonormal: Q·e_i · Q·e_j = δ_ij.
		if dim <= 8 {
			for i := range dim {
				for j := range dim {
					ei, ej := make([]float32, dim), make([]float32, dim)
					ei[i], ej[j] = 1, 1
					want := 0.0
					if i == j {
						want = 1
					}
					require.InDelta(t, want, dot(r.apply(ei, true), r.apply(ej, true)), 1e-6)
				}
			}
		}
		again, err := newRotation(secret, dim)
		require.NoError(t, err)
		x := vec()
		require.Equal(t, r.apply(x, true), again.apply(x, true), "dim %d: deterministic", dim)
		if dim > 1 {
			other, err := newRotation(bytes.Repeat([]byte{8}, 32), dim)
			require.NoError(t, err)
			require.NotEqual(t, r.apply(x, true), other.apply(x, true), "dim %d: another secret, another rotation", dim)
		}
	}
	_, err := newRotation([]byte("short"), 8)
	require.Error(t, err)
}

// The rotation of a vector is spread over every coordinate: the rotated
// basis vectors of a 384-dim rotation have no coordinate near ±1.
func TestRotationMixesCoordinates(t *testing.T) {
	r, err := newRotation(bytes.Repeat([]byte{9}, 32), 384)
	require.NoError(t, err)
	for i := 0; i < 384; i += 37 {
		e := make([]float32, 384)
		e[i] = 1
		var peak float64
		for _, f := range r.apply(e, true) {
			peak = max(peak, math.Abs(float64(f)))
		}
		require.Less(t, peak, 0.5, "basis vector %d stays near an axis", i)
	}
}

func dot(x, y []float32) float64 {
	var s float64
	for i := range x {
		s += float64(x[i]) * float64(y[i])
	}
	return s
}

// BenchmarkRotate is the cost of rotating one vector of dimension 384 (a
// query), and of rotating ten back (a page of hits).
func BenchmarkRotate(b *testing.B) {
	r, err := newRotation(bytes.Repeat([]byte{7}, 32), 384)
	if err != nil {
		b.Fatal(err)
	}
	v := make([]float32, 384)
	for i := range v {
		v[i] = float32(i%7) - 3
	}
	b.Run("one", func(b *testing.B) {
		for b.Loop() {
			r.apply(v, true)
		}
	})
	b.Run("ten", func(b *testing.B) {
		vs := make([][]float32, 10)
		for i := range vs {
			vs[i] = v
		}
		for b.Loop() {
			r.applyAll(vs, false)
		}
	})
}
