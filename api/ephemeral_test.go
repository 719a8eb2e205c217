package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/workers/jobs"
)

const canaryToken = "canary-ephemeral-token-41d2"

func s3Body(t *testing.T, extra map[string]any) []byte {
	t.Helper()
	src := map[string]any{"provider": "s3", "bucket": "b", "prefix": "docs/", "region": "eu-west-1"}
	for k, v := range extra {
		src[k] = v
	}
	b, err := json.Marshal(map[string]any{"source": src, "webhook_url": "https://example.com/h"})
	require.NoError(t, err)
	return b
}

// The Idempotency-Key's request hash leaves the credentials out: two
// requests that differ only in their token hash alike, and what is hashed
// never holds the token.
func TestRequestHashLeavesCredentialsOut(t *testing.T) {
	t.Parallel()
	const ct = "application/json"
	first := s3Body(t, map[string]any{"access_key_id": "AKIA1", "secret_access_key": canaryToken, "session_token": "s1", "expires_at": "2026-01-01T00:00:00Z"})
	fresh := s3Body(t, map[string]any{"access_key_id": "AKIA2", "secret_access_key": "another", "session_token": "s2", "expires_at": "2026-02-01T00:00:00Z"})
	require.Equal(t, requestHash(ct, first), requestHash(ct, fresh))
	require.NotContains(t, string(requestHashInput(ct, first)), canaryToken)
	require.NotContains(t, string(requestHashInput(ct, first)), "AKIA1")

	tok := func(v string) []byte {
		b, err := json.Marshal(map[string]any{"source": map[string]any{"provider": "drive", "access_token": v, "items": "all"}})
		require.NoError(t, err)
		return b
	}
	require.Equal(t, requestHash(ct, tok(canaryToken)), requestHash(ct, tok("ya29.other")))
	require.NotContains(t, string(requestHashInput(ct, tok(canaryToken))), canaryToken)

	other := s3Body(t, map[string]any{"access_key_id": "AKIA1", "secret_access_key": canaryToken, "bucket": "another-bucket"})
	require.NotEqual(t, requestHash(ct, first), requestHash(ct, other), "the rest of the request still counts")

	// A body without credentials hashes byte for byte, as it always did.
	plain := []byte(`{"documents":[{"id":"a","text":"x"}]}`)
	sum := sha256.Sum256(append([]byte(ct+"\x00"), plain...))
	require.Equal(t, hex.EncodeToString(sum[:]), requestHash(ct, plain))
}

func TestDecodeSourceCredentials(t *testing.T) {
	t.Parallel()
	ok := []struct {
		name, src string
		check     func(t *testing.T, c apiary.Credentials)
	}{
		{"a token", `{"provider":"drive","access_token":"` + canaryToken + `"}`, func(t *testing.T, c apiary.Credentials) {
			require.Equal(t, canaryToken, string(c.Token.Reveal()))
		}},
		{"an access key with expiry", `{"access_key_id":"AKIA","secret_access_key":"` + canaryToken + `","session_token":"st","expires_at":"2030-01-02T03:04:05Z"}`, func(t *testing.T, c apiary.Credentials) {
			require.Equal(t, canaryToken, string(c.SecretAccessKey.Reveal()))
			require.Equal(t, "AKIA", string(c.AccessKeyID.Reveal()))
			require.Equal(t, "st", string(c.SessionToken.Reveal()))
			require.Equal(t, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), c.Expiry.UTC())
		}},
		{"an escaped token", `{"access_token":"a\/b\u0041"}`, func(t *testing.T, c apiary.Credentials) {
			require.Equal(t, "a/bA", string(c.Token.Reveal()))
		}},
		{"no credential (a web source)", `{"provider":"web","url":"https://example.com"}`, func(t *testing.T, c apiary.Credentials) {
			require.True(t, c.Empty())
		}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeSourceCredentials(json.RawMessage(tc.src))
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
	bad := map[string]string{
		"both kinds":              `{"access_token":"` + canaryToken + `","access_key_id":"AKIA","secret_access_key":"x"}`,
		"a key id alone":          `{"access_key_id":"` + canaryToken + `"}`,
		"a secret alone":          `{"secret_access_key":"` + canaryToken + `"}`,
		"an empty token":          `{"access_token":""}`,
		"a number":                `{"access_token":12}`,
		"a control character":     "{\"access_token\":\"" + canaryToken + "\x01\"}",
		"a bad expiry":            `{"access_token":"` + canaryToken + `","expires_at":"tomorrow"}`,
		"an expiry without token": `{"expires_at":"2030-01-02T03:04:05Z"}`,
		"not an object":           `"` + canaryToken + `"`,
	}
	for name, src := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := decodeSourceCredentials(json.RawMessage(src))
			require.ErrorIs(t, err, apiary.ErrInvalid)
			require.NotContains(t, err.Error(), canaryToken, "an error never quotes a credential")
		})
	}
}

// The deposit path: the job names this process as holder, its token is in
// custody before it is queued, and nowhere in its record; a replay keeps
// the first job's token and wipes the new one; a cancel through the API
// wipes the held one.
func TestSubmitWithCredentials(t *testing.T) {
	t.Parallel()
	var held *custody.Custody
	e := newEnv(t, withCustody(t, &held))
	sub := func(token []byte) (apiary.Job, bool, error) {
		body := s3Body(t, map[string]any{"access_token": string(token)})
		return e.srv.submitWithCredentials(t.Context(), jobs.Submission{
			Account: apiary.DefaultAccount, Source: "s3", IdempotencyKey: "k-1",
			RequestHash: requestHash("application/json", body),
			Documents:   []apiary.Document{{ID: "d", Text: "x"}},
		}, apiary.Credentials{Token: apiary.SecretFromBytes(token)})
	}
	job, replayed, err := sub([]byte(canaryToken))
	require.NoError(t, err)
	require.False(t, replayed)
	rec, err := e.recs.Job(t.Context(), apiary.DefaultAccount, job.ID)
	require.NoError(t, err)
	require.Equal(t, held.Holder(), rec.Holder)
	require.Equal(t, 1, held.Held())
	raw, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NotContains(t, string(raw), canaryToken)

	second := []byte("a-fresh-token-for-a-retry")
	again, replayed, err := sub(second)
	require.NoError(t, err)
	require.True(t, replayed, "a fresh token with the same key is the same request")
	require.Equal(t, job.ID, again.ID)
	require.Equal(t, 1, held.Held())
	require.Equal(t, make([]byte, len(second)), second, "the replay's token is wiped, never held")

	resp := e.do(http.MethodPost, "/v1/jobs/"+string(job.ID)+"/cancel", e.editor)
	require.Equal(t, http.StatusOK, resp.Code, resp.Body.String())
	require.Equal(t, 0, held.Held(), "a job canceled through the API lets go of its token")
	require.NotContains(t, e.logs.String(), canaryToken)
}
