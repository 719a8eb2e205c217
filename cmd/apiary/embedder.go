package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"

	"github.com/apiaryhq/apiary/internal/artifact"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/bedrock"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/embed/onnx"
	"github.com/apiaryhq/apiary/pipeline/embed/openai"
)

// EmbedderConfig chooses the embedder (--embedder, an entry of embedders).
type EmbedderConfig struct {
	Name      string
	Dim       int    // --embed-dim, of the local embedder
	Model     string // --embed-model: "" is the embedder's default (onnx: a name in onnx.Models)
	ModelsDir string // --models-dir: the runtime and the models, shared by every data dir
	Batch     int    // --embed-batch: texts the onnx embedder runs at once

	// The remote embedders'.
	URL        string // --embed-url: openai's base URL; bedrock's endpoint
	Dimensions int    // --embed-dimensions: 0 is the model's own
	APIVersion string // --embed-api-version: Azure OpenAI's api-version
	BatchSize  int    // --embed-batch-size: texts per openai request
	APIKey     secret // APIARY_EMBED_API_KEY, environment only; never printed
}

// onnxModel is the onnx embedder's model: --embed-model or the default.
func (c EmbedderConfig) onnxModel() string {
	if c.Model == "" {
		return onnx.DefaultModel
	}
	return c.Model
}

func (c *EmbedderConfig) register(f *flags) {
	choice(f, &c.Name, "embedder", embedders, "embedder that turns chunks and queries into vectors")
	f.int(&c.Dim, "embed-dim", 384, "dimension of the local embedder's vectors")
	f.str(&c.Model, "embed-model", "", "the embedder's model (onnx: "+modelChoices()+"; openai: required; bedrock: default "+bedrock.DefaultModel+")")
	registerModelsDir(f, &c.ModelsDir)
	f.int(&c.Batch, "embed-batch", 32, "texts the onnx embedder runs through the model at once")
	f.str(&c.URL, "embed-url", "", "openai: the API's base URL (empty: OpenAI's); bedrock: endpoint URL (empty: AWS's, from AWS_REGION)")
	f.int(&c.Dimensions, "embed-dimensions", 0, "vector size asked of a remote model (0: the model's own)")
	f.str(&c.APIVersion, "embed-api-version", "", "openai: Azure OpenAI's api-version; set, the key goes in the api-key header")
	f.int(&c.BatchSize, "embed-batch-size", openai.DefaultBatchSize, "openai: most texts in one request")
	c.APIKey = secret(os.Getenv("APIARY_EMBED_API_KEY"))
}

// openaiConfig is the openai embedder's configuration in c.
func (c EmbedderConfig) openaiConfig() openai.Config {
	return openai.Config{
		BaseURL: c.URL, Model: c.Model, Dimensions: c.Dimensions, APIKey: string(c.APIKey),
		AzureAPIVersion: c.APIVersion, BatchSize: c.BatchSize,
	}
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
	{
		name:  "openai",
		about: "an OpenAI-compatible embeddings API: OpenAI, Azure OpenAI, vLLM, TEI, Ollama, LiteLLM",
		check: func(cfg *Config, _ string) error {
			c := cfg.Embedder
			if c.Model == "" {
				return errors.New("--embedder openai needs --embed-model, the service's model name (such as text-embedding-3-small)")
			}
			if err := c.openaiConfig().Validate(); err != nil {
				return fmt.Errorf("--embedder openai: %w", err)
			}
			if c.APIKey == "" && (c.URL == "" || c.APIVersion != "") {
				return errors.New("--embedder openai needs the API key in APIARY_EMBED_API_KEY (only a self-hosted --embed-url may go without)")
			}
			return nil
		},
		// Without --embed-dimensions, and for a model of unknown size, New
		// asks the service for one vector to learn its size.
		open: func(ctx context.Context, a *app) (embed.Embedder, error) {
			return openai.New(ctx, a.cfg.Embedder.openaiConfig())
		},
	},
	{
		name:  "bedrock",
		about: "Amazon Bedrock: Titan Text Embeddings v2, Cohere Embed v3",
		check: func(cfg *Config, _ string) error {
			c := cfg.Embedder
			var errs []error
			if err := bedrock.CheckModel(c.Model, c.Dimensions); err != nil {
				errs = append(errs, fmt.Errorf("--embedder bedrock: %w", err))
			}
			if u, err := url.Parse(c.URL); c.URL != "" && (err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http")) {
				errs = append(errs, errors.New("--embedder bedrock: --embed-url must be an http or https URL"))
			}
			if c.APIVersion != "" {
				errs = append(errs, errors.New("--embedder bedrock: --embed-api-version is for Azure OpenAI (--embedder openai)"))
			}
			return errors.Join(errs...)
		},
		open: func(ctx context.Context, a *app) (embed.Embedder, error) {
			aws, err := a.aws(ctx)
			if err != nil {
				return nil, err
			}
			c := a.cfg.Embedder
			return bedrock.New(bedrock.Config{Client: bedrock.NewClient(aws, c.URL), Model: c.Model, Dimensions: c.Dimensions})
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
	if _, ok := onnx.Lookup(c.onnxModel()); !ok {
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
			c.onnxModel(), err, c.onnxModel(), c.ModelsDir)
	}
	a.log.Warn(fmt.Sprintf("onnx model %s unavailable; falling back to the built-in hashing embedder; run `apiary models pull --model %s --models-dir %s` to fetch it",
		c.onnxModel(), c.onnxModel(), c.ModelsDir), "err", err)
	a.cfg.Embedder.Name = "local" // the embedder the logs name from here on
	return local.New(local.Config{Dim: c.Dim}), nil
}

// loadONNX opens the model c names, pulling it first when it is missing.
func loadONNX(ctx context.Context, c EmbedderConfig, f artifact.Fetcher, log *slog.Logger) (*onnx.Embedder, error) {
	if err := onnx.Available(c.ModelsDir, c.onnxModel()); err != nil {
		log.Info("fetching the onnx runtime and model once; they are kept in the models directory", "model", c.onnxModel(), "models_dir", c.ModelsDir, "missing", err.Error())
		if err := onnx.Pull(ctx, c.ModelsDir, c.onnxModel(), f); err != nil {
			return nil, err
		}
	}
	return onnx.New(onnx.Config{ModelsDir: c.ModelsDir, Model: c.onnxModel(), BatchSize: c.Batch})
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
