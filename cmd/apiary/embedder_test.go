package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEmbedderConfig: each remote embedder names what it misses; the API
// key comes from the environment only and is never printed.
func TestEmbedderConfig(t *testing.T) {
	const key = "sk-config-test-SECRET"
	for _, tc := range []struct {
		args []string
		key  string
		want string // "" is valid
	}{
		{[]string{"--embedder", "openai"}, key, "--embedder openai needs --embed-model"},
		{[]string{"--embedder", "openai", "--embed-model", "text-embedding-3-small"}, "", "needs the API key in APIARY_EMBED_API_KEY"},
		{[]string{"--embedder", "openai", "--embed-model", "text-embedding-3-small"}, key, ""},
		{[]string{"--embedder", "openai", "--embed-model", "nomic-embed-text", "--embed-url", "http://ollama:11434/v1"}, "", ""},
		{[]string{"--embedder", "openai", "--embed-model", "m", "--embed-url", "https://r.openai.azure.com/openai/deployments/d", "--embed-api-version", "2024-10-21"}, "", "needs the API key"},
		{[]string{"--embedder", "openai", "--embed-model", "m", "--embed-url", "ollama:11434"}, "", "BaseURL must be an http or https URL"},
		{[]string{"--embedder", "openai", "--embed-model", "m", "--embed-dimensions", "-3"}, key, "Dimensions must be"},
		{[]string{"--embedder", "openai", "--embed-model", "m", "--embed-batch-size", "0"}, key, ""},
		{[]string{"--embedder", "openai", "--embed-model", "m", "--embed-batch-size", "9000"}, key, "BatchSize must be"},
		{[]string{"--embedder", "bedrock"}, "", ""},
		{[]string{"--embedder", "bedrock", "--embed-model", "cohere.embed-multilingual-v3"}, "", ""},
		{[]string{"--embedder", "bedrock", "--embed-model", "amazon.titan-embed-text-v1"}, "", `--embedder bedrock: bedrock: model "amazon.titan-embed-text-v1": use amazon.titan-embed-text-v2:0`},
		{[]string{"--embedder", "bedrock", "--embed-dimensions", "768"}, "", "offers 1024, 512, 256 dimensions, not 768"},
		{[]string{"--embedder", "bedrock", "--embed-url", "bedrock.local"}, "", "--embed-url must be an http or https URL"},
		{[]string{"--embedder", "bedrock", "--embed-api-version", "2024-10-21"}, "", "--embed-api-version is for Azure OpenAI"},
	} {
		t.Setenv("APIARY_EMBED_API_KEY", tc.key)
		var cfg Config
		fs, envErr := flagSet("serve", &cfg)
		require.NoError(t, envErr)
		require.NoError(t, fs.Parse(tc.args))
		for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg.Embedder)} {
			require.NotContains(t, s, key)
		}
		err := cfg.Validate("serve")
		if tc.want == "" {
			require.NoError(t, err, tc.args)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.args)
		require.NotContains(t, err.Error(), key)
	}
}

// TestOpenOpenAIEmbedder: the openai entry opens with the settings given,
// sends the key from the environment, and probes a model of unknown size.
func TestOpenOpenAIEmbedder(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": []any{map[string]any{"index": 0, "embedding": []float32{0.6, 0.8, 0}}}})
	}))
	defer srv.Close()
	t.Setenv("APIARY_EMBED_API_KEY", "sk-open-test")
	var cfg Config
	fs, _ := flagSet("serve", &cfg)
	require.NoError(t, fs.Parse([]string{"--embedder", "openai", "--embed-model", "small", "--embed-url", srv.URL + "/v1"}))
	require.NoError(t, cfg.Validate("serve"))
	e, err := embedders.open(t.Context(), bareApp(cfg, nil), "openai")
	require.NoError(t, err)
	require.Equal(t, 3, e.Dim())
	require.Equal(t, "openai/small", e.Model())
	require.Equal(t, []string{"Bearer sk-open-test"}, auth)
}
