package main

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
)

// TestAdapterInAFileOfItsOwn: a new adapter is an entry appended to its
// port's table, which a file of its own does from init (see the README). The
// entry is then a choice of the flag, listed in its errors, checked, and
// opened by the app, with the vector store opened for its dimension. (Not
// parallel: it swaps the package's table and puts it back.)
func TestAdapterInAFileOfItsOwn(t *testing.T) {
	saved := embedders
	t.Cleanup(func() { embedders = saved })
	embedders = append(slices.Clip(saved), adapter[embed.Embedder]{
		name:  "tiny",
		about: "a 16-dimension local embedder, from a test",
		open: func(context.Context, *app) (embed.Embedder, error) {
			return local.New(local.Config{Dim: 16}), nil
		},
	})

	var cfg Config
	fs, err := flagSet("serve", &cfg)
	require.NoError(t, err)
	require.NoError(t, fs.Parse([]string{"--embedder", "nope"}))
	require.ErrorContains(t, cfg.Validate("serve"), `--embedder "nope": use onnx, local, openai, bedrock or tiny`)

	cfg = Config{}
	fs, err = flagSet("serve", &cfg)
	require.NoError(t, err)
	require.NoError(t, fs.Parse([]string{"--embedder", "tiny", "--data-dir", t.TempDir()}))
	require.NoError(t, cfg.Validate("serve"))
	a, err := newApp(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer a.Close()
	require.Equal(t, 16, a.emb.Dim())
}
