// Package embed is the embedder port: text in, vectors out.
//
// Promises every adapter keeps (checked by embedtest): Embed returns one
// vector of length Dim per input, in input order; the same text always gives
// the same vector for the same Model; safe for concurrent use.
package embed

import (
	"context"
	"fmt"
)

// Embedder turns texts into vectors.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	Dim() int
	// Model names the model and its version; it is stored with each vector.
	Model() string
}

// TokenLimited is an optional interface of an Embedder whose model reads at
// most MaxTokens tokens of a text (it ignores the rest).
type TokenLimited interface {
	MaxTokens() int
}

// Concurrent is an optional interface of an Embedder that gains nothing
// from more than MaxConcurrency calls at once (an in-process model whose
// one call uses every core runs calls one at a time). Callers that batch
// texts for it (the pipeline) size their calls in flight to it, so that
// texts keep gathering into the next call while one runs.
type Concurrent interface {
	MaxConcurrency() int
}

// QueryEmbedder is an optional interface of an Embedder whose model embeds a
// query differently from a document (an instruction prefix, say).
type QueryEmbedder interface {
	EmbedQuery(ctx context.Context, text string) ([]float32, error)
}

// Query embeds a search query with e: through EmbedQuery when e has it,
// otherwise as a one-text batch.
func Query(ctx context.Context, e Embedder, text string) ([]float32, error) {
	if q, ok := e.(QueryEmbedder); ok {
		return q.EmbedQuery(ctx, text)
	}
	vecs, err := e.Embed(ctx, []string{text})
	if err != nil {
		return nil, err
	}
	if len(vecs) != 1 {
		return nil, fmt.Errorf("embed: %d vectors for 1 text", len(vecs))
	}
	return vecs[0], nil
}
