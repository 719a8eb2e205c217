package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
)

// inProcess is a whole Apiary in this process (startInProcess) with an
// admin token of the default account, called through its handler.
type inProcess struct {
	t     *testing.T
	a     *app
	srv   *api.Server
	admin string
}

func startKeysApp(t *testing.T, cfg Config) *inProcess {
	t.Helper()
	ctx := t.Context()
	a, srv, _, err := startInProcess(ctx, cfg, slog.New(slog.DiscardHandler), "keys test")
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return &inProcess{t: t, a: a, srv: srv}
}

// newAccount makes a fresh account (its key in the provider, so that runs
// sharing a KMS do not share keys) and an admin token the calls use.
func (p *inProcess) newAccount() apiary.AccountID {
	p.t.Helper()
	ctx := p.t.Context()
	acc := apiary.NewAccountID()
	require.NoError(p.t, p.a.keys.CreateAccountKey(ctx, acc))
	require.NoError(p.t, p.a.recs.CreateAccount(ctx, apiary.Account{ID: acc, Name: "keys test", CreatedAt: time.Now().UTC()}))
	p.useAccount(acc)
	return acc
}

// useAccount makes the calls with a new admin token of acc.
func (p *inProcess) useAccount(acc apiary.AccountID) {
	p.t.Helper()
	admin, err := api.NewToken()
	require.NoError(p.t, err)
	require.NoError(p.t, p.a.recs.CreateToken(p.t.Context(), apiary.Token{ID: apiary.NewTokenID(), Account: acc, Name: "admin",
		Role: apiary.RoleAdmin, Hash: api.HashToken(admin), CreatedAt: time.Now().UTC()}))
	p.admin = admin
}

func (p *inProcess) call(method, path string, body any, out any) int {
	p.t.Helper()
	var b []byte
	if body != nil {
		var err error
		b, err = json.Marshal(body)
		require.NoError(p.t, err)
	}
	req := httptest.NewRequestWithContext(p.t.Context(), method, path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+p.admin)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	p.srv.Handler().ServeHTTP(rec, req)
	if out != nil && rec.Code < 300 {
		require.NoError(p.t, json.Unmarshal(rec.Body.Bytes(), out), rec.Body.String())
	}
	return rec.Code
}

// ingest ingests docs and waits (polling, with a deadline) for the job to succeed.
func (p *inProcess) ingest(docs []map[string]string) {
	p.t.Helper()
	var acc struct {
		JobID string `json:"job_id"`
	}
	require.Equal(p.t, http.StatusAccepted, p.call(http.MethodPost, "/v1/ingest", map[string]any{"documents": docs}, &acc))
	deadline := time.Now().Add(time.Minute)
	for {
		var j struct {
			Status string `json:"status"`
		}
		require.Equal(p.t, http.StatusOK, p.call(http.MethodGet, "/v1/jobs/"+acc.JobID, nil, &j))
		if apiary.JobStatus(j.Status).Final() {
			require.Equal(p.t, string(apiary.JobSucceeded), j.Status)
			return
		}
		require.True(p.t, time.Now().Before(deadline), "job %s still %s", acc.JobID, j.Status)
		select {
		case <-p.t.Context().Done():
			p.t.Fatal(p.t.Context().Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// texts returns the text of every chunk a query finds.
func (p *inProcess) texts(query string) []string {
	p.t.Helper()
	var res struct {
		Results []struct {
			Text string `json:"text"`
		} `json:"results"`
	}
	require.Equal(p.t, http.StatusOK, p.call(http.MethodPost, "/v1/query", map[string]any{"query": query, "top_k": 30}, &res))
	var out []string
	for _, r := range res.Results {
		out = append(out, r.Text)
	}
	return out
}

// TestKeyHierarchyAndRotation: on by default, the key-encryption keys keep
// the key provider to a call or two for a batch of documents; rotating the
// account key (POST /v1/account/keys/rotate) leaves every document
// readable, in this process and in a restarted one.
func TestKeyHierarchyAndRotation(t *testing.T) {
	keys := map[string][]string{"local": nil}
	if ep := os.Getenv("APIARY_TEST_KMS_ENDPOINT"); ep != "" {
		keys["awskms"] = []string{"--keys", "awskms", "--kms-endpoint", ep}
	} else {
		t.Log("APIARY_TEST_KMS_ENDPOINT is not set: awskms skipped")
	}
	for name, args := range keys {
		t.Run(name, func(t *testing.T) {
			dataDir := t.TempDir()
			cfg := serveConfig(t, dataDir, args...)
			p := startKeysApp(t, cfg)
			acc := p.newAccount()
			const n = 12
			var docs []map[string]string
			for i := range n {
				docs = append(docs, map[string]string{"id": fmt.Sprintf("doc-%d", i), "text": fmt.Sprintf("hive %d keeps amber honeycomb number %d", i, i)})
			}
			calls := p.a.keyCalls.Calls()
			p.ingest(docs)
			require.Less(t, p.a.keyCalls.Calls()-calls, int64(n)/2, "the key provider is called per KEK, not per document")
			ids, err := p.a.recs.KEKIDs(t.Context(), acc)
			require.NoError(t, err)
			require.NotEmpty(t, ids)
			before := p.texts("amber honeycomb")
			require.Len(t, before, n)

			var rot struct {
				Version int `json:"version"`
			}
			require.Equal(t, http.StatusOK, p.call(http.MethodPost, "/v1/account/keys/rotate", nil, &rot))
			require.Equal(t, 2, rot.Version)
			require.ElementsMatch(t, before, p.texts("amber honeycomb"))
			p.ingest([]map[string]string{{"id": "after", "text": "amber honeycomb after the rotation"}})
			p.a.Close()

			// A restarted process opens everything: KEKs re-wrapped by version 2.
			q := startKeysApp(t, serveConfig(t, dataDir, args...))
			q.useAccount(acc)
			require.ElementsMatch(t, append(before, "amber honeycomb after the rotation"), q.texts("amber honeycomb"))
		})
	}
}
