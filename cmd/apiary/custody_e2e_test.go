package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/connectors/custody/natscustody"
	"github.com/apiaryhq/apiary/internal/natsserver"
)

// The split deployment's ephemeral tokens, through the real binaries: an
// `apiary api` accepts an S3 source with an ephemeral key and holds it in
// memory; an `apiary worker` withdraws it over core NATS (natscustody,
// sealed with HPKE). They share a NATS server this test runs (so it owns the
// JetStream store and reads every byte of it), the KMS emulator for keys and
// Milvus for vectors (the roles refuse the local keyring's and vector
// store's per-process files), and read a moto bucket.

// Canary credentials: none of them may show up anywhere but in memory.
const (
	splitKeyID   = "AKIAEPHEMERALSPLIT01"
	splitSecret  = "canary-split-secret-access-key-9e4b"
	splitSession = "canary-split-session-token-31c6"
)

// splitEnv returns the addresses of the services the split tests need
// (scripts/test-services.sh start s3 kms milvus), or skips the test.
func splitEnv(t *testing.T) (s3Endpoint, kmsEndpoint, milvusAddr string) {
	t.Helper()
	vars := []string{"APIARY_TEST_S3_ENDPOINT", "APIARY_TEST_KMS_ENDPOINT", "APIARY_TEST_MILVUS_ADDR"}
	vals := make([]string, len(vars))
	for i, v := range vars {
		if vals[i] = os.Getenv(v); vals[i] == "" {
			t.Skipf("%s is not set: run scripts/test-services.sh start s3 kms milvus && source .test-services/env", v)
		}
	}
	return vals[0], vals[1], vals[2]
}

// splitNATS is the NATS server the processes of one test share: a real
// server on a loopback port, its JetStream store in a directory the test
// reads once the server is shut down.
type splitNATS struct {
	srv      *natsserver.Server
	storeDir string
	once     sync.Once
}

func startSplitNATS(t *testing.T) *splitNATS {
	t.Helper()
	n := &splitNATS{storeDir: t.TempDir()}
	var err error
	n.srv, err = natsserver.Start(natsserver.Config{StoreDir: n.storeDir, Listen: true})
	require.NoError(t, err)
	t.Cleanup(n.shutdown)
	return n
}

func (n *splitNATS) url() string { return n.srv.URL() }

// shutdown stops the server, which writes what it buffers to the store.
func (n *splitNATS) shutdown() { n.once.Do(n.srv.Shutdown) }

// splitFlags are the flags of both roles: the test's NATS (JetStream
// queue), KMS keys, a Milvus collection of the test's own.
func splitFlags(t *testing.T, natsURL, kmsEndpoint, milvusAddr string) []string {
	return []string{
		"--nats-url", natsURL,
		"--keys", "awskms", "--kms-endpoint", kmsEndpoint,
		"--vectors", "milvus", "--milvus-addr", milvusAddr, "--milvus-collection", "split_" + randomSuffix(t),
		"--allow-private-sources", "--log-level", "debug",
	}
}

// newBucket creates a moto bucket holding objects (key → text) and
// returns its name.
func newBucket(t *testing.T, endpoint string, objects map[string]string) string {
	t.Helper()
	ctx := context.Background()
	admin := awss3.New(awss3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider("test", "test", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	bucket := "apiary-split-" + randomSuffix(t)
	_, err := admin.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	for key, text := range objects {
		_, err := admin.PutObject(ctx, &awss3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(text), ContentType: aws.String("text/plain"),
		})
		require.NoError(t, err)
	}
	return bucket
}

// hiveObjects are the objects of a bucket whose docs/ prefix is ingested.
var hiveObjects = map[string]string{
	"docs/hives.txt": "Honeybees store nectar as honey in hexagonal wax cells.",
	"docs/queen.txt": "The queen bee lays up to two thousand eggs a day in spring.",
	"other/skip.txt": "Outside the prefix: never ingested.",
}

// requireHivesAnswer checks that s answers a query with the text of
// docs/hives.txt of bucket (hiveObjects).
func requireHivesAnswer(t *testing.T, s *server, bucket string) {
	t.Helper()
	var answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
			Text       string `json:"text"`
		} `json:"results"`
	}
	require.Equal(t, http.StatusOK, s.call(s.token, http.MethodPost, "/v1/query", map[string]any{"query": "honey in hexagonal wax cells", "top_k": 2}, &answer))
	require.NotEmpty(t, answer.Results)
	require.Equal(t, "s3://"+bucket+"/docs/hives.txt", answer.Results[0].DocumentID)
	require.Contains(t, answer.Results[0].Text, "hexagonal wax cells")
}

// ingestS3 submits bucket/prefix at endpoint with the canary key through
// POST /v1/ingest and returns the job's id.
func ingestS3(t *testing.T, s *server, endpoint, bucket, prefix string) string {
	t.Helper()
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(s.token, http.MethodPost, "/v1/ingest", map[string]any{"source": map[string]any{
		"provider": "s3", "bucket": bucket, "prefix": prefix, "region": "us-east-1", "endpoint": endpoint,
		"access_key_id": splitKeyID, "secret_access_key": splitSecret, "session_token": splitSession,
	}}, &accepted))
	return accepted.JobID
}

// splitJob is a job as GET /v1/jobs/{id} shows it, with its error and
// attempts.
type splitJob struct {
	Status   string        `json:"status"`
	Error    string        `json:"error"`
	Attempts int           `json:"attempts"`
	Counts   apiary.Counts `json:"counts"`
}

func waitSplitJob(t *testing.T, s *server, id string) splitJob {
	t.Helper()
	var j splitJob
	require.Eventually(t, func() bool {
		code, err := s.try(s.token, http.MethodGet, "/v1/jobs/"+id, nil, &j)
		return err == nil && code == http.StatusOK && apiary.JobStatus(j.Status).Final()
	}, 2*time.Minute, 100*time.Millisecond, "job %s never finished", id)
	return j
}

// custodySpy records every message on the custody subjects and on reply
// inboxes: what crossed the bus between the worker and the holder.
type custodySpy struct {
	nc       *nats.Conn
	mu       sync.Mutex
	subjects []string // the holder subjects asked for a key
	data     [][]byte // every request and reply seen
}

func spyOnCustody(t *testing.T, natsURL string) *custodySpy {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	s := &custodySpy{nc: nc}
	record := func(m *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if strings.HasPrefix(m.Subject, natscustody.DefaultPrefix+".") && bytes.Contains(m.Data, []byte(`"op":"withdraw"`)) {
			s.subjects = append(s.subjects, m.Subject)
		}
		s.data = append(s.data, bytes.Clone(m.Data))
	}
	for _, subj := range []string{natscustody.DefaultPrefix + ".>", "_INBOX.>"} {
		_, err := nc.Subscribe(subj, record)
		require.NoError(t, err)
	}
	require.NoError(t, nc.Flush())
	return s
}

func (s *custodySpy) seen() (subjects []string, data [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subjects...), append([][]byte(nil), s.data...)
}

// canaryForms are the secret access key and the session token in every
// form canaries searches for.
var canaryForms = newCanaries(splitSecret, splitSession)

// canaries are the forms of strings that must not be found: each as bytes,
// in hex (both cases), URL-escaped (query and path), and in base64
// (standard and URL alphabets: how JSON carries bytes) at each of the three
// alignments the encoding can start at.
type canaries [][]byte

func newCanaries(strs ...string) canaries {
	var forms canaries
	for _, canary := range strs {
		forms = append(forms, []byte(canary), []byte(hex.EncodeToString([]byte(canary))),
			[]byte(strings.ToUpper(hex.EncodeToString([]byte(canary)))),
			[]byte(url.QueryEscape(canary)), []byte(url.PathEscape(canary)))
		for k := range 3 {
			s := canary[k:]
			s = s[:len(s)/3*3] // whole groups only: the rest depends on the neighbours
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				forms = append(forms, []byte(enc.EncodeToString([]byte(s))))
			}
		}
	}
	return forms
}

// in returns the first form found in b, or nil.
func (c canaries) in(b []byte) []byte {
	for _, form := range c {
		if bytes.Contains(b, form) {
			return form
		}
	}
	return nil
}

// requireNone fails when b holds a form of a canary; where names b.
func (c canaries) requireNone(t *testing.T, b []byte, where string) {
	t.Helper()
	if form := c.in(b); form != nil {
		require.Failf(t, "a canary leaked", "%s holds %q", where, form)
	}
}

// waitWithdrawal waits until the spy has seen a withdrawal and returns
// the holder subjects asked so far.
func (s *custodySpy) waitWithdrawal(t *testing.T) []string {
	t.Helper()
	require.Eventually(t, func() bool {
		subjects, _ := s.seen()
		return len(subjects) > 0
	}, time.Minute, 10*time.Millisecond, "no withdrawal crossed the bus")
	subjects, _ := s.seen()
	return subjects
}

// requireNoCanary fails when b holds the secret access key or the session
// token, in any form canaryForms searches for.
func requireNoCanary(t *testing.T, b []byte, where string) {
	t.Helper()
	canaryForms.requireNone(t, b, where)
}

// canaryIn returns the first of canaryForms in b, or nil.
func canaryIn(b []byte) []byte { return canaryForms.in(b) }

// TestSplitCanarySearch checks the search itself: it finds a canary in
// JSON bytes (base64) wherever it starts.
func TestSplitCanarySearch(t *testing.T) {
	for pad := range 3 {
		for _, canary := range []string{splitSecret, splitSession} {
			raw := append(bytes.Repeat([]byte{0xfe}, pad), canary...)
			b, err := json.Marshal(struct{ B []byte }{raw})
			require.NoError(t, err)
			require.NotNil(t, canaryIn(b), "%s", b)
			require.NotNil(t, canaryIn([]byte(base64.URLEncoding.EncodeToString(raw))))
			require.NotNil(t, canaryIn(raw))
			require.NotNil(t, canaryIn([]byte(hex.EncodeToString(raw))))
		}
	}
	require.Nil(t, canaryIn([]byte("canary-split-secret")))
}

// readTree calls check with each file under dir and its bytes, and
// returns how many files there are.
func readTree(t *testing.T, dir string, check func(path string, b []byte)) (files int) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		check(path, b)
		return nil
	}))
	return files
}

// scanDir fails when a file under dir holds a canary, and returns all the
// bytes it read.
func scanDir(t *testing.T, dir string) (files int, all []byte) {
	t.Helper()
	files = readTree(t, dir, func(path string, b []byte) {
		requireNoCanary(t, b, path)
		all = append(all, b...)
	})
	return files, all
}

// TestSplitEphemeralS3 ingests a moto bucket with an ephemeral key through
// `apiary api` and one `apiary worker`: the job succeeds on the worker,
// which got the key from the API over natscustody; the text is queryable;
// and neither data dir, nor either process's stdout or stderr (debug
// logs), nor the NATS server's JetStream store, nor what crossed the bus
// holds the secret access key or the session token.
func TestSplitEphemeralS3(t *testing.T) {
	s3Endpoint, kmsEndpoint, milvusAddr := splitEnv(t)
	bucket := newBucket(t, s3Endpoint, hiveObjects)
	ns := startSplitNATS(t)
	flags := splitFlags(t, ns.url(), kmsEndpoint, milvusAddr)
	token, err := api.NewToken()
	require.NoError(t, err)
	apiProc := startRole(t, "api", t.TempDir(), token, flags...)
	worker := startRole(t, "worker", t.TempDir(), "", flags...)
	spy := spyOnCustody(t, ns.url())

	id := ingestS3(t, apiProc, s3Endpoint, bucket, "docs/")
	j := waitSplitJob(t, apiProc, id)
	require.Equal(t, "succeeded", j.Status, "%+v", j)
	require.Equal(t, 1, j.Attempts)
	require.Equal(t, 2, j.Counts.DocumentsTotal, "the two objects under the prefix")
	require.Equal(t, 2, j.Counts.DocumentsDone)

	requireHivesAnswer(t, apiProc, bucket)

	// The key crossed the bus from the API to the worker, sealed.
	subjects := spy.waitWithdrawal(t)
	require.Len(t, subjects, 1, "the worker asked the API for the key over natscustody, once")
	_, data := spy.seen()
	require.GreaterOrEqual(t, len(data), 2, "a withdrawal and its reply")
	for i, d := range data {
		requireNoCanary(t, d, fmt.Sprintf("custody message %d", i))
	}

	apiProc.stop()
	worker.stop()
	ns.shutdown()

	require.Contains(t, apiProc.stderr.String(), "/v1/ingest", "the API's debug logs were captured")
	require.Contains(t, worker.stderr.String(), `"msg":"workers started"`, "the worker's logs were captured")
	for name, p := range map[string]*server{"api": apiProc, "worker": worker} {
		requireNoCanary(t, []byte(p.stdout.String()), name+" stdout")
		requireNoCanary(t, []byte(p.stderr.String()), name+" stderr")
		files, _ := scanDir(t, p.dataDir)
		t.Logf("%s data dir: %d files", name, files)
	}
	files, store := scanDir(t, ns.storeDir)
	require.Positive(t, files)
	require.Contains(t, string(store), id, "the scan read the streams that hold the job")
	t.Logf("NATS store: %d files, %d bytes", files, len(store))
}

// requestGate serves a vendor (or a proxy to one) and holds the requests
// hold picks until released, so that a test knows a source job is under
// way. It counts the requests it serves.
type requestGate struct {
	URL      string
	requests atomic.Int64
	fetching chan struct{} // closed at the first held request
	release  chan struct{} // closed to let the held requests through
	once     sync.Once
	relOnce  sync.Once
}

func startGate(t *testing.T, next http.Handler, hold func(*http.Request) bool) *requestGate {
	t.Helper()
	g := &requestGate{fetching: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.requests.Add(1)
		if hold(r) {
			g.once.Do(func() { close(g.fetching) })
			select {
			case <-g.release:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.open) // before srv.Close: no handler stays blocked
	g.URL = srv.URL
	return g
}

func (g *requestGate) open() { g.relOnce.Do(func() { close(g.release) }) }

// startS3Gate is a proxy in front of moto that holds every object
// download (its worker has withdrawn the job's key: it lists and fetches
// after that).
func startS3Gate(t *testing.T, endpoint string) *requestGate {
	t.Helper()
	target, err := url.Parse(endpoint)
	require.NoError(t, err)
	return startGate(t, httputil.NewSingleHostReverseProxy(target), func(r *http.Request) bool {
		// Path style: /bucket is a listing, /bucket/key an object.
		return r.Method == http.MethodGet && strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
	})
}

// TestSplitHolderStoppedFailsJob stops the API process that holds a
// queued job's ephemeral key: the job fails once, for good, with the
// reason that tells the client to resubmit, and is never retried. A job
// whose worker withdrew its key before the API stopped still succeeds.
func TestSplitHolderStoppedFailsJob(t *testing.T) {
	s3Endpoint, kmsEndpoint, milvusAddr := splitEnv(t)
	for name, sig := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGKILL": syscall.SIGKILL} {
		t.Run(name, func(t *testing.T) { testHolderStopped(t, sig, s3Endpoint, kmsEndpoint, milvusAddr) })
	}
}

func testHolderStopped(t *testing.T, sig syscall.Signal, s3Endpoint, kmsEndpoint, milvusAddr string) {
	bucket := newBucket(t, s3Endpoint, map[string]string{
		"first/hives.txt":  "Honeybees store nectar as honey in hexagonal wax cells.",
		"second/queen.txt": "The queen bee lays up to two thousand eggs a day in spring.",
	})
	gate := startS3Gate(t, s3Endpoint)
	ns := startSplitNATS(t)
	flags := splitFlags(t, ns.url(), kmsEndpoint, milvusAddr)
	token, err := api.NewToken()
	require.NoError(t, err)
	apiDir := t.TempDir()
	apiProc := startRole(t, "api", apiDir, token, flags...)
	// One job at a time: the second waits in the queue while the first runs.
	worker := startRole(t, "worker", t.TempDir(), "", append(flags, "--workers", "1")...)
	spy := spyOnCustody(t, ns.url())

	// The first job withdraws its key, then blocks on its download.
	first := ingestS3(t, apiProc, gate.URL, bucket, "first/")
	select {
	case <-gate.fetching:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the first job never fetched an object:\n%s", worker.stderr.String())
	}
	holder := spy.waitWithdrawal(t)[0]
	spy.nc.Close() // a subscriber of its own would answer for the holder
	second := ingestS3(t, apiProc, s3Endpoint, bucket, "second/")

	// The holder stops while the second job is queued behind the first.
	if sig == syscall.SIGKILL {
		apiProc.kill()
	} else {
		apiProc.stop()
		require.Contains(t, apiProc.stderr.String(), `"msg":"stopped"`)
	}
	requireNoResponders(t, ns.url(), holder)
	gate.open()

	// Another API process on the same data answers the client.
	holderProc := apiProc
	apiProc = startRole(t, "api", apiDir, token, flags...)
	j := waitSplitJob(t, apiProc, first)
	require.Equal(t, "succeeded", j.Status, "the first job had its key before the holder stopped: %+v", j)
	j = waitSplitJob(t, apiProc, second)
	require.Equal(t, "failed", j.Status, "%+v", j)
	require.Contains(t, j.Error, apiary.ReasonHolderGone)
	require.Equal(t, 1, j.Attempts, "a token that died with its holder is not retried")
	require.Zero(t, j.Counts.DocumentsDone)

	// Still failed, still one attempt, once the worker has settled the
	// delivery: nothing runs it again.
	worker.stop()
	var again splitJob
	require.Equal(t, http.StatusOK, apiProc.call(token, http.MethodGet, "/v1/jobs/"+second, nil, &again))
	require.Equal(t, j.Status, again.Status)
	require.Equal(t, 1, again.Attempts)
	require.Equal(t, 1, jobLogLines(t, worker, second, "workers: giving up on job"), "the worker gave up on the job once")
	require.Zero(t, jobLogLines(t, worker, second, "workers: job will be retried"))
	for _, p := range []*server{holderProc, worker, apiProc} {
		requireNoCanary(t, []byte(p.stdout.String()+p.stderr.String()), "a process's output")
	}
}

// requireNoResponders waits until the NATS server answers a request to
// subject with no responders: no process holds it any more (the server
// has seen the stopped process's connection close).
func requireNoResponders(t *testing.T, natsURL, subject string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	require.Eventually(t, func() bool {
		_, err := nc.Request(subject, []byte("{}"), time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	}, time.Minute, 50*time.Millisecond, "%s still has a responder", subject)
}

// jobLogLines counts the lines of p's log about job id whose message
// contains msg.
func jobLogLines(t *testing.T, p *server, id, msg string) int {
	n := 0
	for _, l := range logLines(t, p.stderr.String(), msg) {
		if l["job"] == id {
			n++
		}
	}
	return n
}
