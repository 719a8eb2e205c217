package main

import (
	"net/http"
	"os"
	"testing"
	"time"

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
	bucket := newBucket(t, ep, hiveObjects)

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

	requireHivesAnswer(t, s, bucket)
	s.stop()

	logs := s.stderr.String()
	require.Contains(t, logs, "/v1/ingest", "the logs were captured")
	for _, canary := range []string{secret, session} {
		require.NotContains(t, logs, canary, "the logs hold a credential")
	}
	files := readTree(t, dataDir, func(path string, b []byte) {
		for _, canary := range []string{secret, session} {
			require.NotContains(t, string(b), canary, "%s holds a credential", path)
		}
	})
	require.Positive(t, files)
}
