package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/bedrock"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/embed/openai"
)

// EmbedderConfig chooses the embedder (--embedder, an entry of embedders).
type EmbedderConfig struct {
	Name string
	Dim  int // --embed-dim, of the local embedder

	// The remote embedders'.
	URL        string // --embed-url: openai's base URL; bedrock's endpoint
	Model      string // --embed-model: "" is the embedder's default
	Dimensions int    // --embed-dimensions: 0 is the model's own
	APIVersion string // --embed-api-version: Azure OpenAI's api-version
	BatchSize  int    // --embed-batch-size: texts per openai request
	APIKey     secret // APIARY_EMBED_API_KEY, environment only; never printed
}

func (c *EmbedderConfig) register(f *flags) {
	choice(f, &c.Name, "embedder", embedders, "embedder that turns chunks and queries into vectors")
	f.int(&c.Dim, "embed-dim", 384, "dimension of the local embedder's vectors")
	f.str(&c.URL, "embed-url", "", "openai: the API's base URL (empty: OpenAI's); bedrock: endpoint URL (empty: AWS's, from AWS_REGION)")
	f.str(&c.Model, "embed-model", "", "model of a remote embedder (openai: required; bedrock: default "+bedrock.DefaultModel+")")
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
