package onnx

import (
	"context"
	"errors"
)

// Stub of the embedder, written in parallel elsewhere: deleted at merge.

// Config configures an Embedder.
type Config struct {
	ModelsDir string
	Model     string
	BatchSize int
	Threads   int
}

// Embedder embeds text with an ONNX model.
type Embedder struct{}

var errNotBuilt = errors.New("onnx: not built yet")

// New opens the model named by cfg.
func New(cfg Config) (*Embedder, error) { return nil, errNotBuilt }

// Available reports whether the files of model are present in modelsDir.
func Available(modelsDir, model string) error { return errNotBuilt }

func (*Embedder) Embed(context.Context, []string) ([][]float32, error) { return nil, errNotBuilt }
func (*Embedder) Dim() int                                             { return 0 }
func (*Embedder) Model() string                                        { return "" }
func (*Embedder) Close() error                                         { return nil }
