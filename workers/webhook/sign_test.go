package webhook_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/webhooks"
	"github.com/apiaryhq/apiary/workers/webhook"
)

// signCase is one signed message and whether a verifier must accept it.
type signCase struct {
	name    string
	secret  string // the verifier's secret
	headers http.Header
	body    string
	valid   bool
}

func signed(t *testing.T, id string, ts time.Time, body string, secrets ...string) http.Header {
	t.Helper()
	sig, err := webhook.Sign(id, ts, []byte(body), secrets...)
	require.NoError(t, err)
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	return h
}

func signCases(t *testing.T) []signCase {
	t.Helper()
	oldSecret, err := webhooks.NewSecret()
	require.NoError(t, err)
	newSecret, err := webhooks.NewSecret()
	require.NoError(t, err)
	body := `{"type":"job.succeeded","id":"evt_1","created_at":"2026-01-02T03:04:05Z","data":{"job_id":"job_1","status":"succeeded","counts":{"documents_total":1,"documents_done":1,"documents_failed":0,"chunks":3},"errors":[]}}`
	now := time.Now()
	valid := signed(t, "evt_1", now, body, oldSecret)
	rotating := signed(t, "evt_2", now, body, newSecret, oldSecret)
	require.Len(t, strings.Split(rotating.Get(webhook.HeaderSignature), " "), 2, "one signature per live secret")
	return []signCase{
		{"valid", oldSecret, valid, body, true},
		{"tampered body", oldSecret, valid, strings.Replace(body, `"chunks":3`, `"chunks":4`, 1), false},
		{"wrong secret", newSecret, valid, body, false},
		{"other id", oldSecret, func() http.Header { h := valid.Clone(); h.Set(webhook.HeaderID, "evt_x"); return h }(), body, false},
		{"older than 5 minutes", oldSecret, signed(t, "evt_1", now.Add(-6*time.Minute), body, oldSecret), body, false},
		{"rotation: old secret", oldSecret, rotating, body, true},
		{"rotation: new secret", newSecret, rotating, body, true},
	}
}

// TestSignVerifiesWithStandardWebhooksGo checks our signatures with the
// official Go library.
func TestSignVerifiesWithStandardWebhooksGo(t *testing.T) {
	t.Parallel()
	for _, c := range signCases(t) {
		wh, err := standardwebhooks.NewWebhook(c.secret)
		require.NoError(t, err)
		err = wh.Verify([]byte(c.body), c.headers)
		if c.valid {
			require.NoError(t, err, c.name)
		} else {
			require.Error(t, err, c.name)
		}
	}
}

// TestSignVerifiesWithStandardWebhooksNode checks them with the official
// npm package, installed by scripts/test-services.sh.
func TestSignVerifiesWithStandardWebhooksNode(t *testing.T) {
	t.Parallel()
	nodePath := os.Getenv("APIARY_TEST_NODE_PATH")
	if nodePath == "" {
		t.Skip("APIARY_TEST_NODE_PATH is not set; run scripts/test-services.sh start and source .test-services/env")
	}
	cases := signCases(t)
	var in bytes.Buffer
	for _, c := range cases {
		headers := map[string]string{}
		for k := range c.headers {
			headers[strings.ToLower(k)] = c.headers.Get(k)
		}
		line, err := json.Marshal(map[string]any{"secret": c.secret, "headers": headers, "body": c.body})
		require.NoError(t, err)
		in.Write(append(line, '\n'))
	}
	cmd := exec.CommandContext(t.Context(), "node", "testdata/verify.js")
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodePath)
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, len(cases), string(out))
	for i, c := range cases {
		if c.valid {
			require.Equal(t, "ok", lines[i], c.name)
		} else {
			require.True(t, strings.HasPrefix(lines[i], "fail"), "%s: %s", c.name, lines[i])
		}
	}
}
