package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
)

// Canaries of TestNothingInTheClearAtRest: one per thing a customer gives
// the service that must be stored sealed (or, for an Idempotency-Key, as a
// keyed hash).
const (
	clearHookPath    = "cnry-hook-path-5d1e"
	clearHookToken   = "cnry-hook-query-token-a93c"
	clearHookDesc    = "cnry-hook-description-0b77"
	clearJobHookKey  = "cnry-job-webhook-key-64f2"
	clearIdemKey     = "cnry-idempotency-key-c3d8"
	clearDocText     = "cnry-document-text-1ea9"
	clearDocTitle    = "cnry-document-title-77b0"
	clearDocMeta     = "cnry-document-meta-e512"
	clearTokenName   = "cnry-token-name-9a4d"
	clearAccountName = "cnry-account-name-2f6b"
)

// hookReceiver is a webhook endpoint that records the paths (with their
// query) it was called at.
type hookReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []string
}

func startHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h.mu.Lock()
		h.calls = append(h.calls, r.URL.RequestURI())
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) called(uri string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.calls {
		if c == uri {
			return true
		}
	}
	return false
}

// postWithHeader is server.call with one extra request header.
func (s *server) postWithHeader(token, path, header, value string, body, out any) int {
	s.t.Helper()
	b, err := json.Marshal(body)
	require.NoError(s.t, err)
	req, err := http.NewRequest(http.MethodPost, s.base+path, bytes.NewReader(b))
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(header, value)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	if out != nil {
		require.NoError(s.t, json.Unmarshal(raw, out), "%s", raw)
	}
	return resp.StatusCode
}

// TestNothingInTheClearAtRest puts canaries in everything a customer hands
// the service that is not an id (a webhook's URL with a ?token= query, its
// description, a job's own webhook_url, an Idempotency-Key, a document's
// text, title and metadata, a token's and an account's name), lets the job
// run and both webhooks be delivered, then searches every file of the data
// dir for each canary, raw, in hex, URL-escaped and in base64: none may be
// there.
func TestNothingInTheClearAtRest(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	hooks := startHookReceiver(t)
	s := startServer(t, dataDir, token, "--allow-private-webhooks", "--log-level", "debug")

	var acct struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	require.Equal(t, http.StatusCreated, s.call(token, http.MethodPost, "/v1/accounts", map[string]string{"name": clearAccountName}, &acct))
	admin := acct.Token
	require.Equal(t, http.StatusCreated, s.call(admin, http.MethodPost, "/v1/tokens", map[string]string{"name": clearTokenName, "role": "viewer"}, nil))

	hookURI := "/" + clearHookPath + "?token=" + clearHookToken
	require.Equal(t, http.StatusCreated, s.call(admin, http.MethodPost, "/v1/webhooks", map[string]any{
		"url": hooks.srv.URL + hookURI, "description": clearHookDesc,
	}, nil))
	jobHookURI := "/job?key=" + clearJobHookKey
	var accepted, again struct {
		JobID string `json:"job_id"`
	}
	body := map[string]any{
		"documents": []map[string]any{{
			"id": "doc-1", "title": clearDocTitle, "metadata": map[string]string{"team": clearDocMeta},
			"text": "Honeybees store nectar as honey in hexagonal wax cells. The word " + clearDocText + " is in the text.",
		}},
		"webhook_url": hooks.srv.URL + jobHookURI,
	}
	require.Equal(t, http.StatusAccepted, s.postWithHeader(admin, "/v1/ingest", "Idempotency-Key", clearIdemKey, body, &accepted))
	j := s.waitJob(admin, accepted.JobID, time.Minute)
	require.Equal(t, "succeeded", j.Status, "%+v", j)
	// The key, kept only as a keyed hash, still recognises a retry, and
	// still refuses another body.
	s.postWithHeader(admin, "/v1/ingest", "Idempotency-Key", clearIdemKey, body, &again)
	require.Equal(t, accepted.JobID, again.JobID)
	require.Equal(t, http.StatusConflict, s.postWithHeader(admin, "/v1/ingest", "Idempotency-Key", clearIdemKey,
		map[string]any{"documents": []map[string]any{{"id": "doc-2", "text": "Another body."}}}, nil))

	// Both endpoints got the job's final event: the delivery records, which
	// remember each URL, are written.
	require.Eventually(t, func() bool { return hooks.called(hookURI) && hooks.called(jobHookURI) },
		time.Minute, 20*time.Millisecond, "the webhooks were not delivered")
	// The service still reads what it sealed.
	var listed struct {
		Webhooks []struct {
			URL         string `json:"url"`
			Description string `json:"description"`
		} `json:"webhooks"`
	}
	require.Equal(t, http.StatusOK, s.call(admin, http.MethodGet, "/v1/webhooks", nil, &listed))
	require.Len(t, listed.Webhooks, 1)
	require.Equal(t, hooks.srv.URL+hookURI, listed.Webhooks[0].URL)
	require.Equal(t, clearHookDesc, listed.Webhooks[0].Description)
	var account struct {
		Name string `json:"name"`
	}
	require.Equal(t, http.StatusOK, s.call(admin, http.MethodGet, "/v1/account", nil, &account))
	require.Equal(t, clearAccountName, account.Name)
	var tokens struct {
		Tokens []struct {
			Name string `json:"name"`
		} `json:"tokens"`
	}
	require.Equal(t, http.StatusOK, s.call(admin, http.MethodGet, "/v1/tokens", nil, &tokens))
	require.Contains(t, fmt.Sprint(tokens.Tokens), clearTokenName)
	s.stop()

	// Each canary is searched for on its own, so that a failure lists
	// every one found, and where.
	var scanned int
	leaks := map[string][]string{}
	files := readTree(t, dataDir, func(path string, b []byte) {
		scanned += len(b)
		for _, c := range []string{clearHookPath, clearHookToken, clearHookDesc, clearJobHookKey, clearIdemKey,
			clearDocText, clearDocTitle, clearDocMeta, clearTokenName, clearAccountName} {
			if form := newCanaries(c).in(b); form != nil {
				leaks[c] = append(leaks[c], fmt.Sprintf("%s (as %q)", strings.TrimPrefix(path, dataDir), form))
			}
		}
	})
	require.Empty(t, leaks, "canaries found in the data dir")
	// Nor in the logs (at debug level).
	logs := []byte(s.stdout.String() + s.stderr.String())
	require.Contains(t, string(logs), `"route":"/v1/ingest"`, "the logs were captured")
	newCanaries(clearHookPath, clearHookToken, clearHookDesc, clearJobHookKey, clearIdemKey,
		clearDocText, clearDocTitle, clearDocMeta, clearTokenName, clearAccountName).requireNone(t, logs, "the logs")
	require.Greater(t, files, 3, "the data dir holds the NATS store, keyring and vector store")
	t.Logf("data dir: %d files, %d bytes, no canary", files, scanned)
}
