package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
)

// TestServeSurvivesHostileInput sends, to one `apiary serve` process, the
// inputs that once took it down: a CSV whose one huge header cell is
// repeated before every value, a JSON document whose long key path is
// repeated before every leaf, deeply nested HTML, a metadata bomb and 16
// concurrent 30 MiB bodies. The process must stay up, stay under 1 GiB
// resident at its peak, fail each bomb with a clear reason, and then ingest
// and answer a normal request.
func TestServeSurvivesHostileInput(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	s := startServer(t, t.TempDir(), token, "--rate-limit", "10000", "--rate-burst", "10000")

	bombs := map[string][]byte{
		"bomb.csv":  csvBomb(),
		"bomb.json": jsonKeyPathBomb(),
		"deep.html": deepHTML(),
	}
	for name, body := range bombs {
		code, raw := s.upload(token, name, body)
		require.Equal(t, http.StatusAccepted, code, "%s: %s", name, raw)
		var accepted struct {
			JobID string `json:"job_id"`
		}
		require.NoError(t, json.Unmarshal(raw, &accepted))
		j := s.waitJob(token, accepted.JobID, 2*time.Minute)
		t.Logf("%s (%d bytes): job %s, %+v", name, len(body), j.Status, j.Counts)
		require.Equal(t, 1, j.Counts.DocumentsTotal, name)
		require.Equal(t, 1, j.Counts.DocumentsDone+j.Counts.DocumentsFailed, name)
		require.Less(t, j.Counts.Chunks, 5000, "%s was amplified into too many chunks", name)
	}

	// Metadata bomb: a 1 MiB metadata value beside 256 KiB of text.
	var problem struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	code := s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": []map[string]any{{
		"id": "meta", "text": strings.Repeat("pollen ", 256<<10/7), "metadata": map[string]string{"k": strings.Repeat("m", 1<<20)},
	}}}, &problem)
	require.Equal(t, http.StatusBadRequest, code, "a 1 MiB metadata value must be refused")
	require.Contains(t, problem.Detail, "metadata")

	// 16 concurrent 30 MiB bodies, each a document whose id is missing at
	// the very end, so that every one is read and decoded in full.
	var wg sync.WaitGroup
	codes := make([]int, 16)
	for i := range codes {
		wg.Go(func() {
			codes[i] = s.rawPost(token, "/v1/ingest", "application/json", bigBody(30<<20))
		})
	}
	wg.Wait()
	for i, c := range codes {
		require.Contains(t, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests, http.StatusServiceUnavailable}, c, "body %d", i)
	}

	// Still alive, and still useful.
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": tourDocs}, &accepted))
	j := s.waitJob(token, accepted.JobID, time.Minute)
	require.Equal(t, "succeeded", j.Status)
	var answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
		} `json:"results"`
	}
	require.Equal(t, http.StatusOK, s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "basalt lava of the shield volcano", "top_k": 3}, &answer))
	require.NotEmpty(t, answer.Results)
	require.Equal(t, "volcano", answer.Results[0].DocumentID)

	peak := s.peakRSS()
	t.Logf("peak resident memory: %d MiB", peak>>20)
	require.Less(t, peak, int64(1<<30), "apiary serve peaked above 1 GiB resident")
}

// csvBomb is a 1 MiB header cell followed by 8,000 one-cell rows.
func csvBomb() []byte {
	var b bytes.Buffer
	b.WriteString(strings.Repeat("h", 1<<20))
	b.WriteByte('\n')
	for i := range 8000 {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.Bytes()
}

// jsonKeyPathBomb nests eight 4 KiB keys (a 32 KiB path) over 30,000 leaves.
func jsonKeyPathBomb() []byte {
	var b bytes.Buffer
	for i := range 8 {
		fmt.Fprintf(&b, `{"%s":`, strings.Repeat(string(rune('a'+i)), 4<<10))
	}
	b.WriteByte('[')
	for i := range 30000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i % 10))
	}
	b.WriteByte(']')
	b.WriteString(strings.Repeat("}", 8))
	return b.Bytes()
}

// deepHTML nests 100,000 list items, each with a word.
func deepHTML() []byte {
	var b bytes.Buffer
	b.WriteString("<html><body>")
	for range 100000 {
		b.WriteString("<ul><li>x")
	}
	return b.Bytes()
}

// bigBody is a JSON ingest body of about n bytes whose one document has no id.
func bigBody(n int) io.Reader {
	prefix := `{"documents":[{"text":"`
	suffix := `","id":""}]}`
	return io.MultiReader(strings.NewReader(prefix), io.LimitReader(repeatReader('w'), int64(n-len(prefix)-len(suffix))), strings.NewReader(suffix))
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// upload posts one file as a multipart ingest and returns the status and body.
func (s *server) upload(token, name string, content []byte) (int, []byte) {
	s.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", name)
	require.NoError(s.t, err)
	_, err = fw.Write(content)
	require.NoError(s.t, err)
	require.NoError(s.t, mw.Close())
	req, err := http.NewRequest(http.MethodPost, s.base+"/v1/ingest", &body)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, raw
}

// rawPost streams body to path and returns the status code, or -1 when the
// request failed in transport. Safe from any goroutine.
func (s *server) rawPost(token, path, contentType string, body io.Reader) int {
	req, err := http.NewRequest(http.MethodPost, s.base+path, body)
	if err != nil {
		return -1
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// peakRSS is the process's peak resident set size in bytes (VmHWM).
func (s *server) peakRSS() int64 {
	s.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	require.NoError(s.t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(s.t, err)
			return kb << 10
		}
	}
	s.t.Fatal("no VmHWM in /proc status")
	return 0
}
