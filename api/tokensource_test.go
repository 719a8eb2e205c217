package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/storage/records"
)

// putConnection stores a connection record of account as the OAuth flow
// leaves one (no tokens: the API never opens them).
func putConnection(t *testing.T, e *env, account apiary.AccountID, id, provider string, status records.ConnectionStatus) {
	t.Helper()
	now := time.Now().UTC()
	require.NoError(t, e.recs.CreateConnection(context.Background(), records.Connection{
		ID: id, Account: account, Provider: provider, Status: status, CreatedAt: now, UpdatedAt: now,
	}))
}

// A token provider reads with an ephemeral access token (held in custody,
// never staged) or with a connection of the caller's own account; the two
// are exclusive, and another account's connection is not found.
func TestIngestTokenProviderSources(t *testing.T) {
	t.Parallel()
	var held *custody.Custody
	e := newEnv(t, withCustody(t, &held))
	ctx := context.Background()
	const canaryToken = "ghu_canary-ephemeral-token-31d9"

	// Ephemeral: the token waits in custody; the stage holds the spec only.
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"provider": "github", "location": "octo/docs@main", "items": []string{"octo/docs:README.md"}, "access_token": canaryToken,
	}}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	out := decode[ingestResponse](t, rec)
	require.Equal(t, 1, held.Held())
	staged, err := e.stager.Load(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	spec, err := connectors.SpecFrom(staged)
	require.NoError(t, err)
	require.Equal(t, connectors.Spec{Provider: "github", Location: "octo/docs@main", Items: []string{"octo/docs:README.md"}}, spec)
	require.True(t, spec.NeedsCredential())
	require.NotContains(t, e.logs.String(), canaryToken)

	// A connection of the caller's account: no credential, the job names it.
	putConnection(t, e, apiary.DefaultAccount, "con_mine", "google", records.ConnectionActive)
	rec = e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"connection_id": "con_mine", "items": "all", "location": "folder:abc",
	}}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	out = decode[ingestResponse](t, rec)
	job, err := e.recs.Job(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	require.Equal(t, "con_mine", job.Connection)
	require.Equal(t, "gdrive", job.Source, "the provider is the connection's")
	require.Equal(t, 1, held.Held(), "a connection's job deposits nothing")

	other, _ := e.otherAccount("Initech")
	putConnection(t, e, other, "con_theirs", "google", records.ConnectionActive)
	putConnection(t, e, apiary.DefaultAccount, "con_stale", "google", records.ConnectionReauthRequired)
	putConnection(t, e, apiary.DefaultAccount, "con_oidc", "oidc", records.ConnectionActive)

	for _, tc := range []struct {
		name   string
		source map[string]any
		status int
		detail string
	}{
		{"another account's connection", map[string]any{"connection_id": "con_theirs"}, http.StatusNotFound, "no such connection"},
		{"a connection that is not one", map[string]any{"connection_id": "nope"}, http.StatusNotFound, "no such connection"},
		{"a connection and a token", map[string]any{"connection_id": "con_mine", "access_token": canaryToken}, http.StatusBadRequest, "not both"},
		{"another provider", map[string]any{"connection_id": "con_mine", "provider": "notion"}, http.StatusBadRequest, "reads gdrive, not notion"},
		{"a connection needing reauth", map[string]any{"connection_id": "con_stale"}, http.StatusConflict, "reauth_required"},
		{"a connection reading nothing", map[string]any{"connection_id": "con_oidc"}, http.StatusBadRequest, "reads no documents"},
		{"neither", map[string]any{"provider": "notion"}, http.StatusBadRequest, "connection_id"},
		{"an access key", map[string]any{"provider": "notion", "access_key_id": "AKIA1", "secret_access_key": "x"}, http.StatusBadRequest, "bearer token"},
		{"empty items", map[string]any{"provider": "notion", "access_token": canaryToken, "items": []string{}}, http.StatusBadRequest, "at least one item"},
		{"items of a bad type", map[string]any{"provider": "notion", "access_token": canaryToken, "items": 3}, http.StatusBadRequest, `"all" or an array`},
		{"confluence without a site", map[string]any{"provider": "confluence", "access_token": canaryToken}, http.StatusBadRequest, "source.site is required"},
		{"a url", map[string]any{"provider": "github", "access_token": canaryToken, "url": "https://example.com"}, http.StatusBadRequest, "not github's"},
		{"location on web", map[string]any{"provider": "web", "url": "https://example.com", "location": "x"}, http.StatusBadRequest, "not web"},
		{"max_items too big", map[string]any{"provider": "notion", "access_token": canaryToken, "max_items": connectors.HardMaxItems + 1}, http.StatusBadRequest, "max_items must be"},
	} {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": tc.source}))
		requireProblem(t, rec, tc.status, tc.detail)
		require.NotContains(t, rec.Body.String(), canaryToken, tc.name)
	}
	require.NotContains(t, e.logs.String(), canaryToken)
}

// Disconnecting cancels the connection's unfinished jobs (and no other's);
// ?purge=true also deletes the documents its jobs wrote.
func TestDisconnectCancelsAndPurges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	putConnection(t, e, apiary.DefaultAccount, "con_a", "notion", records.ConnectionActive)
	putConnection(t, e, apiary.DefaultAccount, "con_b", "notion", records.ConnectionActive)
	submit := func(conn string) apiary.JobID {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{"connection_id": conn}}))
		require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
		return decode[ingestResponse](t, rec).JobID
	}
	a1, a2, b := submit("con_a"), submit("con_a"), submit("con_b")

	// A document a con_a job wrote, and one an upload wrote.
	for id, job := range map[apiary.DocumentID]apiary.JobID{"from-a": a1, "uploaded": "job_upload"} {
		require.NoError(t, e.recs.PutDocument(ctx, apiary.DocumentRecord{ID: id, Account: apiary.DefaultAccount, Version: 1, Job: job}))
	}

	rec := e.do(http.MethodDelete, "/v1/connections/con_a?purge=true", e.editor)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	out := decode[map[string]any](t, rec)
	require.EqualValues(t, 2, out["jobs_canceled"])
	require.EqualValues(t, 1, out["documents_deleted"])
	for id, want := range map[apiary.JobID]apiary.JobStatus{a1: apiary.JobCanceled, a2: apiary.JobCanceled, b: apiary.JobQueued} {
		j, err := e.recs.Job(ctx, apiary.DefaultAccount, id)
		require.NoError(t, err)
		require.Equal(t, want, j.Status, "job %s", id)
	}
	_, err := e.recs.Document(ctx, apiary.DefaultAccount, "from-a")
	require.ErrorIs(t, err, apiary.ErrNotFound, "purged")
	_, err = e.recs.Document(ctx, apiary.DefaultAccount, "uploaded")
	require.NoError(t, err, "another source's document stays")

	requireProblem(t, e.do(http.MethodDelete, "/v1/connections/con_b?purge=maybe", e.editor), http.StatusBadRequest, "purge must be true or false")
}

// POST /v1/connections/{id}/sync submits a sync of one of its sources;
// an ephemeral token can be neither synced nor scheduled.
func TestSyncConnection(t *testing.T) {
	t.Parallel()
	var held *custody.Custody
	e := newEnv(t, withCustody(t, &held))
	ctx := context.Background()
	putConnection(t, e, apiary.DefaultAccount, "con_sync", "github", records.ConnectionActive)
	other, _ := e.otherAccount("Hooli")
	putConnection(t, e, other, "con_hooli", "github", records.ConnectionActive)

	for _, body := range []request{{}, jsonBody(map[string]any{"location": "octo/docs@main", "items": "all"})} {
		rec := e.do(http.MethodPost, "/v1/connections/con_sync/sync", e.editor, body)
		require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
		job, err := e.recs.Job(ctx, apiary.DefaultAccount, decode[ingestResponse](t, rec).JobID)
		require.NoError(t, err)
		require.Equal(t, "con_sync", job.Connection)
		require.Equal(t, "github", job.Source)
		staged, err := e.stager.Load(ctx, apiary.DefaultAccount, job.ID)
		require.NoError(t, err)
		spec, err := connectors.SpecFrom(staged)
		require.NoError(t, err)
		require.True(t, spec.Sync)
		require.Equal(t, "con_sync", spec.Connection)
	}
	require.Zero(t, held.Held(), "a sync deposits nothing")

	requireProblem(t, e.do(http.MethodPost, "/v1/connections/con_hooli/sync", e.editor), http.StatusNotFound, "no such connection")
	requireProblem(t, e.do(http.MethodPost, "/v1/connections/con_sync/sync", e.viewer), http.StatusForbidden, "role editor")
	requireProblem(t, e.do(http.MethodPost, "/v1/connections/con_sync/sync", e.editor, jsonBody(map[string]any{"access_token": "canary-sync-token"})),
		http.StatusBadRequest, "send no access_token")
	requireProblem(t, e.do(http.MethodPost, "/v1/connections/con_sync/sync", e.editor, jsonBody(map[string]any{"connection_id": "con_hooli"})),
		http.StatusBadRequest, "set by the route")
	requireProblem(t, e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"provider": "github", "access_token": "canary-sync-token", "sync": true,
	}})), http.StatusBadRequest, "an ephemeral token cannot be synced")
	requireProblem(t, e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"provider": "web", "url": "https://example.com/", "sync": true,
	}})), http.StatusBadRequest, "only a connection's source can be synced")
	require.NotContains(t, e.logs.String(), "canary-sync-token")
}

// With the drive.file scope, a Drive source must pick its files.
func TestDrivePickedOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.DrivePickedOnly = true })
	putConnection(t, e, apiary.DefaultAccount, "con_drive", "google", records.ConnectionActive)
	requireProblem(t, e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"connection_id": "con_drive", "location": "all",
	}})), http.StatusBadRequest, "scope drive.file")
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"source": map[string]any{
		"connection_id": "con_drive", "items": []string{"1AbC"},
	}}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
}
