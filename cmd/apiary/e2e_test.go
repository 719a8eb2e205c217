package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/storage"
)

// The end-to-end tests run the real `apiary serve` binary as a separate
// process, talk to it over HTTP only, and kill it like an operator would.

var apiaryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "apiary-e2e-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// No test downloads a model, or writes to the user's cache: the tests
	// choose --embedder local, or a models directory of their own, and any
	// artifact a test asks for anyway comes from this server, which has none.
	noArtifacts := httptest.NewServer(http.NotFoundHandler())
	os.Setenv(testMirrorEnv, noArtifacts.URL)
	os.Setenv("APIARY_MODELS_DIR", filepath.Join(dir, "models"))
	apiaryBin = filepath.Join(dir, "apiary")
	build := exec.Command("go", "build", "-o", apiaryBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build apiary:", err)
		os.Exit(1)
	}
	code := m.Run()
	noArtifacts.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one `apiary serve` process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	base    string
	dataDir string
	token   string
	stdout  *testutil.Buffer
	stderr  *testutil.Buffer
	done    chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// startServer runs `apiary serve` on dataDir and waits until it is ready.
func startServer(t *testing.T, dataDir, token string, extra ...string) *server {
	t.Helper()
	return startRole(t, "serve", dataDir, token, extra...)
}

// startRole runs `apiary <role>` and waits until /readyz answers 200 and,
// for a worker, its pool has started. It runs the built-in embedder unless
// extra chooses another.
func startRole(t *testing.T, role, dataDir, token string, extra ...string) *server {
	t.Helper()
	return startRoleAt(t, freeAddr(t), role, dataDir, token, extra...)
}

// startRoleAt is startRole listening on addr (known before the start, for
// flags that name it, like --public-url).
func startRoleAt(t *testing.T, addr, role, dataDir, token string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dataDir: dataDir, token: token, stdout: &testutil.Buffer{}, stderr: &testutil.Buffer{}, done: make(chan struct{})}
	s.base = "http://" + addr
	args := []string{role, "--data-dir", dataDir, "--addr", addr, "--embedder", "local"}
	s.cmd = exec.Command(apiaryBin, append(args, extra...)...)
	s.cmd.Env = append(os.Environ(), "APIARY_BOOTSTRAP_TOKEN="+token)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	require.NoError(t, s.cmd.Start())
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("apiary %s stderr:\n%s", role, s.stderr.String())
		}
	})
	ready := func() bool {
		if role == "worker" && !strings.Contains(s.stderr.String(), "workers started") {
			return false
		}
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(90 * time.Second)
	for !ready() {
		select {
		case <-s.done:
			t.Fatalf("apiary %s exited early:\n%s", role, s.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("apiary %s never became ready:\n%s", role, s.stderr.String())
		}
	}
	return s
}

func (s *server) kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-s.done
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("apiary did not stop after SIGTERM:\n%s", s.stderr.String())
	}
}

// call sends a JSON request with token, decodes the JSON answer into out
// and returns the status code; any transport or decoding error fails the test.
func (s *server) call(token, method, path string, body, out any) int {
	s.t.Helper()
	code, err := s.try(token, method, path, body, out)
	require.NoError(s.t, err)
	return code
}

// try is call without failing the test: for conditions polled from another
// goroutine (require.Eventually), where a test may not be failed.
func (s *server) try(token, method, path string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("body %s: %w", raw, err)
		}
	}
	return resp.StatusCode, nil
}

type jobView struct {
	ID     string         `json:"id"`
	Status string         `json:"status"`
	Counts apiary.Counts  `json:"counts"`
	Errors []any          `json:"errors"`
	Extra  map[string]any `json:"-"`
}

func (s *server) waitJob(token, id string, timeout time.Duration) jobView {
	s.t.Helper()
	var j jobView
	require.Eventually(s.t, func() bool {
		code, err := s.try(token, http.MethodGet, "/v1/jobs/"+id, nil, &j)
		return err == nil && code == http.StatusOK && apiary.JobStatus(j.Status).Final()
	}, timeout, 100*time.Millisecond, "job %s never finished", id)
	return j
}

var tourDocs = []ingestDoc{
	{ID: "bees", Title: "Honey bees", Text: "Honey bees communicate the location of flowers with a waggle dance performed inside the hive. Worker bees forage for nectar and pollen across several kilometres."},
	{ID: "volcano", Title: "Volcanoes", Text: "The basalt lava of the shield volcano cooled into hexagonal columns along the northern coastline. Geologists measured the tremors before every eruption."},
	{ID: "bread", Title: "Sourdough", Text: "A sourdough starter ferments flour and water with wild yeast and lactic acid bacteria. Bakers feed the starter daily and proof the dough overnight."},
}

func TestServeEndToEnd(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	s := startServer(t, dataDir, token)

	// The one port open is the API's: the embedded NATS server, which holds
	// the token records, has none that another local process could write to.
	u, err := url.Parse(s.base)
	require.NoError(t, err)
	require.Equal(t, []string{u.Port()}, listeningPorts(t, s.cmd.Process.Pid))

	var accepted struct {
		JobID  string `json:"job_id"`
		Status string `json:"status"`
	}
	code := s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": tourDocs}, &accepted)
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, "queued", accepted.Status)

	job := s.waitJob(token, accepted.JobID, 60*time.Second)
	require.Equal(t, "succeeded", job.Status)
	require.Equal(t, 3, job.Counts.DocumentsDone)
	require.Zero(t, job.Counts.DocumentsFailed)

	var answer struct {
		Results []struct {
			DocumentID string  `json:"document_id"`
			Text       string  `json:"text"`
			Score      float32 `json:"score"`
		} `json:"results"`
	}
	code = s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "basalt lava of the shield volcano", "top_k": 3}, &answer)
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, answer.Results)
	require.Equal(t, "volcano", answer.Results[0].DocumentID)
	require.Contains(t, answer.Results[0].Text, "hexagonal columns")

	// A second account sees nothing of the first.
	var acct struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	require.Equal(t, http.StatusCreated, s.call(token, http.MethodPost, "/v1/accounts", map[string]string{"name": "other"}, &acct))
	require.NotEmpty(t, acct.Token)
	require.Equal(t, http.StatusNotFound, s.call(acct.Token, http.MethodGet, "/v1/jobs/"+accepted.JobID, nil, nil))
	answer.Results = nil
	require.Equal(t, http.StatusOK, s.call(acct.Token, http.MethodPost, "/v1/query", map[string]any{"query": "basalt lava of the shield volcano"}, &answer))
	require.Empty(t, answer.Results)
	require.Equal(t, http.StatusNotFound, s.call(acct.Token, http.MethodGet, "/v1/documents/volcano", nil, nil))

	// Nothing readable at rest: no sentence of any document, and not the
	// token, appears in any file under the data dir — while running and after
	// a clean stop.
	assertNoPlaintext(t, dataDir, token)
	s.stop()
	assertNoPlaintext(t, dataDir, token)
	// Nor a vector: the local store keeps them sealed (read the files
	// before the store is opened again, which would seal what is clear).
	files := dataFiles(t, dataDir)
	vs, done := openStoppedVectors(t, dataDir)
	chunks, err := vs.Scan(t.Context(), apiary.DefaultAccount, "", 100, storage.VectorFilter{})
	require.NoError(t, err)
	requireNoVectors(t, files, chunks)
	done()
	require.NotContains(t, s.stderr.String(), token, "the bootstrap token was logged")
	for _, d := range tourDocs {
		require.NotContains(t, s.stderr.String(), d.Text[:40], "document text was logged")
	}
}

// listeningPorts returns the TCP ports process pid listens on, from /proc
// (the test skips where there is none).
func listeningPorts(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("no /proc to list the process's sockets: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var ports []string
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			port, err := strconv.ParseUint(hexPort, 16, 16)
			require.NoError(t, err)
			ports = append(ports, strconv.FormatUint(port, 10))
		}
	}
	return ports
}

func assertNoPlaintext(t *testing.T, dataDir, token string) {
	t.Helper()
	var needles []string
	for _, d := range tourDocs {
		for _, sentence := range strings.Split(d.Text, ". ") {
			needles = append(needles, strings.TrimSuffix(sentence, "."))
		}
		needles = append(needles, d.Title)
	}
	files := 0
	err := filepath.WalkDir(dataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, n := range needles {
			require.False(t, bytes.Contains(b, []byte(n)), "%s holds plaintext %q", path, n)
		}
		require.False(t, bytes.Contains(b, []byte(token)), "%s holds the bootstrap token", path)
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, files, 3, "the data dir should hold the NATS store, keyring and vector store")
}

// TestServeSurvivesKill9 kills the server mid-job and restarts it: the job
// finishes and every document has exactly its own chunks.
func TestServeSurvivesKill9(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	// One job at a time, slow enough per document that we can kill it mid-way.
	flags := []string{"--workers", "1", "--lease", "3s", "--chunk-size", "64", "--chunk-overlap", "8", "--rate-limit", "10000", "--rate-burst", "10000", "--account-rate-limit", "100000", "--account-rate-burst", "100000"}
	s := startServer(t, dataDir, token, flags...)

	const n = 200
	docs := make([]ingestDoc, n)
	for i := range docs {
		docs[i] = ingestDoc{ID: fmt.Sprintf("doc-%03d", i), Text: longText(i)}
	}
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": docs}, &accepted))

	var j jobView
	require.Eventually(t, func() bool {
		code, err := s.try(token, http.MethodGet, "/v1/jobs/"+accepted.JobID, nil, &j)
		// The first outcome is written at once, later ones every ProgressEvery.
		return err == nil && code == http.StatusOK && j.Counts.DocumentsDone >= 1
	}, 60*time.Second, 5*time.Millisecond)
	require.Less(t, j.Counts.DocumentsDone, n, "the job finished before it could be killed; make documents bigger")
	s.kill()
	t.Logf("killed the server with %d of %d documents done", j.Counts.DocumentsDone, n)

	s = startServer(t, dataDir, token, flags...)
	j = s.waitJob(token, accepted.JobID, 3*time.Minute)
	require.Equal(t, "succeeded", j.Status)
	require.Equal(t, n, j.Counts.DocumentsDone)
	require.Zero(t, j.Counts.DocumentsFailed)

	// Each document's record says how many chunks it has; the vector store
	// must hold exactly that many for it, and their sum is the job's count.
	chunksByDoc := map[string]int{}
	total := 0
	for _, d := range docs {
		var rec struct {
			Chunks int `json:"chunks"`
		}
		require.Equal(t, http.StatusOK, s.call(token, http.MethodGet, "/v1/documents/"+d.ID, nil, &rec))
		require.Positive(t, rec.Chunks)
		chunksByDoc[d.ID] = rec.Chunks
		total += rec.Chunks
	}
	require.Equal(t, total, j.Counts.Chunks)
	s.stop()

	vs, done := openStoppedVectors(t, dataDir)
	defer done()
	ctx := context.Background()
	all, err := vs.Count(ctx, apiary.DefaultAccount, storage.VectorFilter{})
	require.NoError(t, err)
	require.Equal(t, total, all, "the store holds chunks beyond the documents' own")
	for id, want := range chunksByDoc {
		got, err := vs.Count(ctx, apiary.DefaultAccount, storage.VectorFilter{Document: apiary.DocumentID(id)})
		require.NoError(t, err)
		require.Equal(t, want, got, "document %s", id)
	}
}

// longText makes a distinct document of a few thousand words.
func longText(i int) string {
	var b strings.Builder
	words := []string{"meadow", "orchard", "pollen", "comb", "queen", "drone", "nectar", "swarm", "apiary", "frame", "smoker", "veil"}
	for p := 0; p < 30; p++ {
		fmt.Fprintf(&b, "Paragraph %d of document %d. ", p, i)
		for w := 0; w < 80; w++ {
			b.WriteString(words[(i*7+p*3+w)%len(words)])
			b.WriteByte(' ')
		}
		b.WriteString("\n\n")
	}
	return b.String()
}
