package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/apiaryhq/apiary/internal/artifact"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/embed/onnx"
)

// EmbedderConfig chooses the embedder (--embedder, an entry of embedders).
type EmbedderConfig struct {
	Name      string
	Dim       int    // --embed-dim, of the local embedder
	Model     string // --embed-model, of the onnx embedder: a name in onnx.Models
	ModelsDir string // --models-dir: the runtime and the models, shared by every data dir
	Batch     int    // --embed-batch: texts the onnx embedder runs at once
}

func (c *EmbedderConfig) register(f *flags) {
	choice(f, &c.Name, "embedder", embedders, "embedder that turns chunks and queries into vectors")
	f.int(&c.Dim, "embed-dim", 384, "dimension of the local embedder's vectors")
	f.str(&c.Model, "embed-model", onnx.DefaultModel, "model of the onnx embedder: "+modelChoices())
	registerModelsDir(f, &c.ModelsDir)
	f.int(&c.Batch, "embed-batch", 32, "texts the onnx embedder runs through the model at once")
}

// registerModelsDir registers --models-dir, defaulting to apiary/models in
// the user's cache directory.
func registerModelsDir(f *flags, p *string) {
	def := ""
	if dir, err := os.UserCacheDir(); err == nil {
		def = filepath.Join(dir, "apiary", "models")
	}
	f.str(p, "models-dir", def, "directory of the ONNX Runtime and the models, fetched into it when missing and shared by every data dir")
}

// modelChoices lists the model table for help and errors.
func modelChoices() string {
	names := onnx.ModelNames()
	for i, n := range names {
		if n == onnx.DefaultModel {
			names[i] += " (default)"
		}
	}
	return orList(names)
}

// embedders are the embedders --embedder names. The vector store is opened
// for the chosen one's dimension.
var embedders = table[embed.Embedder]{
	{
		name:  "onnx",
		about: "a sentence-embedding model run in-process by ONNX Runtime, fetched on first start",
		check: func(cfg *Config, _ string) error { return cfg.Embedder.checkONNX() },
		open:  openONNX,
	},
	{
		name:  "local",
		about: "built in, in-process: hashes words, no model",
		check: func(cfg *Config, _ string) error { return cfg.Embedder.checkLocal() },
		open: func(_ context.Context, a *app) (embed.Embedder, error) {
			return local.New(local.Config{Dim: a.cfg.Embedder.Dim}), nil
		},
	},
}

func (c EmbedderConfig) checkLocal() error {
	if err := (local.Config{Dim: c.Dim}).Validate(); err != nil {
		return fmt.Errorf("--embed-dim %d: %w", c.Dim, err)
	}
	return nil
}

// checkONNX checks the onnx embedder's flags, and the local embedder's,
// which it may fall back to.
func (c EmbedderConfig) checkONNX() error {
	var errs []error
	if _, ok := onnx.Lookup(c.Model); !ok {
		errs = append(errs, fmt.Errorf("--embed-model %q: use %s", c.Model, modelChoices()))
	}
	if c.ModelsDir == "" {
		errs = append(errs, errors.New("--models-dir must be set: there is no user cache directory to default to"))
	}
	if c.Batch < 1 {
		errs = append(errs, errors.New("--embed-batch must be at least 1"))
	}
	return errors.Join(append(errs, c.checkLocal())...)
}

// openONNX opens the onnx embedder, fetching the runtime and the model into
// the models directory first when they are not there. When they cannot be
// fetched or opened, a process whose vectors are its own (the local vector
// store) says so in one line and falls back to the built-in embedder; one
// that shares its vector store fails instead, since vectors of two models in
// one store would spoil every search in it.
func openONNX(ctx context.Context, a *app) (embed.Embedder, error) {
	c := a.cfg.Embedder
	e, err := loadONNX(ctx, c, fetcher(os.Stderr, a.log), a.log)
	if err == nil {
		return e, nil
	}
	if ctx.Err() != nil || a.cfg.Vectors.Name != "local" {
		return nil, fmt.Errorf("embedder: onnx model %s unavailable: %w (run `apiary models pull --model %s --models-dir %s` where it can be fetched, or choose --embedder local)",
			c.Model, err, c.Model, c.ModelsDir)
	}
	a.log.Warn(fmt.Sprintf("onnx model %s unavailable; falling back to the built-in hashing embedder; run `apiary models pull --model %s --models-dir %s` to fetch it",
		c.Model, c.Model, c.ModelsDir), "err", err)
	a.cfg.Embedder.Name = "local" // the embedder the logs name from here on
	return local.New(local.Config{Dim: c.Dim}), nil
}

// loadONNX opens the model c names, pulling it first when it is missing.
func loadONNX(ctx context.Context, c EmbedderConfig, f artifact.Fetcher, log *slog.Logger) (*onnx.Embedder, error) {
	if err := onnx.Available(c.ModelsDir, c.Model); err != nil {
		log.Info("fetching the onnx runtime and model once; they are kept in the models directory", "model", c.Model, "models_dir", c.ModelsDir, "missing", err.Error())
		if err := onnx.Pull(ctx, c.ModelsDir, c.Model, f); err != nil {
			return nil, err
		}
	}
	return onnx.New(onnx.Config{ModelsDir: c.ModelsDir, Model: c.Model, BatchSize: c.Batch})
}

// testMirrorEnv is for tests only: a base URL that artifacts are downloaded
// from instead of their hosts (their pinned digests are checked all the
// same). cmd/apiary's tests point it at a local server, so that no test
// downloads from the internet.
const testMirrorEnv = "APIARY_TEST_ARTIFACT_MIRROR"

// fetcher downloads artifacts, drawing a progress bar on w when it is a
// terminal and logging progress through log otherwise.
func fetcher(w io.Writer, log *slog.Logger) artifact.Fetcher {
	f := artifact.Fetcher{Progress: artifact.Log(log), Mirror: os.Getenv(testMirrorEnv)}
	if artifact.Terminal(w) {
		f.Progress = artifact.Bar(w)
	}
	return f
}
