// Package embed is the embedder port: text in, vectors out.
//
// Promises every adapter keeps (checked by embedtest): Embed returns one
// vector of length Dim per input, in input order; the same text always gives
// the same vector for the same Model; safe for concurrent use.
package embed

import "context"

// Embedder turns texts into vectors.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	Dim() int
	// Model names the model and its version; it is stored with each vector.
	Model() string
}
