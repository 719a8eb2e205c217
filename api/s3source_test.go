package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/custody"
)

const (
	canaryKeyID   = "AKIACANARYKEYID0001"
	canarySecret  = "canary-secret-access-key-9f3e"
	canarySession = "canary-session-token-77ab"
)

// An S3 source with an ephemeral access key: the spec is staged, the key
// is deposited in custody, and neither the stage, the record, the queue
// message nor the logs hold any part of it.
func TestIngestS3SourceWithEphemeralKey(t *testing.T) {
	t.Parallel()
	var held *custody.Custody
	e := newEnv(t, withCustody(t, &held), func(c *Config, _ *Deps) { c.AllowPrivateSources = true })
	ctx := context.Background()
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"provider": "s3", "bucket": "my-bucket", "prefix": "docs/", "region": "eu-west-1", "endpoint": "http://127.0.0.1:5000",
		"access_key_id": canaryKeyID, "secret_access_key": canarySecret, "session_token": canarySession,
	}}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	out := decode[ingestResponse](t, rec)
	require.Equal(t, 1, held.Held(), "the key waits in custody")

	job, err := e.recs.Job(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	require.Equal(t, apiary.JobKindSource, job.Kind)
	require.Equal(t, "s3", job.Source)
	require.Equal(t, held.Holder(), job.Holder)

	staged, err := e.stager.Load(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	spec, err := connectors.SpecFrom(staged)
	require.NoError(t, err)
	require.Equal(t, connectors.Spec{Provider: "s3", Bucket: "my-bucket", Prefix: "docs/", Region: "eu-west-1", Endpoint: "http://127.0.0.1:5000"}, spec)
	msgs := e.receive(1)
	require.Equal(t, []apiary.JobMessage{{Kind: apiary.JobKindSource, Account: apiary.DefaultAccount, Job: out.JobID}}, msgs)

	stagedJSON, err := json.Marshal(staged)
	require.NoError(t, err)
	recJSON, err := json.Marshal(job)
	require.NoError(t, err)
	msgJSON, err := json.Marshal(msgs)
	require.NoError(t, err)
	for what, s := range map[string]string{"stage": string(stagedJSON), "record": string(recJSON), "queue message": string(msgJSON), "logs": e.logs.String(), "response": rec.Body.String()} {
		for _, canary := range []string{canaryKeyID, canarySecret, canarySession} {
			require.NotContains(t, s, canary, "the %s holds a credential", what)
		}
	}
}

func TestIngestS3SourceRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withCustody(t, nil))
	src := func(extra map[string]any) map[string]any {
		s := map[string]any{"provider": "s3", "bucket": "my-bucket", "access_key_id": canaryKeyID, "secret_access_key": canarySecret}
		for k, v := range extra {
			if v == nil {
				delete(s, k)
			} else {
				s[k] = v
			}
		}
		return map[string]any{"source": s}
	}
	for _, tt := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"no secret", src(map[string]any{"secret_access_key": nil}), "an access key needs both access_key_id and secret_access_key"},
		{"no credential", src(map[string]any{"secret_access_key": nil, "access_key_id": nil}), "the s3 provider needs an ephemeral credential"},
		{"a bearer token", src(map[string]any{"secret_access_key": nil, "access_key_id": nil, "access_token": canarySecret}), "not access_token"},
		{"an empty secret", src(map[string]any{"secret_access_key": ""}), "source.secret_access_key must be a non-empty string"},
		{"no bucket", src(map[string]any{"bucket": nil}), "source.bucket is required"},
		{"a bad bucket", src(map[string]any{"bucket": "My_Bucket"}), "source.bucket"},
		{"a bad region", src(map[string]any{"region": "eu west"}), "source.region"},
		{"a private endpoint without --allow-private-sources", src(map[string]any{"endpoint": "http://127.0.0.1:9000"}), "loopback"},
		{"the metadata service", src(map[string]any{"endpoint": "http://169.254.169.254/"}), "source.endpoint"},
		{"a url", src(map[string]any{"url": "https://example.com/"}), "source.url is for the web provider"},
		{"max_pages", src(map[string]any{"max_pages": 3}), "max_pages is for the web provider"},
		{"a web source with a key", map[string]any{"source": map[string]any{"provider": "web", "url": "https://example.com/", "access_key_id": canaryKeyID, "secret_access_key": canarySecret}}, "the web provider takes no credential"},
	} {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(tt.body))
		require.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", tt.name, rec.Body.String())
		require.Contains(t, rec.Body.String(), tt.want, tt.name)
		require.NotContains(t, rec.Body.String(), canarySecret, tt.name)
	}
	require.NotContains(t, e.logs.String(), canarySecret)
	require.NotContains(t, e.logs.String(), canaryKeyID)
}
