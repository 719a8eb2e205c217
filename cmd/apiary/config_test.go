package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/pipeline/embed/onnx"
	"github.com/apiaryhq/apiary/pipeline/embed/openai"
)

// TestConfigFromEnvironment: every flag takes its APIARY_* variable, and a
// value that does not parse is reported by flagSet, naming the variable.
func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("APIARY_WORKERS", "7")
	t.Setenv("APIARY_LEASE", "90s")
	t.Setenv("APIARY_RATE_LIMIT", "12.5")
	t.Setenv("APIARY_ALLOW_PRIVATE_WEBHOOKS", "true")
	t.Setenv("APIARY_QUEUE", "sqs")
	t.Setenv("APIARY_EMBEDDER", "local")
	var cfg Config
	fs, envErr := flagSet("serve", &cfg)
	require.NoError(t, envErr)
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, 7, cfg.Workers.Count)
	require.Equal(t, 90*time.Second, cfg.Workers.Lease)
	require.InDelta(t, 12.5, cfg.API.RateLimit, 1e-9)
	require.True(t, cfg.Webhooks.AllowPrivate)
	require.Equal(t, "sqs", cfg.Queue.Name)
	require.Equal(t, "local", cfg.Embedder.Name)
	require.NoError(t, cfg.Validate("serve"))

	t.Setenv("APIARY_MAX_ATTEMPTS", "many")
	t.Setenv("APIARY_SHUTDOWN_TIMEOUT", "soon")
	cfg = Config{}
	fs, envErr = flagSet("serve", &cfg)
	require.NoError(t, fs.Parse(nil))
	err := checkConfig(envErr, &cfg, "serve")
	require.Error(t, err)
	require.Contains(t, err.Error(), `APIARY_MAX_ATTEMPTS="many" is not a whole number`)
	require.Contains(t, err.Error(), `APIARY_SHUTDOWN_TIMEOUT="soon" is not a duration`)

	// A later flag set reports its own environment, not an earlier one's.
	t.Setenv("APIARY_MAX_ATTEMPTS", "3")
	t.Setenv("APIARY_SHUTDOWN_TIMEOUT", "5s")
	cfg = Config{}
	_, envErr = flagSet("serve", &cfg)
	require.NoError(t, envErr)

	// api and worker processes share NATS and vectors with others.
	cfg = Config{}
	fs, envErr = flagSet("api", &cfg)
	require.NoError(t, envErr)
	require.NoError(t, fs.Parse(nil))
	err = cfg.Validate("api")
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "--nats-url") && strings.Contains(err.Error(), "--vectors milvus"), err.Error())
}

// TestAdapterChoices: each port's flag takes the names in its table, and
// refuses others naming the choices; an adapter's own needs are checked
// only when it is chosen.
func TestAdapterChoices(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" is valid
	}{
		{[]string{"--queue", "jetstream", "--keys", "local", "--vectors", "local", "--embedder", "local"}, ""},
		{nil, ""}, // the defaults: onnx, with the default model, in the user's cache
		{[]string{"--queue", "kafka"}, `--queue "kafka": use jetstream or sqs`},
		{[]string{"--keys", "vault"}, `--keys "vault": use local or awskms`},
		{[]string{"--vectors", "pgvector"}, `--vectors "pgvector": use local or milvus`},
		{[]string{"--vectors", "milvus"}, "--vectors milvus needs --milvus-addr HOST:PORT"},
		{[]string{"--vectors", "milvus", "--milvus-addr", "milvus:19530"}, ""},
		{[]string{"--embedder", "cohere"}, `--embedder "cohere": use onnx, local, openai or bedrock`},
		{[]string{"--embedder", "onnx", "--embed-model", "bge-small-en-v1.5-q", "--embed-batch", "8", "--models-dir", "/models"}, ""},
		{[]string{"--embed-model", "gpt-7"}, `--embed-model "gpt-7": use all-minilm-l6-v2-q (default), all-minilm-l6-v2 or bge-small-en-v1.5-q`},
		{[]string{"--embed-batch", "0"}, "--embed-batch must be at least 1"},
		{[]string{"--models-dir", ""}, "--models-dir must be set"},
		{[]string{"--embedder", "local", "--embed-model", "gpt-7", "--embed-batch", "0"}, ""}, // the onnx embedder's flags, unused
		{[]string{"--embed-dim", "4"}, "--embed-dim 4: local: Dim must be between 8 and 65536"},
		{[]string{"--source-api-urls", "github=https://ghe.example.com/api/v3, notion=http://127.0.0.1:9"}, ""},
		{[]string{"--source-api-urls", "gitlab=https://gitlab.example.com"}, `--source-api-urls: "gitlab=https://gitlab.example.com" is not provider=http(s)://url`},
		{[]string{"--source-api-urls", "github=ftp://x"}, "is not provider=http(s)://url"},
		{[]string{"--gdrive-scope", "drive.file"}, ""},
		{[]string{"--gdrive-scope", "drive"}, "--gdrive-scope must be drive.readonly or drive.file"},
	} {
		var cfg Config
		fs, envErr := flagSet("serve", &cfg)
		require.NoError(t, envErr)
		require.NoError(t, fs.Parse(tc.args))
		err := cfg.Validate("serve")
		if tc.want == "" {
			require.NoError(t, err, tc.args)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.args)
	}
}

// --outage-give-up is bounded so that the deliveries it allows a job stay
// under what an SQS redrive policy can count (1000).
func TestOutageGiveUpFitsTheRedrivePolicy(t *testing.T) {
	for value, ok := range map[string]bool{"1h": true, "24h": true, "25h": false, "0s": false} {
		t.Setenv("APIARY_OUTAGE_GIVE_UP", value)
		var cfg Config
		fs, envErr := flagSet("serve", &cfg)
		require.NoError(t, envErr)
		require.NoError(t, fs.Parse([]string{"--max-attempts", "20"}))
		err := cfg.Validate("serve")
		if !ok {
			require.ErrorContains(t, err, "--outage-give-up must be from 1s to 24h", value)
			continue
		}
		require.NoError(t, err, value)
		require.LessOrEqual(t, cfg.Workers.maxReceiveCount(), 1000, value)
	}
}

// The body limit stays under what the staging store holds, so that every
// request the limit lets in can be staged.
func TestBodyLimitFitsTheStagingStore(t *testing.T) {
	for value, ok := range map[string]bool{"63": true, "64": false, "0": false} {
		t.Setenv("APIARY_BODY_LIMIT_MIB", value)
		var cfg Config
		fs, envErr := flagSet("serve", &cfg)
		require.NoError(t, envErr)
		require.NoError(t, fs.Parse(nil))
		err := cfg.Validate("serve")
		if ok {
			require.NoError(t, err, value)
			continue
		}
		require.ErrorContains(t, err, "--body-limit-mib must be 1 to 63", value)
	}
}

// The default embedder is the onnx one with the default model, its files
// kept in the user's cache directory unless APIARY_MODELS_DIR says otherwise.
func TestEmbedderDefaults(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("APIARY_MODELS_DIR", "")
	os.Unsetenv("APIARY_MODELS_DIR") // restored by t.Setenv
	cache, err := os.UserCacheDir()
	require.NoError(t, err)
	var cfg Config
	fs, envErr := flagSet("serve", &cfg)
	require.NoError(t, envErr)
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, EmbedderConfig{Name: "onnx", Dim: 384, ModelsDir: filepath.Join(cache, "apiary", "models"), Batch: 32, BatchSize: openai.DefaultBatchSize}, cfg.Embedder)
	require.Equal(t, onnx.DefaultModel, cfg.Embedder.onnxModel())

	t.Setenv("APIARY_MODELS_DIR", "/srv/models")
	cfg = Config{}
	fs, _ = flagSet("serve", &cfg)
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, "/srv/models", cfg.Embedder.ModelsDir)
}
