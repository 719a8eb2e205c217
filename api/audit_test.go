package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage/records"
)

// Every route says whether it is audited: a new route without a decision
// fails here.
func TestEveryRouteHasAnAuditDecision(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var missing []string
	for _, r := range e.srv.Echo().Routes() {
		d, ok := auditDecisions[routeKey{r.Method, r.Path}]
		if !ok {
			missing = append(missing, r.Method+" "+r.Path)
			continue
		}
		require.True(t, d.action != "" || d.reason != "", "%s %s: a decision says what is recorded or why nothing is", r.Method, r.Path)
	}
	require.Empty(t, missing, "give these routes an audit decision in auditDecisions (api/audit.go): audited(\"thing.verb\") or notAudited(\"why\")")
}

// auditPage reads the caller's account's audit log, newest first.
func (e *env) auditPage(token, query string) auditList {
	e.t.Helper()
	rec := e.do(http.MethodGet, "/v1/audit"+query, token)
	require.Equal(e.t, http.StatusOK, rec.Code, rec.Body.String())
	return decode[auditList](e.t, rec)
}

// lastAudit is the newest entry of the caller's account's audit log.
func (e *env) lastAudit(token string) records.AuditEntry {
	e.t.Helper()
	l := e.auditPage(token, "?limit=1")
	require.NotEmpty(e.t, l.Entries)
	return l.Entries[0]
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk), allowPrivateWebhooks)
	var secrets []string
	adminID := e.tokenID(e.admin)

	// Admin actions, with their outcome.
	rec := e.do(http.MethodPost, "/v1/tokens", e.admin, jsonBody(map[string]any{"role": "viewer", "name": "ci", "expires_in": 3600}))
	require.Equal(t, http.StatusCreated, rec.Code)
	created := decode[createTokenResponse](t, rec)
	secrets = append(secrets, created.Token)
	got := e.lastAudit(e.admin)
	require.Equal(t, "token.create", got.Action)
	require.Equal(t, string(created.ID), got.Target)
	require.Equal(t, auditSuccess, got.Result)
	require.Equal(t, http.StatusCreated, got.Status)
	require.Equal(t, adminID, got.Actor)
	require.Equal(t, e.admin[:tokenPrefixShown], got.ActorPrefix)
	require.Equal(t, rec.Header().Get("X-Request-Id"), got.RequestID)

	rec = e.do(http.MethodPost, "/v1/tokens/"+string(created.ID)+"/rotate", e.admin)
	require.Equal(t, http.StatusOK, rec.Code)
	secrets = append(secrets, decode[createTokenResponse](t, rec).Token)
	got = e.lastAudit(e.admin)
	require.Equal(t, []string{"token.rotate", string(created.ID), auditSuccess}, []string{got.Action, got.Target, got.Result})

	requireProblem(t, e.do(http.MethodPost, "/v1/tokens", e.admin, jsonBody(map[string]any{"role": "viewer", "name": "x", "expires_in": 1})), http.StatusBadRequest, "expires_in")
	got = e.lastAudit(e.admin)
	require.Equal(t, []string{"token.create", auditFailure}, []string{got.Action, got.Result})
	require.Equal(t, http.StatusBadRequest, got.Status)

	rec = e.do(http.MethodPost, "/v1/webhooks/default-secret", e.admin)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	secrets = append(secrets, rec.Body.String())
	require.Equal(t, "webhook.default_secret.reveal", e.lastAudit(e.admin).Action)

	rec = e.do(http.MethodPost, "/v1/webhooks", e.admin, jsonBody(map[string]any{
		"url": "http://127.0.0.1:9/hook?token=canary-url-secret", "events": []string{"job.succeeded"}}))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	hook := decode[map[string]any](t, rec)
	secrets = append(secrets, hook["secret"].(string), "canary-url-secret")
	got = e.lastAudit(e.admin)
	require.Equal(t, []string{"webhook.create", hook["id"].(string)}, []string{got.Action, got.Target}, "a created id is the target")

	e.seed(apiary.DefaultAccount, apiary.Document{ID: "doc-1", Text: "alpha"})
	require.Equal(t, http.StatusNoContent, e.do(http.MethodDelete, "/v1/documents/doc-1", e.editor).Code)
	got = e.lastAudit(e.admin)
	require.Equal(t, []string{"document.delete", "doc-1", string(e.tokenID(e.editor))}, []string{got.Action, got.Target, string(got.Actor)})

	acct, otherAdmin := e.otherAccount("other")
	got = e.lastAudit(e.operator)
	require.Equal(t, []string{"account.create", string(acct)}, []string{got.Action, got.Target})
	require.True(t, got.Operator)

	require.Equal(t, http.StatusNoContent, e.do(http.MethodDelete, "/v1/tokens/"+string(created.ID), e.admin).Code)
	require.Equal(t, "token.delete", e.lastAudit(e.admin).Action)

	// Denials: a role too low, and authentication failures.
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens", e.editor, jsonBody(map[string]any{"role": "admin", "name": "x"})), http.StatusForbidden, "role admin")
	got = e.lastAudit(e.admin)
	require.Equal(t, []string{"token.create", auditDenied, string(e.tokenID(e.editor))}, []string{got.Action, got.Result, string(got.Actor)})

	unknown, err := NewToken()
	require.NoError(t, err)
	secrets = append(secrets, unknown)
	requireProblem(t, e.do(http.MethodGet, "/v1/jobs", unknown), http.StatusUnauthorized, "unknown")
	got = e.lastAudit(e.admin) // no account to tell: the operator's account keeps it
	require.Equal(t, []string{"authenticate", auditDenied, ""}, []string{got.Action, got.Result, string(got.Actor)})
	require.Equal(t, http.StatusUnauthorized, got.Status)
	requireProblem(t, e.do(http.MethodGet, "/v1/jobs", ""), http.StatusUnauthorized, "missing")
	require.Equal(t, "authenticate", e.lastAudit(e.admin).Action)

	rec = e.do(http.MethodPost, "/v1/tokens", otherAdmin, jsonBody(map[string]any{"role": "viewer", "name": "short", "expires_in": 60}))
	require.Equal(t, http.StatusCreated, rec.Code)
	short := decode[createTokenResponse](t, rec)
	clk.Advance(time.Minute)
	requireProblem(t, e.do(http.MethodGet, "/v1/jobs", short.Token), http.StatusUnauthorized, "expired")
	got = e.lastAudit(otherAdmin) // an expired token's account keeps it
	require.Equal(t, []string{"authenticate", auditDenied, string(short.ID)}, []string{got.Action, got.Result, string(got.Actor)})

	// Reads are not audited.
	before := e.lastAudit(e.admin).ID
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/jobs", e.viewer).Code)
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/tokens", e.admin).Code)
	require.Equal(t, before, e.lastAudit(e.admin).ID)

	// The log is for admins, per account, paged, and holds no secret.
	requireProblem(t, e.do(http.MethodGet, "/v1/audit", e.editor), http.StatusForbidden, "role admin")
	var all []records.AuditEntry
	cursor := ""
	for {
		page := e.auditPage(e.admin, "?limit=3&cursor="+cursor)
		all = append(all, page.Entries...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	require.Len(t, all, 12, "10 actions and denials above, the editor refused the log, and the operator's account creation (the operator is of this account)")
	require.Equal(t, []string{"authorize", string(e.tokenID(e.editor))}, []string{all[0].Action, string(all[0].Actor)})
	for i := 1; i < len(all); i++ {
		require.Greater(t, all[i-1].ID, all[i].ID, "newest first")
	}
	for _, v := range all {
		require.NotEqual(t, short.ID, v.Actor, "another account's entries are its own")
	}
	body := e.do(http.MethodGet, "/v1/audit?limit=500", e.admin).Body.String() + e.do(http.MethodGet, "/v1/audit?limit=500", otherAdmin).Body.String()
	for _, s := range append(secrets, e.admin, e.editor, e.viewer, e.operator, otherAdmin, short.Token) {
		require.NotContains(t, body, strings.TrimPrefix(s, tokenPrefix))
	}
	require.False(t, strings.Contains(body, "whsec_"), "no webhook secret")
}

// tokenID is the id of the token whose secret is secret.
func (e *env) tokenID(secret string) apiary.TokenID {
	e.t.Helper()
	tok, err := e.recs.TokenByHash(e.t.Context(), HashToken(secret))
	require.NoError(e.t, err)
	return tok.ID
}

// Anyone can fail to authenticate: those without a token to tell the
// account by are recorded within a budget, not one entry per request.
func TestAnonymousAuthFailuresAreBudgeted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.srv.anonAudit = rate.NewLimiter(0, 3) // a burst of 3, never refilled
	for range 5 {
		requireProblem(t, e.do(http.MethodGet, "/v1/jobs", "apy_nope"), http.StatusUnauthorized, "malformed")
	}
	entries := e.auditPage(e.admin, "?limit=500").Entries
	require.Len(t, entries, 3)
	for _, v := range entries {
		require.Equal(t, []string{"authenticate", auditDenied}, []string{v.Action, v.Result})
	}
}

// An expired token is found, so its failures are filed under its account,
// before any rate limit: whoever holds a leaked expired token must not be
// able to write the account's audit log without bound. Its entries are
// budgeted per token (the clock does not move here, so the budget does not
// refill).
func TestExpiredTokenAuthFailuresAreBudgeted(t *testing.T) {
	t.Parallel()
	e, old := newEnvWithExpiredToken(t)
	for range refusedAuditBurst + 30 {
		requireProblem(t, e.do(http.MethodGet, "/v1/jobs", old.Token), http.StatusUnauthorized, "expired")
	}
	n := 0
	for _, v := range e.auditPage(e.admin, "?limit=500").Entries {
		if v.Actor == old.ID {
			require.Equal(t, []string{"authenticate", auditDenied}, []string{v.Action, v.Result})
			n++
		}
	}
	require.Equal(t, refusedAuditBurst, n)
}

// Failures without a known token all go to the operator's account, and
// anyone can make them: their budget must bound what a day of them stores
// (the operator's audit listing reads every key of the account), not
// allow ten entries a second, forever. One failed request a second for
// ten minutes of the server's clock records the burst and then one a
// minute.
func TestAnonymousAuditBudgetOverTime(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	const seconds = 600
	for range seconds {
		requireProblem(t, e.do(http.MethodGet, "/v1/jobs", "apy_nope"), http.StatusUnauthorized, "malformed")
		clk.Advance(time.Second)
	}
	n := 0
	for _, v := range e.auditPage(e.admin, "?limit=500").Entries {
		if v.Action == "authenticate" && v.Actor == "" {
			n++
		}
	}
	require.LessOrEqual(t, n, anonAuditBurst+seconds/60+1)
}

// An access-control failure is an audit event too (an auditor asks for
// them): a viewer token probing the admin reads (the token listing, the
// audit log itself) was refused but left no trace.
func TestAuthorizationFailuresAreAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	viewerID := e.tokenID(e.viewer)
	for _, route := range []string{"/v1/tokens", "/v1/audit"} {
		requireProblem(t, e.do(http.MethodGet, route, e.viewer), http.StatusForbidden, "role admin")
		got := e.lastAudit(e.admin)
		require.Equal(t, []string{"authorize", auditDenied, string(viewerID)}, []string{got.Action, got.Result, string(got.Actor)}, route)
		require.Equal(t, http.StatusForbidden, got.Status)
	}
}

// panickingRotator is the keyring, but its rotation panics.
type panickingRotator struct{ *keyring.Keyring }

func (panickingRotator) RotateAccountKey(context.Context, apiary.AccountID) (int, error) {
	panic("rotation blew up")
}

// A handler that panics on an audited route answers 500 and still leaves
// its audit entry, a failure.
func TestPanicOnAnAuditedRouteIsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *Config, d *Deps) { d.Keys = panickingRotator{d.Keys.(*keyring.Keyring)} })
	// Straight to the server: a 500 is no answer the spec promises.
	req := httptest.NewRequest(http.MethodPost, "/v1/account/keys/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	rec := httptest.NewRecorder()
	e.srv.Echo().ServeHTTP(rec, req)
	requireProblem(t, rec, http.StatusInternalServerError, "internal error")
	last := e.lastAudit(e.admin)
	require.Equal(t, "account.keys.rotate", last.Action)
	require.Equal(t, "failure", string(last.Result))
	require.Equal(t, http.StatusInternalServerError, last.Status)
}
