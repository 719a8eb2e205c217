package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// A schedule's webhook_url may carry a secret in its query (?token=), as
// a webhook's URL may; webhook URLs are shown to admins only (the webhook
// routes are admin's, a job's view leaves its webhook_url out), so GET
// schedule does not show it to a viewer or an editor. An admin reads it
// back exactly.
func TestScheduleWebhookURLOnlyForAdmins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	putConnection(t, e, apiary.DefaultAccount, "con_hook", "github", records.ConnectionActive)
	const path = "/v1/connections/con_hook/schedule"
	hook := "https://hooks.example.com/sync?token=canary-sched-hook-secret&note=%C3%A9t%C3%A9"
	rec := e.do(http.MethodPut, path, e.admin, jsonBody(map[string]any{"every": "1h", "source": map[string]any{"webhook_url": hook}}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	for _, tok := range []string{e.viewer, e.editor} {
		rec = e.do(http.MethodGet, path, tok)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "canary-sched-hook-secret")
		require.Equal(t, "1h0m0s", decode[scheduleView](t, rec).Every)
	}
	rec = e.do(http.MethodGet, path, e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, hook, decode[scheduleView](t, rec).Source["webhook_url"])

	// The sealed schedule still opens after the account's key rotated.
	rec = e.do(http.MethodPost, "/v1/account/keys/rotate", e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = e.do(http.MethodGet, path, e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, hook, decode[scheduleView](t, rec).Source["webhook_url"])
}

// A schedule is kept in its connection's record, which every token
// refresh and every scheduler pass reads and writes: its source is
// bounded, and one past the bound is a 400 saying what to do, not a
// storage failure.
func TestScheduleSourceTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	putConnection(t, e, apiary.DefaultAccount, "con_big", "github", records.ConnectionActive)
	// Long items of a character JSON escapes six-fold: 1.5 MB sent, 9 MB
	// encoded, past the record store's limit (a sync takes up to 5000).
	items := make([]string, 1500)
	for i := range items {
		items[i] = strings.Repeat("<", 1000) + string(rune('a'+i%26))
	}
	rec := e.do(http.MethodPut, "/v1/connections/con_big/schedule", e.admin,
		jsonBody(map[string]any{"every": "1h", "source": map[string]any{"items": items}}))
	requireProblem(t, rec, http.StatusBadRequest, "schedule its location")
	c, err := e.recs.Connection(t.Context(), apiary.DefaultAccount, "con_big")
	require.NoError(t, err)
	require.Nil(t, c.Schedule)
	// The connection still works: a schedule of a location is taken.
	rec = e.do(http.MethodPut, "/v1/connections/con_big/schedule", e.admin,
		jsonBody(map[string]any{"every": "1h", "source": map[string]any{"location": "octo/docs@main"}}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

// Sealed webhook fields read back exactly as written, at their longest
// and in any script; an error about a URL never quotes its secret query.
func TestWebhookSealedFieldsRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := "https://hooks.example.com/ruche/été/🐝?token=canary-rt-secret&pad="
	hook := base + strings.Repeat("z", 2048-len(base))
	desc := strings.Repeat("蜂é🐝 ", 500/12) // 4 bytes short of 500 per 12
	desc += strings.Repeat("x", 500-len(desc))
	created := e.createWebhook(e.admin, map[string]any{"url": hook, "events": []string{"job.succeeded"}, "description": desc})
	for _, get := range []func() webhookView{
		func() webhookView {
			return decode[webhookView](t, e.do(http.MethodGet, "/v1/webhooks/"+created.ID, e.admin))
		},
		func() webhookView {
			return decode[struct {
				Webhooks []webhookView `json:"webhooks"`
			}](t, e.do(http.MethodGet, "/v1/webhooks", e.admin)).Webhooks[0]
		},
	} {
		got := get()
		require.Equal(t, hook, got.URL)
		require.Equal(t, desc, got.Description)
	}
	desc2 := "ﷺ‏RTL ‮mark"
	rec := e.do(http.MethodPatch, "/v1/webhooks/"+created.ID, e.admin, jsonBody(map[string]any{"description": desc2}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	got := decode[webhookView](t, e.do(http.MethodGet, "/v1/webhooks/"+created.ID, e.admin))
	require.Equal(t, desc2, got.Description)
	require.Equal(t, hook, got.URL)

	for _, bad := range []string{
		"https://127.0.0.1/hook?token=canary-rt-secret",
		"https://hooks.example.com/%zz?token=canary-rt-secret",
		"ftp://hooks.example.com/?token=canary-rt-secret",
		"https://u:canary-rt-secret@hooks.example.com/",
		hook + "z",
	} {
		rec := e.do(http.MethodPost, "/v1/webhooks", e.admin, jsonBody(map[string]any{"url": bad, "events": []string{"job.succeeded"}}))
		require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "canary-rt-secret")
		rec = e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"webhook_url": bad,
			"documents": []map[string]any{{"id": "d1", "text": "x"}}}))
		require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "canary-rt-secret")
	}
	require.NotContains(t, e.logs.String(), "canary-rt-secret")
}

// A credential smuggled into a schedule or a sync under another spelling
// of its field, or twice, is refused like the plain one, and never quoted.
func TestScheduleRefusesSmuggledCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	putConnection(t, e, apiary.DefaultAccount, "con_smug", "github", records.ConnectionActive)
	for _, src := range []string{
		`{"ACCESS_TOKEN": "canary-smuggled"}`,
		`{"Access_Token": "canary-smuggled"}`,
		`{"location": "a", "location": "canary-smuggled"}`,
		`{"secret_access_key": "canary-smuggled", "access_key_id": "AKIA"}`,
		`{"session_token": "canary-smuggled"}`,
		`{"expires_at": "canary-smuggled"}`,
		`{"source": {"access_token": "canary-smuggled"}}`,
	} {
		rec := e.do(http.MethodPut, "/v1/connections/con_smug/schedule", e.admin,
			rawBody("application/json", `{"every": "1h", "source": `+src+`}`))
		require.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", src, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "canary-smuggled")
		rec = e.do(http.MethodPost, "/v1/connections/con_smug/sync", e.editor, rawBody("application/json", src))
		require.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", src, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "canary-smuggled")
	}
	_, err := e.recs.Connection(t.Context(), apiary.DefaultAccount, "con_smug")
	require.NoError(t, err)
	requireProblem(t, e.do(http.MethodGet, "/v1/connections/con_smug/schedule", e.admin), http.StatusNotFound, "no schedule")
	require.NotContains(t, e.logs.String(), "canary-smuggled")
}

// Sealed names read back exactly, in any script, at their longest, and
// through a token's rotation (a new token record) and after the account's
// key rotation.
func TestSealedNamesRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := strings.Repeat("蜂🐝", 100/7) // 98 bytes
	acct := "Ruche " + strings.Repeat("é", 47)
	rec := e.do(http.MethodPost, "/v1/accounts", e.operator, jsonBody(map[string]string{"name": acct}))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	other := decode[createAccountResponse](t, rec)
	rec = e.do(http.MethodGet, "/v1/account", other.Token)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, acct, decode[map[string]any](t, rec)["name"])

	rec = e.do(http.MethodPost, "/v1/tokens", e.admin, jsonBody(map[string]string{"name": name, "role": "viewer"}))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	tok := decode[createTokenResponse](t, rec)
	require.Equal(t, name, tok.Name)
	rec = e.do(http.MethodPost, "/v1/tokens/"+string(tok.ID)+"/rotate", e.admin, jsonBody(map[string]any{}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = e.do(http.MethodPost, "/v1/account/keys/rotate", e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = e.do(http.MethodGet, "/v1/tokens", e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	found := 0
	for _, v := range decode[struct {
		Tokens []tokenView `json:"tokens"`
	}](t, rec).Tokens {
		if v.Name == name {
			found++
		}
	}
	require.Equal(t, 1, found, rec.Body.String())
}
