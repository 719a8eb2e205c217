package main

import (
	"context"
	"fmt"

	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
)

// EmbedderConfig chooses the embedder (--embedder, an entry of embedders).
type EmbedderConfig struct {
	Name string
	Dim  int // --embed-dim, of the local embedder
}

func (c *EmbedderConfig) register(f *flags) {
	choice(f, &c.Name, "embedder", embedders, "embedder that turns chunks and queries into vectors")
	f.int(&c.Dim, "embed-dim", 384, "dimension of the local embedder's vectors")
}

// embedders are the embedders --embedder names. The vector store is opened
// for the chosen one's dimension.
var embedders = table[embed.Embedder]{
	{
		name:  "local",
		about: "built in, in-process",
		check: func(cfg *Config, _ string) error {
			if err := (local.Config{Dim: cfg.Embedder.Dim}).Validate(); err != nil {
				return fmt.Errorf("--embed-dim %d: %w", cfg.Embedder.Dim, err)
			}
			return nil
		},
		open: func(_ context.Context, a *app) (embed.Embedder, error) {
			return local.New(local.Config{Dim: a.cfg.Embedder.Dim}), nil
		},
	},
}
