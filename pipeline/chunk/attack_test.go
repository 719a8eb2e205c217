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
