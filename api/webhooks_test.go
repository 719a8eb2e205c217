package api

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/webhooks"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/webhook"
)

func allowPrivateWebhooks(cfg *Config, _ *Deps) { cfg.AllowPrivateWebhooks = true }

func (e *env) createWebhook(token string, body map[string]any) createdWebhook {
	e.t.Helper()
	rec := e.do(http.MethodPost, "/v1/webhooks", token, jsonBody(body))
	require.Equal(e.t, http.StatusCreated, rec.Code, rec.Body.String())
	return decode[createdWebhook](e.t, rec)
}

func requireSecretFormat(t *testing.T, s string) {
	t.Helper()
	require.True(t, strings.HasPrefix(s, "whsec_"), "secret %q", s)
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	require.NoError(t, err)
	require.Len(t, key, 32)
}

func TestWebhookCRUD(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := e.createWebhook(e.admin, map[string]any{
		"url": "https://hooks.example.com/apiary", "events": []string{"job.succeeded", "job.failed"}, "description": "CI",
	})
	requireSecretFormat(t, created.Secret)
	require.True(t, strings.HasPrefix(created.ID, "wh_"))
	require.Equal(t, []apiary.EventType{"job.succeeded", "job.failed"}, created.Events)
	require.True(t, created.Enabled)

	rec := e.do(http.MethodGet, "/v1/webhooks/"+created.ID, e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.NotContains(t, rec.Body.String(), created.Secret)
	require.NotContains(t, rec.Body.String(), "secret\"")
	got := decode[webhookView](t, rec)
	require.Equal(t, "CI", got.Description)

	// The record holds the secret sealed only.
	w, err := e.recs.Webhook(context.Background(), apiary.DefaultAccount, created.ID)
	require.NoError(t, err)
	require.NotContains(t, string(w.Sealed), strings.TrimPrefix(created.Secret, "whsec_"))
	plain, err := webhooks.OpenSecret(context.Background(), e.keys, apiary.DefaultAccount, created.ID, w.Sealed)
	require.NoError(t, err)
	require.Equal(t, created.Secret, plain)

	// Empty events: all job events.
	all := e.createWebhook(e.admin, map[string]any{"url": "https://hooks.example.com/all"})
	require.Equal(t, []apiary.EventType{}, all.Events)

	rec = e.do(http.MethodGet, "/v1/webhooks", e.admin)
	require.Equal(t, http.StatusOK, rec.Code)
	list := decode[struct{ Webhooks []webhookView }](t, rec)
	require.Len(t, list.Webhooks, 2)
	require.ElementsMatch(t, []string{created.ID, all.ID}, []string{list.Webhooks[0].ID, list.Webhooks[1].ID})
	require.NotContains(t, rec.Body.String(), "whsec_")

	rec = e.do(http.MethodPatch, "/v1/webhooks/"+created.ID, e.admin, jsonBody(map[string]any{
		"url": "https://hooks.example.com/v2", "events": []string{}, "enabled": false,
	}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	got = decode[webhookView](t, rec)
	require.Equal(t, "https://hooks.example.com/v2", got.URL)
	require.Empty(t, got.Events)
	require.False(t, got.Enabled)
	require.Equal(t, "CI", got.Description, "fields not sent are kept")

	requireProblem(t, e.do(http.MethodPatch, "/v1/webhooks/"+created.ID, e.admin, jsonBody(map[string]any{})), http.StatusBadRequest, "at least one")
	requireProblem(t, e.do(http.MethodPost, "/v1/webhooks/"+created.ID+"/test", e.admin), http.StatusConflict, "disabled")

	rec = e.do(http.MethodDelete, "/v1/webhooks/"+created.ID, e.admin)
	require.Equal(t, http.StatusNoContent, rec.Code)
	requireProblem(t, e.do(http.MethodGet, "/v1/webhooks/"+created.ID, e.admin), http.StatusNotFound, "no such webhook")
	requireProblem(t, e.do(http.MethodDelete, "/v1/webhooks/"+created.ID, e.admin), http.StatusNotFound, "no such webhook")
}

func TestWebhookAccessAndTenancy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.createWebhook(e.admin, map[string]any{"url": "https://hooks.example.com/a"})
	_, otherAdmin := e.otherAccount("other")
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/webhooks"},
		{http.MethodPost, "/v1/webhooks"},
		{http.MethodGet, "/v1/webhooks/" + w.ID},
		{http.MethodPost, "/v1/webhooks/" + w.ID + "/test"},
		{http.MethodGet, "/v1/webhooks/" + w.ID + "/deliveries"},
		{http.MethodPost, "/v1/webhooks/default-secret"},
	} {
		requireProblem(t, e.do(r.method, r.path, e.editor), http.StatusForbidden, "")
		requireProblem(t, e.do(r.method, r.path, ""), http.StatusUnauthorized, "")
	}
	// Another account's admin sees none of it.
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/webhooks/" + w.ID},
		{http.MethodDelete, "/v1/webhooks/" + w.ID},
		{http.MethodPost, "/v1/webhooks/" + w.ID + "/rotate-secret"},
		{http.MethodPost, "/v1/webhooks/" + w.ID + "/test"},
		{http.MethodGet, "/v1/webhooks/" + w.ID + "/deliveries"},
		{http.MethodPost, "/v1/webhooks/" + w.ID + "/deliveries/dlv_x/redeliver"},
	} {
		requireProblem(t, e.do(r.method, r.path, otherAdmin), http.StatusNotFound, "no such webhook")
	}
	rec := e.do(http.MethodPatch, "/v1/webhooks/"+w.ID, otherAdmin, jsonBody(map[string]any{"enabled": false}))
	requireProblem(t, rec, http.StatusNotFound, "no such webhook")
	rec = e.do(http.MethodGet, "/v1/webhooks", otherAdmin)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, decode[struct{ Webhooks []webhookView }](t, rec).Webhooks)
}

func TestWebhookValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{}, "url is required"},
		{map[string]any{"url": "ftp://example.com/"}, "https://"},
		{map[string]any{"url": "https://u:p@example.com/"}, "user name"},
		{map[string]any{"url": "https://example.com/", "events": []string{"job.exploded"}}, "not a job event"},
		{map[string]any{"url": "https://example.com/", "events": []string{"webhook.test"}}, "not a job event"},
		{map[string]any{"url": "https://example.com/", "events": []string{"job.failed", "job.failed"}}, "twice"},
		{map[string]any{"url": "https://example.com/", "secret": "mine"}, "unknown JSON field"},
		{map[string]any{"url": "https://example.com/", "description": strings.Repeat("x", 501)}, "description"},
	} {
		requireProblem(t, e.do(http.MethodPost, "/v1/webhooks", e.admin, jsonBody(c.body)), http.StatusBadRequest, c.want)
	}
	requireProblem(t, e.do(http.MethodGet, "/v1/webhooks/nope", e.admin), http.StatusNotFound, "no such webhook")
}

// SSRF: literal private targets are refused when the URL is given, unless
// the server allows private webhooks.
func TestWebhookURLsRefusePrivateTargets(t *testing.T) {
	t.Parallel()
	strict := newEnv(t)
	lenient := newEnv(t, allowPrivateWebhooks)
	for _, u := range []string{
		"http://127.0.0.1/hook",
		"http://10.0.0.1/hook",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]/hook",
		"http://0x7f000001/hook",
		"http://2130706433/hook",
		"http://0177.0.0.1/hook",
		"http://127.1/hook",
		"http://localhost:8080/hook",
		"http://[::ffff:10.0.0.1]/hook",
		"http://100.64.0.1/hook",
	} {
		rec := strict.do(http.MethodPost, "/v1/webhooks", strict.admin, jsonBody(map[string]any{"url": u}))
		requireProblem(t, rec, http.StatusBadRequest, "refused")
		rec = strict.do(http.MethodPost, "/v1/ingest", strict.editor, jsonBody(map[string]any{
			"documents": []map[string]any{{"id": "a", "text": "hello"}}, "webhook_url": u,
		}))
		requireProblem(t, rec, http.StatusBadRequest, "webhook_url")
		rec = strict.do(http.MethodPost, "/v1/ingest", strict.editor,
			multipartBody([]filePart{{name: "a.txt", data: "hello"}}, map[string]string{"webhook_url": u}))
		requireProblem(t, rec, http.StatusBadRequest, "webhook_url")

		rec = lenient.do(http.MethodPost, "/v1/webhooks", lenient.admin, jsonBody(map[string]any{"url": u}))
		if strings.Contains(u, "169.254.169.254") {
			requireProblem(t, rec, http.StatusBadRequest, "metadata") // never, even then
			continue
		}
		require.Equal(t, http.StatusCreated, rec.Code, "%s: %s", u, rec.Body.String())
	}
	// PATCH checks the URL the same way.
	w := strict.createWebhook(strict.admin, map[string]any{"url": "https://hooks.example.com/"})
	rec := strict.do(http.MethodPatch, "/v1/webhooks/"+w.ID, strict.admin, jsonBody(map[string]any{"url": "http://10.0.0.1/"}))
	requireProblem(t, rec, http.StatusBadRequest, "refused")
}

func TestIngestStoresWebhookURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{
		"documents": []map[string]any{{"id": "a", "text": "hello"}}, "webhook_url": "https://hooks.example.com/job",
	}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	id := decode[ingestResponse](t, rec).JobID
	j, err := e.recs.Job(context.Background(), apiary.DefaultAccount, id)
	require.NoError(t, err)
	require.Equal(t, "https://hooks.example.com/job", j.WebhookURL)
	rec = e.do(http.MethodGet, "/v1/jobs/"+string(id), e.editor)
	require.NotContains(t, rec.Body.String(), "hooks.example.com", "the job view does not show it")

	// A multipart upload takes it as a form field.
	rec = e.do(http.MethodPost, "/v1/ingest", e.editor,
		multipartBody([]filePart{{name: "m.txt", data: "hello"}}, map[string]string{"webhook_url": "https://hooks.example.com/upload"}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	j, err = e.recs.Job(context.Background(), apiary.DefaultAccount, decode[ingestResponse](t, rec).JobID)
	require.NoError(t, err)
	require.Equal(t, "https://hooks.example.com/upload", j.WebhookURL)

	// Without it, the job has none.
	id = e.ingest(e.editor, map[string]any{"id": "b", "text": "hi"})
	j, err = e.recs.Job(context.Background(), apiary.DefaultAccount, id)
	require.NoError(t, err)
	require.Empty(t, j.WebhookURL)
}

func TestWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.createWebhook(e.admin, map[string]any{"url": "https://hooks.example.com/"})
	rec := e.do(http.MethodPost, "/v1/webhooks/"+w.ID+"/rotate-secret", e.admin)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	rotated := decode[secretView](t, rec)
	requireSecretFormat(t, rotated.Secret)
	require.NotEqual(t, w.Secret, rotated.Secret)
	require.NotNil(t, rotated.PreviousSecretExpiresAt)
	require.WithinDuration(t, time.Now().Add(24*time.Hour), *rotated.PreviousSecretExpiresAt, time.Minute)

	got := decode[webhookView](t, e.do(http.MethodGet, "/v1/webhooks/"+w.ID, e.admin))
	require.NotNil(t, got.PreviousSecretExpiresAt)

	rec2, err := e.recs.Webhook(context.Background(), apiary.DefaultAccount, w.ID)
	require.NoError(t, err)
	live, err := webhooks.LiveSecrets(context.Background(), e.keys, apiary.DefaultAccount, w.ID, rec2.Secrets, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{rotated.Secret, w.Secret}, live, "both sign during the grace period")
	live, err = webhooks.LiveSecrets(context.Background(), e.keys, apiary.DefaultAccount, w.ID, rec2.Secrets, time.Now().Add(25*time.Hour))
	require.NoError(t, err)
	require.Equal(t, []string{rotated.Secret}, live, "the old one stops after it")
	require.NotContains(t, e.logs.String(), rotated.Secret)
	require.NotContains(t, e.logs.String(), w.Secret)
}

func TestDefaultSecretShownOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.do(http.MethodPost, "/v1/webhooks/default-secret", e.admin)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	first := decode[secretView](t, rec)
	requireSecretFormat(t, first.Secret)

	rec = e.do(http.MethodPost, "/v1/webhooks/default-secret", e.admin)
	p := requireProblem(t, rec, http.StatusConflict, "rotate it with POST /v1/webhooks/default-secret/rotate")
	require.NotContains(t, p.Detail, first.Secret)

	rec = e.do(http.MethodPost, "/v1/webhooks/default-secret/rotate", e.admin)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	second := decode[secretView](t, rec)
	requireSecretFormat(t, second.Secret)
	require.NotEqual(t, first.Secret, second.Secret)
	require.NotNil(t, second.PreviousSecretExpiresAt)

	// A secret the dispatcher made on first use (never shown) is shown once.
	other, otherAdmin := e.otherAccount("other")
	_, _, created, err := webhooks.EnsureDefaultSecret(context.Background(), e.recs, e.keys, other, false)
	require.NoError(t, err)
	require.True(t, created)
	rec = e.do(http.MethodPost, "/v1/webhooks/default-secret", otherAdmin)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	requireSecretFormat(t, decode[secretView](t, rec).Secret)
	requireProblem(t, e.do(http.MethodPost, "/v1/webhooks/default-secret", otherAdmin), http.StatusConflict, "rotate")
}

// hookReceiver is a real HTTP endpoint that keeps what it got and answers
// 200.
type hookReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []*http.Request
	bod [][]byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got, h.bod = append(h.got, r), append(h.bod, b)
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

// startDispatcher runs a webhook dispatcher over the env's NATS and records.
func (e *env) startDispatcher() {
	e.t.Helper()
	d, err := webhook.New(webhook.Config{AllowPrivate: true, PollInterval: 20 * time.Millisecond, Schedule: []time.Duration{0}},
		e.recs, e.keys, e.bus.(events.Consumer))
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		require.NoError(e.t, <-done)
	})
}

// Test, list deliveries and redeliver through the API, with a real
// dispatcher and receiver; signatures verify with the official library.
func TestWebhookTestDeliveriesAndRedeliver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, allowPrivateWebhooks)
	rcv := newHookReceiver(t)
	w := e.createWebhook(e.admin, map[string]any{"url": rcv.URL + "/hook"})
	e.startDispatcher()

	rec := e.do(http.MethodPost, "/v1/webhooks/"+w.ID+"/test", e.admin)
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	d := decode[deliveryView](t, rec)
	require.Equal(t, apiary.EventWebhookTest, d.EventType)
	require.Equal(t, records.DeliveryPending, d.Status)
	require.Eventually(t, func() bool { return rcv.count() == 1 }, 20*time.Second, 10*time.Millisecond)

	verifier, err := standardwebhooks.NewWebhook(w.Secret)
	require.NoError(t, err)
	rcv.mu.Lock()
	require.NoError(t, verifier.Verify(rcv.bod[0], rcv.got[0].Header))
	require.Equal(t, d.EventID, rcv.got[0].Header.Get("webhook-id"))
	require.Contains(t, string(rcv.bod[0]), `"type":"webhook.test"`)
	rcv.mu.Unlock()

	list := func() []deliveryView {
		rec := e.do(http.MethodGet, "/v1/webhooks/"+w.ID+"/deliveries", e.admin)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		return decode[struct{ Deliveries []deliveryView }](t, rec).Deliveries
	}
	require.Eventually(t, func() bool {
		ds := list()
		return len(ds) == 1 && ds[0].Status == records.DeliverySucceeded
	}, 20*time.Second, 10*time.Millisecond)
	ds := list()
	require.Len(t, ds[0].Attempts, 1)
	require.Equal(t, 200, ds[0].Attempts[0].StatusCode)

	rec = e.do(http.MethodPost, "/v1/webhooks/"+w.ID+"/deliveries/"+d.ID+"/redeliver", e.admin)
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	require.Eventually(t, func() bool { return rcv.count() == 2 }, 20*time.Second, 10*time.Millisecond)
	rcv.mu.Lock()
	require.Equal(t, rcv.got[0].Header.Get("webhook-id"), rcv.got[1].Header.Get("webhook-id"))
	rcv.mu.Unlock()
	require.Eventually(t, func() bool {
		ds := list()
		return len(ds) == 1 && len(ds[0].Attempts) == 2 && ds[0].Status == records.DeliverySucceeded
	}, 20*time.Second, 10*time.Millisecond)
	requireProblem(t, e.do(http.MethodPost, "/v1/webhooks/"+w.ID+"/deliveries/dlv_nope/redeliver", e.admin), http.StatusNotFound, "no such delivery")
	requireProblem(t, e.do(http.MethodGet, "/v1/webhooks/"+w.ID+"/deliveries?limit=0", e.admin), http.StatusBadRequest, "limit")
}
