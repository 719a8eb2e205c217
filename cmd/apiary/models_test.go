package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/internal/artifact/artifacttest"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/embed/onnx"
)

// testModelsDir returns a models directory holding the runtime and the
// models of APIARY_TEST_MODELS_DIR (written by scripts/test-services.sh
// start), or skips the test. The files are symbolic links, so that a test
// writes its locks and marks in a directory of its own.
func testModelsDir(t *testing.T) string {
	t.Helper()
	src := os.Getenv("APIARY_TEST_MODELS_DIR")
	if src == "" {
		t.Skip("APIARY_TEST_MODELS_DIR is unset: it names a models directory with the ONNX Runtime and the models (scripts/test-services.sh start writes it)")
	}
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			return err
		}
		return os.Symlink(path, filepath.Join(dst, rel))
	})
	require.NoError(t, err)
	return dst
}

// countingServer answers every request with body (404 when nil) and counts
// the requests.
func countingServer(t *testing.T, body []byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if body == nil {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// regularFiles lists the files under dir but the fetcher's locks.
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && e.Name() != ".lock" {
			files = append(files, path)
		}
		return err
	})
	require.NoError(t, err)
	return files
}

// The default: a real model answers questions in other words than the
// documents'. (The hashing embedder shares no word between these queries
// and their answers.)
func TestServeWithTheONNXModel(t *testing.T) {
	modelsDir := testModelsDir(t)
	token, err := api.NewToken()
	require.NoError(t, err)
	s := startServer(t, t.TempDir(), token, "--embedder", "onnx", "--models-dir", modelsDir)
	require.NotContains(t, s.stderr.String(), "falling back")
	require.Contains(t, s.stderr.String(), `"embedder":"onnx"`)

	docs := []ingestDoc{
		{ID: "revenue", Text: "Quarterly revenue grew by twelve percent, driven by strong demand in Europe."},
		{ID: "medicine", Text: "The patient was prescribed antibiotics to treat a bacterial infection of the lungs."},
		{ID: "football", Text: "The striker scored twice in the final minutes and the team won the championship."},
	}
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": docs}, &accepted))
	job := s.waitJob(token, accepted.JobID, 2*time.Minute)
	require.Equal(t, "succeeded", job.Status, job.Errors)

	for query, want := range map[string]string{
		"How much did sales increase?":       "revenue",
		"a doctor gave medicine for disease": "medicine",
		"who won the soccer match":           "football",
	} {
		var answer struct {
			Results []struct {
				DocumentID string `json:"document_id"`
			} `json:"results"`
		}
		require.Equal(t, http.StatusOK, s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": query, "top_k": 3}, &answer))
		require.NotEmpty(t, answer.Results, query)
		require.Equal(t, want, answer.Results[0].DocumentID, query)
	}
}

// logLines decodes the JSON log lines in out whose message contains substr.
func logLines(t *testing.T, out, substr string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, raw := range strings.Split(out, "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(raw), &l) == nil && strings.Contains(l["msg"].(string), substr) {
			lines = append(lines, l)
		}
	}
	return lines
}

// With nothing in the models directory and the artifact host out of reach,
// serve says so in one line and runs the built-in embedder.
func TestServeFallsBackToTheBuiltInEmbedder(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	t.Setenv(testMirrorEnv, gone.URL)
	modelsDir := t.TempDir()
	token, err := api.NewToken()
	require.NoError(t, err)
	s := startServer(t, t.TempDir(), token, "--embedder", "onnx", "--models-dir", modelsDir)

	out := s.stderr.String()
	fallback := logLines(t, out, "falling back")
	require.Len(t, fallback, 1, out)
	require.Equal(t, "WARN", fallback[0]["level"])
	require.Equal(t, "onnx model all-minilm-l6-v2-q unavailable; falling back to the built-in hashing embedder; run `apiary models pull --model all-minilm-l6-v2-q --models-dir "+modelsDir+"` to fetch it",
		fallback[0]["msg"])
	require.Contains(t, fallback[0]["err"], "artifact: fetch "+gone.URL+"/onnxruntime-node/-/onnxruntime-node-1.30.0.tgz: dial tcp")
	require.Len(t, logLines(t, out, "onnx model"), 1, "one line says it")
	require.Contains(t, out, `"embedder":"local"`)
	require.Empty(t, regularFiles(t, modelsDir))

	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": tourDocs}, &accepted))
	require.Equal(t, "succeeded", s.waitJob(token, accepted.JobID, time.Minute).Status)
	var answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
		} `json:"results"`
	}
	require.Equal(t, http.StatusOK, s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "basalt lava of the shield volcano"}, &answer))
	require.Equal(t, "volcano", answer.Results[0].DocumentID)
}

// Only a process whose vector store is its own falls back: one sharing a
// store (Milvus) would mix two models' vectors in it, so it fails.
func TestONNXFallsBackOnlyWithAStoreOfItsOwn(t *testing.T) {
	srv, _ := countingServer(t, nil)
	t.Setenv(testMirrorEnv, srv.URL)
	for vectors, fallsBack := range map[string]bool{"local": true, "milvus": false} {
		var logs testutil.Buffer
		cfg := Config{Embedder: EmbedderConfig{Name: "onnx", Model: onnx.DefaultModel, ModelsDir: t.TempDir(), Batch: 32, Dim: 384}}
		cfg.Vectors.Name = vectors
		a := bareApp(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
		e, err := openONNX(t.Context(), a)
		if !fallsBack {
			require.ErrorContains(t, err, "embedder: onnx model all-minilm-l6-v2-q unavailable: onnx: pull runtime 1.30.0: artifact: fetch "+srv.URL)
			require.ErrorContains(t, err, "or choose --embedder local")
			require.Empty(t, logLines(t, logs.String(), "falling back"))
			continue
		}
		require.NoError(t, err)
		require.IsType(t, &local.Embedder{}, e)
		require.Equal(t, "local", a.cfg.Embedder.Name)
		require.Len(t, logLines(t, logs.String(), "falling back"), 1)
	}
}

func TestModelsPullRefusesAnArtifactThatIsNotThePinnedOne(t *testing.T) {
	fake := artifacttest.Tgz(t, artifacttest.Member{Name: "package/bin/napi-v6/linux/x64/libonnxruntime.so.1", Body: []byte("not the runtime")})
	srv, hits := countingServer(t, fake)
	t.Setenv(testMirrorEnv, srv.URL)
	dir := t.TempDir()
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"models", "pull", "--models-dir", dir}, &out, &errs)
	require.ErrorContains(t, err, "onnx: pull runtime 1.30.0: artifact: fetch "+srv.URL+"/onnxruntime-node/-/onnxruntime-node-1.30.0.tgz: archive sha256 "+artifacttest.Digest(fake)+", want ")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.EqualValues(t, 1, hits.Load())
	require.Empty(t, regularFiles(t, dir), "nothing of the fake is kept")
	require.Empty(t, out.String())

	err = run(context.Background(), []string{"models", "pull", "--models-dir", dir, "--model", "gpt-7"}, &out, &errs)
	require.EqualError(t, err, `models: --model "gpt-7": use all-minilm-l6-v2-q (default), all-minilm-l6-v2 or bge-small-en-v1.5-q, or all`)
	require.EqualValues(t, 1, hits.Load())
}

// Pulling what the models directory holds already downloads nothing.
func TestModelsPullKeepsWhatIsThere(t *testing.T) {
	dir := testModelsDir(t)
	srv, hits := countingServer(t, nil)
	t.Setenv(testMirrorEnv, srv.URL)
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"models", "pull", "--models-dir", dir, "--model", "all-minilm-l6-v2-q", "--model", "all-minilm-l6-v2"}, &out, &errs)
	require.NoError(t, err, errs.String())
	require.Zero(t, hits.Load())
	require.Equal(t, "all-minilm-l6-v2-q: ready in "+filepath.Join(dir, "all-minilm-l6-v2-q-1.20.0-beta30")+"\n"+
		"all-minilm-l6-v2: ready in "+filepath.Join(dir, "all-minilm-l6-v2-1.20.0-beta30")+"\n", out.String())

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"models", "list", "--models-dir", dir}, &out, &errs))
	require.Regexp(t, `(?m)^all-minilm-l6-v2-q \(default\)\s+384\s+mean\s+256\s+yes\s+yes$`, out.String())
	require.Regexp(t, `(?m)^all-minilm-l6-v2\s+384\s+mean\s+256\s+no\s+yes$`, out.String())
}

func TestModelsList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, errs bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"models", "list", "--models-dir", dir}, &out, &errs))
	require.Equal(t, `MODEL                         DIM  POOLING  MAX TOKENS  INT8  PRESENT
all-minilm-l6-v2-q (default)  384  mean     256         yes   no
all-minilm-l6-v2              384  mean     256         no    no
bge-small-en-v1.5-q           384  cls      512         yes   no
models directory: `+dir+"\n", out.String())

	require.ErrorContains(t, run(context.Background(), []string{"models"}, &out, &errs), "models: use apiary models pull or apiary models list")
}
