package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/milvus"
)

// distributedEnv returns the addresses of the real servers started by
// scripts/test-services.sh, or skips the test when they are not set.
func distributedEnv(t *testing.T) (natsURL, sqsEndpoint, kmsEndpoint, milvusAddr string) {
	t.Helper()
	vars := []string{"APIARY_TEST_NATS_URL", "APIARY_TEST_SQS_ENDPOINT", "APIARY_TEST_KMS_ENDPOINT", "APIARY_TEST_MILVUS_ADDR"}
	vals := make([]string, len(vars))
	for i, v := range vars {
		if vals[i] = os.Getenv(v); vals[i] == "" {
			t.Skipf("%s is not set: run `make test`, or scripts/test-services.sh start && source .test-services/env", v)
		}
	}
	return vals[0], vals[1], vals[2], vals[3]
}

// wipeNATS deletes every stream (and so every bucket) on the test's own
// external NATS server, so that this run starts from an empty cluster.
func wipeNATS(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	names := js.StreamNames(ctx)
	var all []string
	for n := range names.Name() {
		all = append(all, n)
	}
	require.NoError(t, names.Err())
	for _, n := range all {
		require.NoError(t, js.DeleteStream(ctx, n))
	}
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// TestDistributedKillWorker runs `apiary api` and two `apiary worker`
// processes on SQS, KMS, Milvus and an external NATS server, ingests 500
// documents, kills one worker with SIGKILL mid-job, and checks that every job
// succeeds and every document's chunks are in Milvus exactly once.
func TestDistributedKillWorker(t *testing.T) {
	natsURL, sqsEndpoint, kmsEndpoint, milvusAddr := distributedEnv(t)
	wipeNATS(t, natsURL)
	suffix := randomSuffix(t)
	collection := "e2e_" + suffix
	flags := []string{
		"--nats-url", natsURL,
		"--queue", "sqs", "--sqs-queue", "apiary-e2e-" + suffix, "--sqs-endpoint", sqsEndpoint,
		"--keys", "awskms", "--kms-endpoint", kmsEndpoint,
		"--vectors", "milvus", "--milvus-addr", milvusAddr, "--milvus-collection", collection,
		"--lease", "5s", "--rate-limit", "10000", "--rate-burst", "10000", "--account-rate-limit", "100000", "--account-rate-burst", "100000", "--workers", "2",
	}
	token, err := api.NewToken()
	require.NoError(t, err)
	apiProc := startRole(t, "api", t.TempDir(), token, flags...)
	w1 := startRole(t, "worker", t.TempDir(), "", flags...)
	w2 := startRole(t, "worker", t.TempDir(), "", flags...)
	// The container health check of a worker, through the binary itself.
	require.NoError(t, run(context.Background(), []string{"healthcheck", "--url", w2.base + "/readyz"}, io.Discard, io.Discard))
	require.Error(t, run(context.Background(), []string{"healthcheck", "--url", w2.base + "/nope"}, io.Discard, io.Discard))

	began := time.Now()
	t.Logf("processes ready")
	const jobs, perJob = 5, 100
	var jobIDs []string
	for j := range jobs {
		docs := make([]ingestDoc, perJob)
		for i := range docs {
			n := j*perJob + i
			docs[i] = ingestDoc{ID: fmt.Sprintf("doc-%03d", n), Text: longText(n)}
		}
		var accepted struct {
			JobID string `json:"job_id"`
		}
		require.Equal(t, http.StatusAccepted, apiProc.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": docs}, &accepted))
		jobIDs = append(jobIDs, accepted.JobID)
	}

	// Kill one worker once work is under way.
	require.Eventually(t, func() bool {
		var j jobView
		code, err := apiProc.try(token, http.MethodGet, "/v1/jobs/"+jobIDs[0], nil, &j)
		return err == nil && code == http.StatusOK && j.Counts.DocumentsDone > 0
	}, 2*time.Minute, 20*time.Millisecond)
	w1.kill()

	t.Logf("%s: killed a worker", time.Since(began))
	total := 0
	for _, id := range jobIDs {
		j := apiProc.waitJob(token, id, 5*time.Minute)
		require.Equal(t, "succeeded", j.Status, "job %s", id)
		require.Equal(t, perJob, j.Counts.DocumentsDone)
		total += j.Counts.Chunks
	}

	t.Logf("%s: all jobs succeeded", time.Since(began))
	// The query path works across processes.
	var answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
		} `json:"results"`
	}
	require.Equal(t, http.StatusOK, apiProc.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "Paragraph 7 of document 321", "top_k": 3}, &answer))
	require.NotEmpty(t, answer.Results)
	require.Equal(t, "doc-321", answer.Results[0].DocumentID)

	// Every document's chunks are in Milvus exactly once.
	ctx := context.Background()
	vs, err := milvus.Open(ctx, milvus.Config{Addr: milvusAddr, Collection: collection, Dim: 384, Consistency: milvus.Strong})
	require.NoError(t, err)
	t.Cleanup(func() { vs.Close() })
	stored, err := vs.Count(ctx, apiary.DefaultAccount, storage.VectorFilter{})
	require.NoError(t, err)
	require.Equal(t, total, stored)
	t.Logf("%s: counting chunks by document", time.Since(began))
	counts, err := vs.CountByDocument(ctx, apiary.DefaultAccount)
	require.NoError(t, err)
	require.Len(t, counts, jobs*perJob)
	var g errgroup.Group
	g.SetLimit(8)
	for n := range jobs * perJob {
		id := fmt.Sprintf("doc-%03d", n)
		g.Go(func() error {
			var rec struct {
				Chunks int `json:"chunks"`
			}
			if code := apiProc.call(token, http.MethodGet, "/v1/documents/"+id, nil, &rec); code != http.StatusOK {
				return fmt.Errorf("document %s: status %d", id, code)
			}
			if got := counts[apiary.DocumentID(id)]; got != rec.Chunks {
				return fmt.Errorf("document %s: %d chunks in Milvus, its record says %d", id, got, rec.Chunks)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	t.Logf("%s: done", time.Since(began))
}
