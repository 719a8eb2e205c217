package vecguard

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

// rotation is a secret orthogonal transform of R^dim: Q = H_0 H_1 … H_{dim-2} D,
// a product of Householder reflections H_k (each acting on coordinates k…)
// and a diagonal of signs D, drawn as Householder QR of a Gaussian matrix
// (Stewart 1980): Q is Haar-distributed, uniform over the orthogonal group.
// It keeps dot products and norms, hence cosine similarity. It holds
// dim(dim+1)/2 float64s and applies in O(dim²). Safe for concurrent use.
type rotation struct {
	dim   int
	refl  [][]float64 // refl[k]: the unit vector of H_k, of dim-k values
	signs []float64   // D
}

// newRotation draws dim's rotation from a 256-bit secret: the Gaussians come
// from an AES-256-CTR stream keyed by HKDF-SHA256(secret, dim), so the same
// secret and dim always give the same rotation, and another dim an unrelated one.
func newRotation(secret []byte, dim int) (*rotation, error) {
	if len(secret) != encrypt.KeySize || dim <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "vecguard: rotation needs a %d-byte secret and a positive dimension", encrypt.KeySize)
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, fmt.Sprintf("apiary vecguard rotation v1 dim=%d", dim), 32)
	if err != nil {
		return nil, fmt.Errorf("vecguard: derive rotation seed: %w", err)
	}
	block, err := aes.NewCipher(seed)
	if err != nil {
		return nil, fmt.Errorf("vecguard: rotation stream: %w", err)
	}
	g := &gaussians{stream: cipher.NewCTR(block, make([]byte, aes.BlockSize))}
	r := &rotation{dim: dim, refl: make([][]float64, dim-1), signs: make([]float64, dim)}
	x := make([]float64, dim)
	for k := 0; k < dim-1; k++ {
		n := dim - k
		var norm float64
		for i := range n {
			x[i] = g.next()
			norm += x[i] * x[i]
		}
		norm = math.Sqrt(norm)
		s := 1.0
		if x[0] < 0 {
			s = -1
		}
		// v = x + sign(x0)·|x|·e0 reflects x onto −sign(x0)·|x|·e0: R's
		// diagonal entry has sign −sign(x0), which D takes out.
		x[0] += s * norm
		var vn float64
		for i := range n {
			vn += x[i] * x[i]
		}
		vn = math.Sqrt(vn)
		u := make([]float64, n)
		for i := range n {
			u[i] = x[i] / vn
		}
		r.refl[k] = u
		r.signs[k] = -s
	}
	r.signs[dim-1] = 1
	if g.next() < 0 {
		r.signs[dim-1] = -1
	}
	return r, nil
}

// apply returns Q·v (forward) or Qᵀ·v (!forward) as a new slice; v must have
// r.dim values.
func (r *rotation) apply(v []float32, forward bool) []float32 {
	return r.applyAll([][]float32{v}, forward)[0]
}

// applyAll is apply of each of vs, reading each reflection once for all.
func (r *rotation) applyAll(vs [][]float32, forward bool) [][]float32 {
	ys := make([][]float64, len(vs))
	for j, v := range vs {
		ys[j] = make([]float64, r.dim)
		for i, f := range v {
			ys[j][i] = float64(f)
		}
	}
	signs := func() {
		for _, y := range ys {
			for i := range y {
				y[i] *= r.signs[i]
			}
		}
	}
	if forward {
		signs()
		for k := r.dim - 2; k >= 0; k-- {
			r.reflect(ys, k)
		}
	} else {
		for k := 0; k < r.dim-1; k++ {
			r.reflect(ys, k)
		}
		signs()
	}
	out := make([][]float32, len(ys))
	for j, y := range ys {
		out[j] = make([]float32, r.dim)
		for i, f := range y {
			out[j][i] = float32(f)
		}
	}
	return out
}

// reflect applies H_k to each y in place: y[k:] −= 2·u·(u·y[k:]).
func (r *rotation) reflect(ys [][]float64, k int) {
	u := r.refl[k]
	n := len(u)
	for _, y := range ys {
		t := y[k : k+n]
		// Four sums at once: independent additions pipeline.
		var d0, d1, d2, d3 float64
		i := 0
		for ; i+4 <= n; i += 4 {
			d0 += u[i] * t[i]
			d1 += u[i+1] * t[i+1]
			d2 += u[i+2] * t[i+2]
			d3 += u[i+3] * t[i+3]
		}
		for ; i < n; i++ {
			d0 += u[i] * t[i]
		}
		dot := 2 * (d0 + d1 + d2 + d3)
		for i := range t {
			t[i] -= dot * u[i]
		}
	}
}

// gaussians turns a key stream into standard normal draws (Box–Muller).
type gaussians struct {
	stream cipher.Stream
	buf    [16]byte
	spare  float64
	ok     bool
}

func (g *gaussians) next() float64 {
	if g.ok {
		g.ok = false
		return g.spare
	}
	clear(g.buf[:])
	g.stream.XORKeyStream(g.buf[:], g.buf[:])
	// u1 in (0, 1], u2 in [0, 1): 53 random bits each.
	u1 := (float64(binary.LittleEndian.Uint64(g.buf[:8])>>11) + 1) / (1 << 53)
	u2 := float64(binary.LittleEndian.Uint64(g.buf[8:])>>11) / (1 << 53)
	rad := math.Sqrt(-2 * math.Log(u1))
	g.spare, g.ok = rad*math.Sin(2*math.Pi*u2), true
	return rad * math.Cos(2*math.Pi*u2)
}
