package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
)

// hookSink is a webhook receiver: on each path it answers with that path's
// statuses in turn (then 200), and keeps every request it got.
type hookSink struct {
	*httptest.Server
	mu       sync.Mutex
	statuses map[string][]int
	headers  []http.Header
	bodies   [][]byte
	paths    []string
}

func newHookSink(t *testing.T, statuses map[string][]int) *hookSink {
	h := &hookSink{statuses: statuses}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.headers, h.bodies, h.paths = append(h.headers, r.Header.Clone()), append(h.bodies, b), append(h.paths, r.URL.Path)
		status := http.StatusOK
		if st := h.statuses[r.URL.Path]; len(st) > 0 {
			status, h.statuses[r.URL.Path] = st[0], st[1:]
		}
		h.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

// on returns the requests that reached path.
func (h *hookSink) on(path string) (headers []http.Header, bodies [][]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, p := range h.paths {
		if p == path {
			headers, bodies = append(headers, h.headers[i]), append(bodies, h.bodies[i])
		}
	}
	return headers, bodies
}

// TestServeWebhooks drives webhooks through the binary: an endpoint that
// fails once, a restart of the server between its attempts, and a job's
// own webhook_url signed with the account's default secret.
func TestServeWebhooks(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	s := startServer(t, dataDir, token, "--allow-private-webhooks")
	sink := newHookSink(t, map[string][]int{"/endpoint": {http.StatusInternalServerError}})

	var hook struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	require.Equal(t, http.StatusCreated, s.call(token, http.MethodPost, "/v1/webhooks",
		map[string]any{"url": sink.URL + "/endpoint", "events": []string{"job.succeeded"}}, &hook))
	var def struct {
		Secret string `json:"secret"`
	}
	require.Equal(t, http.StatusCreated, s.call(token, http.MethodPost, "/v1/webhooks/default-secret", nil, &def))

	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest",
		map[string]any{"documents": tourDocs[:1], "webhook_url": sink.URL + "/job"}, &accepted))
	require.Equal(t, "succeeded", s.waitJob(token, accepted.JobID, 60*time.Second).Status)

	// The endpoint's first attempt fails (500) and is recorded; restart
	// between attempts.
	type deliveryList struct {
		Deliveries []struct {
			Status   string `json:"status"`
			Attempts []struct {
				StatusCode int `json:"status_code"`
			} `json:"attempts"`
		} `json:"deliveries"`
	}
	require.Eventually(t, func() bool {
		var l deliveryList
		code, err := s.try(token, http.MethodGet, "/v1/webhooks/"+hook.ID+"/deliveries", nil, &l)
		return err == nil && code == http.StatusOK && len(l.Deliveries) == 1 && len(l.Deliveries[0].Attempts) == 1
	}, 30*time.Second, 20*time.Millisecond)
	h, _ := sink.on("/endpoint")
	require.Len(t, h, 1)
	s.stop()
	s = startServer(t, dataDir, token, "--allow-private-webhooks")
	require.Eventually(t, func() bool { h, _ := sink.on("/endpoint"); return len(h) == 2 }, 60*time.Second, 50*time.Millisecond,
		"the retry (5 s after the failure) happens after the restart")

	verify := func(secret string, h http.Header, body []byte) map[string]any {
		t.Helper()
		wh, err := standardwebhooks.NewWebhook(secret)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(body, h))
		var m map[string]any
		require.NoError(t, json.Unmarshal(body, &m))
		return m
	}
	headers, bodies := sink.on("/endpoint")
	require.Equal(t, headers[0].Get("webhook-id"), headers[1].Get("webhook-id"), "the same webhook-id on the retry")
	for i := range headers {
		m := verify(hook.Secret, headers[i], bodies[i])
		require.Equal(t, "job.succeeded", m["type"])
		require.Equal(t, accepted.JobID, m["data"].(map[string]any)["job_id"])
	}
	require.Eventually(t, func() bool { h, _ := sink.on("/job"); return len(h) == 1 }, 30*time.Second, 20*time.Millisecond)
	headers, bodies = sink.on("/job")
	m := verify(def.Secret, headers[0], bodies[0])
	require.Equal(t, accepted.JobID, m["data"].(map[string]any)["job_id"])

	var list deliveryList
	require.Eventually(t, func() bool {
		code, err := s.try(token, http.MethodGet, "/v1/webhooks/"+hook.ID+"/deliveries", nil, &list)
		return err == nil && code == http.StatusOK && len(list.Deliveries) == 1 && list.Deliveries[0].Status == "succeeded"
	}, 30*time.Second, 50*time.Millisecond)
	require.Len(t, list.Deliveries[0].Attempts, 2)
	require.Equal(t, 500, list.Deliveries[0].Attempts[0].StatusCode)
	require.Equal(t, 200, list.Deliveries[0].Attempts[1].StatusCode)

	// Secrets appear in no file and no log line.
	assertNoPlaintext(t, dataDir, hook.Secret)
	assertNoPlaintext(t, dataDir, def.Secret)
	s.stop()
	require.NotContains(t, s.stderr.String(), hook.Secret)
	require.NotContains(t, s.stderr.String(), def.Secret)
	_, bodies = sink.on("/endpoint")
	require.Len(t, bodies, 2, "exactly one delivery: one failure, one success")
}
