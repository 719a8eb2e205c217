package api

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAttackDecodeJSONKeyPathsAreNotQuadratic: checkKeys built each value's
// key path as a string (path + "." + key, Sprintf("%s[%d]", path, i)) for
// every value, though the path is only needed for an error message. A
// metadata value is a json.RawMessage, so any JSON is walked there before
// the metadata limits apply: one long key over a long array (or keys nested
// deep) copies the whole path per element. A 384 KiB POST /v1/query (256 KiB
// key over 64k elements) took 7.6 s of CPU before its 400; a 32 MiB body,
// hours. Not parallel: it reads the allocation counter.
func TestAttackDecodeJSONKeyPathsAreNotQuadratic(t *testing.T) {
	var deep strings.Builder
	deep.WriteString(`{"documents":[{"id":"a","text":"x","metadata":{"k":`)
	for range 2000 {
		deep.WriteString(`{"` + strings.Repeat("k", 512) + `":`)
	}
	deep.WriteString("1" + strings.Repeat("}", 2000) + `}}]}`)
	for name, body := range map[string]string{
		"long key over a long array": `{"documents":[{"id":"a","text":"x","metadata":{"` + strings.Repeat("k", 32<<10) + `":[` + strings.Repeat("1,", 32<<10) + `1]}}]}`,
		"long keys nested deep":      deep.String(),
	} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		var req ingestRequest
		err := decodeJSON([]byte(body), &req)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d-byte body: %d bytes allocated in %v (err %v)", name, len(body), alloc, took, err)
		require.LessOrEqual(t, alloc, uint64(64*len(body)+1<<20), "%s: %d bytes allocated for a body of %d", name, alloc, len(body))
	}
}

// TestAttackMetadataErrorsDoNotEchoLongKeys: scalarMap quoted a refused key
// whole ("documents[0].metadata %q is nested"), so a 256 KiB key came back
// as a 262 KB problem detail; CheckMetadata cuts keys to 32 bytes.
func TestAttackMetadataErrorsDoNotEchoLongKeys(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", 256<<10)
	for name, raw := range map[string]string{"nested": "[1]", "null": "null", "bad string": `"\ud800x`} {
		_, err := scalarMap("documents[0].metadata", map[string]json.RawMessage{long: json.RawMessage(raw)})
		require.Error(t, err, name)
		require.Less(t, len(err.Error()), 512, "%s: a %d-byte message", name, len(err.Error()))
	}
}
