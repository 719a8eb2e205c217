package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
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

// TestAttackStalledBodiesOfOneAccountDoNotStarveAnother: the body budget is
// global and a body holds its whole Content-Length from its first byte to
// its last, which at the default minimum rate (16 KiB/s after 10 s) may be
// half an hour for 32 MiB. Against `apiary serve`, one account's three
// connections declaring 32 MiB and sending ~1 KiB/s took all of the default
// budget (3 × 32 MiB): every other account's ingest and query answered 503
// after 2 s, for as long as the trickle lasted. An account must not be able
// to take the whole budget: another account's small body still goes through.
func TestAttackStalledBodiesOfOneAccountDoNotStarveAnother(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	e := newEnv(t, func(c *Config, _ *Deps) {
		c.BodyLimit = limit
		c.MaxBodyBytesInFlight = 3 * limit // the default ratio
		c.BodyWait = 50 * time.Millisecond
	})
	_, otherEditor := e.otherAccount("quiet")
	body := `{"documents":[{"id":"big","text":"` + strings.Repeat("a", limit-100) + `"}]}`
	release := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	for range 3 {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/v1/ingest", &stalledBody{release: release, r: strings.NewReader(body)})
			req.ContentLength = limit // declared; the trickle never gets there
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+e.editor)
			e.srv.Echo().ServeHTTP(httptest.NewRecorder(), req)
		})
	}
	// Wait until the noisy account's bodies are admitted (or refused).
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.bodies.inFlight() < 2*limit && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	small := jsonBody(map[string]any{"documents": []map[string]any{{"id": "q", "text": "a quiet account's document"}}})
	rec := e.do(http.MethodPost, "/v1/ingest", otherEditor, small)
	require.Equal(t, http.StatusAccepted, rec.Code, "another account's 60-byte body while one account stalls %d bytes: %s", e.srv.bodies.inFlight(), rec.Body.String())
}

// TestAttackMultipartStopsAtTheDocumentLimit: a multipart body of many
// one-byte files was parsed whole (a header map, a copy and a Document per
// part) before the count was checked: a 31 MiB body of 397,768 parts took
// 3 s and raised the server's resident memory by 277 MB, three at once to
// 1.59 GB, for a 400. Parsing stops at the first file over the limit. Not
// parallel: it reads the allocation counter.
func TestAttackMultipartStopsAtTheDocumentLimit(t *testing.T) {
	var b strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&b, "--XyZb\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f%d.txt\"\r\n\r\nx\r\n", i)
	}
	b.WriteString("--XyZb--\r\n")
	body := []byte(b.String())
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := decodeIngestMultipart(body, "XyZb", ingestLimits{maxDocuments: 1000, maxIDLen: 256})
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte body: %d bytes allocated (%v)", len(body), alloc, err)
	require.ErrorContains(t, err, "the limit is 1000")
	require.LessOrEqual(t, alloc, uint64(len(body)), "%d bytes allocated for a body of %d", alloc, len(body))
}

// TestAttackIngestJSONStopsAtTheDocumentLimit: a JSON ingest body was
// decoded whole into []ingestDocument (56 bytes per element, grown by
// doubling) before the document count was checked: a 31 MiB body of "{},"
// took 15.7 s and raised the server's VmHWM from 38 MB to 2.34 GB, for a 400.
// Not parallel: it reads the allocation counter.
func TestAttackIngestJSONStopsAtTheDocumentLimit(t *testing.T) {
	body := []byte(`{"documents":[` + strings.Repeat("{},", 1<<20) + `{}]}`)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeIngestJSON(body, ingestLimits{maxDocuments: 1000, maxIDLen: 256})
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte body: %d bytes allocated (%v)", len(body), alloc, err)
	require.ErrorContains(t, err, "the limit is 1000")
	require.LessOrEqual(t, alloc, uint64(4*len(body)+1<<20), "%d bytes allocated for a body of %d", alloc, len(body))
}
