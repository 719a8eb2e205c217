package main

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
)

// modelFlags runs the server with the onnx model when the test models are
// there (make test fetches them), and with the built-in embedder otherwise.
func modelFlags() []string {
	if dir := os.Getenv("APIARY_TEST_MODELS_DIR"); dir != "" {
		return []string{"--embedder", "onnx", "--models-dir", dir}
	}
	return nil
}

// A real PDF and a real DOCX, uploaded as files through multipart, are
// extracted and their text is found by a query; the PDF's chunks carry the
// page their text is on.
func TestServeIngestsPDFAndDOCXUploads(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	s := startServer(t, t.TempDir(), token, modelFlags()...)

	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, f := range []struct{ file, contentType string }{ // a file's name is its document id
		{"hive.pdf", "application/pdf"},
		{"hive.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
	} {
		data, err := os.ReadFile(filepath.Join("..", "..", "pipeline", "extract", "testdata", f.file))
		require.NoError(t, err)
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", `form-data; name="file"; filename="`+f.file+`"`)
		h.Set("Content-Type", f.contentType)
		p, err := w.CreatePart(h)
		require.NoError(t, err)
		_, err = p.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	req, err := http.NewRequest(http.MethodPost, s.base+"/v1/ingest", &body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&accepted))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	job := s.waitJob(token, accepted.JobID, 120*time.Second)
	require.Equal(t, "succeeded", job.Status, "job: %+v", job)
	require.Equal(t, 2, job.Counts.DocumentsDone)

	type result struct {
		DocumentID string `json:"document_id"`
		Text       string `json:"text"`
		Pages      *struct {
			First int `json:"first"`
			Last  int `json:"last"`
		} `json:"pages"`
	}
	var answer struct {
		Results []result `json:"results"`
	}
	// On the PDF's second page only.
	code := s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "how to catch a swarm hanging from a branch", "top_k": 10}, &answer)
	require.Equal(t, http.StatusOK, code)
	found := map[string]result{}
	for _, r := range answer.Results {
		if _, ok := found[r.DocumentID]; !ok {
			found[r.DocumentID] = r
		}
	}
	require.Contains(t, found, "hive.pdf", "results: %+v", answer.Results)
	require.Contains(t, found, "hive.docx", "results: %+v", answer.Results)
	pdf := found["hive.pdf"]
	require.Contains(t, pdf.Text, "swarm hanging from a branch")
	require.NotNil(t, pdf.Pages, "a PDF chunk carries its pages")
	require.Equal(t, 2, pdf.Pages.Last)
	require.Contains(t, found["hive.docx"].Text, "swarm hanging from a branch")
}
