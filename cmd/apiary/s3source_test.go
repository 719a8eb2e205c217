package main

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
)

// TestServeIngestsAnS3BucketWithAnEphemeralKey ingests a moto bucket
// through the binary with an ephemeral access key: the job succeeds, its
// text is queryable, and neither the data directory nor the debug logs
// hold the secret access key or the session token.
func TestServeIngestsAnS3BucketWithAnEphemeralKey(t *testing.T) {
	ep := os.Getenv("APIARY_TEST_S3_ENDPOINT")
	if ep == "" {
		t.Skip("APIARY_TEST_S3_ENDPOINT is unset: run scripts/test-services.sh start")
	}
	const (
		keyID   = "AKIAEPHEMERALE2E0001"
		secret  = "canary-e2e-secret-access-key-5c1d"
		session = "canary-e2e-session-token-a07f"
	)
	ctx := context.Background()
	admin := awss3.New(awss3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(ep),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider("test", "test", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	bucket := fmt.Sprintf("apiary-e2e-%d", time.Now().UnixNano())
	_, err := admin.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	for key, text := range map[string]string{
		"docs/hives.txt": "Honeybees store nectar as honey in hexagonal wax cells.",
		"docs/queen.txt": "The queen bee lays up to two thousand eggs a day in spring.",
		"other/skip.txt": "Outside the prefix: never ingested.",
	} {
		_, err := admin.PutObject(ctx, &awss3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(text), ContentType: aws.String("text/plain"),
		})
		require.NoError(t, err)
	}

	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	s := startServer(t, dataDir, token, "--allow-private-sources", "--log-level", "debug")

	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"source": map[string]any{
		"provider": "s3", "bucket": bucket, "prefix": "docs/", "region": "us-east-1", "endpoint": ep,
		"access_key_id": keyID, "secret_access_key": secret, "session_token": session,
	}}, &accepted))
	j := s.waitJob(token, accepted.JobID, 60*time.Second)
	require.Equal(t, "succeeded", j.Status, "%+v", j)
	require.Equal(t, 2, j.Counts.DocumentsTotal, "the two objects under the prefix")
	require.Equal(t, 2, j.Counts.DocumentsDone)

	var answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
			Text       string `json:"text"`
		} `json:"results"`
	}
	require.Equal(t, http.StatusOK, s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "honey in hexagonal wax cells", "top_k": 2}, &answer))
	require.NotEmpty(t, answer.Results)
	require.Equal(t, "s3://"+bucket+"/docs/hives.txt", answer.Results[0].DocumentID)
	require.Contains(t, answer.Results[0].Text, "hexagonal wax cells")
	s.stop()

	logs := s.stderr.String()
	require.Contains(t, logs, "/v1/ingest", "the logs were captured")
	for _, canary := range []string{secret, session} {
		require.NotContains(t, logs, canary, "the logs hold a credential")
	}
	files := 0
	require.NoError(t, filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, canary := range []string{secret, session} {
			require.NotContains(t, string(b), canary, "%s holds a credential", path)
		}
		return nil
	}))
	require.Positive(t, files)
}
