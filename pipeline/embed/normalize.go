package embed

import "math"

// Normalize scales v to unit length in place, so that the dot product of
// two vectors is their cosine similarity. A vector already of unit length
// (within 1e-4) is left as it is; the zero vector stays zero.
func Normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 || math.Abs(sum-1) <= 2e-4 {
		return
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}
