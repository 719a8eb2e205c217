package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/custody"
)

// A client retrying an ephemeral ingest with the same Idempotency-Key and
// a fresh token gets its first job back (the request hash leaves the
// token out), the fresh token is not kept, and another request under the
// key is refused; no token reaches an answer, a job record, the audit log
// or the debug log.
func TestEphemeralRetryWithAFreshToken(t *testing.T) {
	t.Parallel()
	var held *custody.Custody
	e := newEnv(t, withCustody(t, &held))
	ctx := context.Background()
	canaries := []string{"ghu_canary-first-7c1e", "ghu_canary-retry-92ab", "ghu_canary-other-55f0"}
	ingest := func(location, token string) request {
		r := jsonBody(map[string]any{"source": map[string]any{
			"provider": "github", "location": location, "items": []string{"octo/docs:README.md"}, "access_token": token,
		}})
		r.header = http.Header{"Idempotency-Key": {"retry-1"}}
		return r
	}
	var answers []string

	first := e.do(http.MethodPost, "/v1/ingest", e.editor, ingest("octo/docs@main", canaries[0]))
	require.Equal(t, http.StatusAccepted, first.Code, first.Body.String())
	job := decode[ingestResponse](t, first).JobID
	answers = append(answers, first.Body.String())

	retry := e.do(http.MethodPost, "/v1/ingest", e.editor, ingest("octo/docs@main", canaries[1]))
	require.Equal(t, http.StatusAccepted, retry.Code, retry.Body.String())
	require.Equal(t, "true", retry.Header().Get("Idempotent-Replayed"))
	require.Equal(t, job, decode[ingestResponse](t, retry).JobID)
	require.Equal(t, 1, held.Held(), "the retry's token is not kept")
	answers = append(answers, retry.Body.String())

	other := e.do(http.MethodPost, "/v1/ingest", e.editor, ingest("octo/other@main", canaries[2]))
	requireProblem(t, other, http.StatusConflict, "different request body")
	require.Equal(t, 1, held.Held())
	answers = append(answers, other.Body.String())

	jobs, _, err := e.recs.Jobs(ctx, apiary.DefaultAccount, recordsFilterAll)
	require.NoError(t, err)
	require.Len(t, jobs, 3, "the first job and the two refused records")
	audit, _, err := e.recs.AuditLog(ctx, apiary.DefaultAccount, 100, "")
	require.NoError(t, err)
	stored, err := json.Marshal(map[string]any{"jobs": jobs, "audit": audit})
	require.NoError(t, err)
	for _, canary := range canaries {
		for _, a := range answers {
			require.NotContains(t, a, canary)
		}
		require.NotContains(t, string(stored), canary)
		require.NotContains(t, e.logs.String(), canary)
	}
}
