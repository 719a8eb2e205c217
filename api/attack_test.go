package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// TestAttackStalledBodiesDoNotStarveOtherAccounts: a body held its whole
// Content-Length of the global body budget from its first byte to its last,
// which at the default minimum rate (16 KiB/s after 10 s) may be half an
// hour for 32 MiB. Against `apiary serve`, three connections declaring
// 32 MiB and sending ~1 KiB/s took all of the default budget (3 × 32 MiB):
// every other account's ingest and query answered 503 after 2 s, for as
// long as the trickle lasted. A per-account share (all but one body limit)
// left two accounts able to do it. A body now holds what it has sent and
// the step it reads into next: six stalled bodies of two accounts that have
// sent 4 KiB each hold 6 × 64 KiB, and another account's body goes through.
func TestAttackStalledBodiesDoNotStarveOtherAccounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) {
		c.BodyWait = 50 * time.Millisecond // the defaults otherwise: 32 MiB bodies, 96 MiB budget
	})
	srv := httptest.NewServer(e.srv.Handler())
	t.Cleanup(srv.Close)
	_, noisy := e.otherAccount("noisy")
	_, quiet := e.otherAccount("quiet")
	limit := int(e.srv.cfg.BodyLimit)
	head := ingestBody(limit)[:4<<10]
	for _, token := range []string{e.editor, e.editor, e.editor, noisy, noisy, noisy} {
		u := startUpload(t, srv, token, limit)
		u.send(head)
	}
	waitHeld(t, e.srv.bodies, e.srv.cfg.MaxBodyBytesInFlight, 6*bodyFirstStep, nil)
	small := jsonBody(map[string]any{"documents": []map[string]any{{"id": "q", "text": "a quiet account's document"}}})
	rec := e.do(http.MethodPost, "/v1/ingest", quiet, small)
	require.Equal(t, http.StatusAccepted, rec.Code, "another account's body while two accounts stall six: %s", rec.Body.String())
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
