package chunk_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/pipeline/chunk"
)

// TestAttackSplitAllocationFollowsTheText: text of one-letter words (or Han
// characters, a token each) is legitimate, and a document may be 32 MiB.
// Split keeps three growing slices per token (starts, ends, strength) and,
// when every boundary is a word boundary, one leaf per token: ~60 bytes
// allocated per 2-byte token. A 30 MiB upload of "a a a …" raised the
// server's VmHWM to 1.07 GB (one document; four workers run four). Not
// parallel: it reads the allocation counter.
func TestAttackSplitAllocationFollowsTheText(t *testing.T) {
	for name, text := range map[string]string{
		"one-letter words": strings.Repeat("a ", 2<<20),
		"han":              strings.Repeat("蜂", 1<<20),
	} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		pieces := chunk.Split(chunk.Config{}, text)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes of text, %d pieces: %d bytes allocated (%.1f×)", name, len(text), len(pieces), alloc, float64(alloc)/float64(len(text)))
		require.LessOrEqual(t, alloc, uint64(8*len(text)+1<<20), "%s: %d bytes allocated for %d bytes of text", name, alloc, len(text))
	}
}

// TestAttackPieceBytesAreBounded: a piece is bounded in tokens, but white
// space is not counted, so two words around 30 MiB of line breaks are one
// 30 MiB piece. Each piece is embedded, sealed, stored and sent back whole
// by every query that finds it: five such uploads made a 32-byte query
// (top_k 5) answer 314 MB and raised the server's VmHWM to 2.39 GB; top_k
// 100 over a hundred of them would ask for 6 GB. A piece's bytes must be
// bounded too (white space between pieces need not be in any piece).
func TestAttackPieceBytesAreBounded(t *testing.T) {
	t.Parallel()
	const bound = 64 << 10 // 512 tokens of 8 runes of 4 bytes is 16 KiB
	for name, text := range map[string]string{
		"line breaks": "bee " + strings.Repeat("\n", 1<<20) + " bee",
		"spaces":      strings.Repeat("bee"+strings.Repeat(" ", 8<<10), 200),
	} {
		for _, p := range chunk.Split(chunk.Config{}, text) {
			require.LessOrEqual(t, len(p.Text), bound, "%s: a piece of %d bytes (%d tokens)", name, len(p.Text), chunk.CountTokens(p.Text))
		}
	}
}
