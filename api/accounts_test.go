package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestAccounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	rec := e.do(http.MethodPost, "/v1/accounts", e.operator, jsonBody(map[string]string{"name": "Acme"}))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	acc := decode[createAccountResponse](t, rec)
	require.NoError(t, acc.ID.Validate())
	require.Equal(t, "Acme", acc.Name)
	require.NoError(t, CheckTokenFormat(acc.Token))

	// The new admin token works, in the new account only.
	rec = e.do(http.MethodGet, "/v1/tokens", acc.Token)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	toks := decode[map[string][]tokenView](t, rec)["tokens"]
	require.Len(t, toks, 1)
	require.Equal(t, apiary.RoleAdmin, toks[0].Role)
	require.False(t, toks[0].Operator)
	requireProblem(t, e.do(http.MethodPost, "/v1/accounts", acc.Token, jsonBody(map[string]string{"name": "x"})), 403, "operator")

	for _, tc := range []struct {
		name string
		req  request
		code int
		want string
	}{
		{"no name", jsonBody(map[string]string{}), 400, "name is required"},
		{"blank name", jsonBody(map[string]string{"name": "  "}), 400, "name is required"},
		{"long name", jsonBody(map[string]string{"name": strings.Repeat("n", 101)}), 400, "longer than 100"},
		{"control character", jsonBody(map[string]string{"name": "a\nb"}), 400, "control characters"},
		{"an id is not taken from the request", jsonBody(map[string]string{"name": "x", "id": "default"}), 400, `unknown JSON field "id"`},
		{"form body", rawBody("application/x-www-form-urlencoded", "name=x"), 415, "application/json"},
		{"empty", rawBody("application/json", ""), 400, "body is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireProblem(t, e.do(http.MethodPost, "/v1/accounts", e.operator, tc.req), tc.code, tc.want)
		})
	}
}

func TestGetAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	model := e.pipe.Model()

	// Not checked yet: queries search the service's model, the chunks' is unknown.
	rec := e.do(http.MethodGet, "/v1/account", e.viewer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	got := decode[accountView](t, rec)
	require.Equal(t, apiary.DefaultAccount, got.ID)
	require.Equal(t, &embeddingView{Model: model.Model, Dim: model.Dim}, got.Embedding)

	// Re-embedding from another model, then done.
	old := apiary.EmbeddingModel{Model: "old", Dim: model.Dim}
	_, err := e.recs.UpdateAccount(t.Context(), apiary.DefaultAccount, func(a *apiary.Account) error {
		a.Embedding, a.Reembed = &old, "job_1"
		return nil
	})
	require.NoError(t, err)
	got = decode[accountView](t, e.do(http.MethodGet, "/v1/account", e.viewer))
	require.Equal(t, &embeddingView{Model: model.Model, Dim: model.Dim, Stored: &old, ReembedJobID: "job_1"}, got.Embedding)
	_, err = e.recs.UpdateAccount(t.Context(), apiary.DefaultAccount, func(a *apiary.Account) error {
		a.Embedding = &model
		return nil
	})
	require.NoError(t, err)
	got = decode[accountView](t, e.do(http.MethodGet, "/v1/account", e.viewer))
	require.Equal(t, &embeddingView{Model: model.Model, Dim: model.Dim, Stored: &model, Current: true, ReembedJobID: "job_1"}, got.Embedding)

	// Another account's token sees its own account.
	id, token := e.otherAccount("Globex")
	got = decode[accountView](t, e.do(http.MethodGet, "/v1/account", token))
	require.Equal(t, id, got.ID)
	require.Equal(t, "Globex", got.Name)
	require.Equal(t, &embeddingView{Model: model.Model, Dim: model.Dim, Stored: &model, Current: true}, got.Embedding,
		"an account is made with the current model: it has no chunk of another")
	requireProblem(t, e.do(http.MethodGet, "/v1/account", "apiary_bogus"), 401, "")
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	// Create one of each role; each works with its role.
	created := map[apiary.Role]createTokenResponse{}
	for _, role := range []apiary.Role{apiary.RoleAdmin, apiary.RoleEditor, apiary.RoleViewer} {
		rec := e.do(http.MethodPost, "/v1/tokens", e.admin, jsonBody(map[string]string{"role": string(role), "name": "ci " + string(role)}))
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		got := decode[createTokenResponse](t, rec)
		require.Equal(t, role, got.Role)
		require.Equal(t, "ci "+string(role), got.Name)
		require.True(t, strings.HasPrefix(string(got.ID), "tok_"))
		require.NoError(t, CheckTokenFormat(got.Token))
		created[role] = got
	}
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/jobs", created[apiary.RoleViewer].Token).Code)
	require.Equal(t, http.StatusForbidden, e.do(http.MethodGet, "/v1/tokens", created[apiary.RoleEditor].Token).Code)

	// The listing has no secrets.
	rec := e.do(http.MethodGet, "/v1/tokens", e.admin)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	body := rec.Body.String()
	for _, c := range created {
		require.NotContains(t, body, c.Token)
		require.NotContains(t, body, HashToken(c.Token))
		require.Contains(t, body, string(c.ID))
	}
	require.NotContains(t, body, e.operator)
	require.NotContains(t, body, `"token"`)
	require.NotContains(t, body, "hash")
	require.Len(t, decode[map[string][]tokenView](t, rec)["tokens"], 3+3) // admin, editor, viewer + 3; the operator token is the operator's

	// Rotation: delete the old token; it stops working at once.
	rec = e.do(http.MethodDelete, "/v1/tokens/"+string(created[apiary.RoleViewer].ID), e.admin)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	requireProblem(t, e.do(http.MethodGet, "/v1/jobs", created[apiary.RoleViewer].Token), 401, "unknown or revoked")
	requireProblem(t, e.do(http.MethodDelete, "/v1/tokens/"+string(created[apiary.RoleViewer].ID), e.admin), 404, "no such token")

	// Another account's token is not found, and survives.
	_, otherAdmin := e.otherAccount("other")
	rec = e.do(http.MethodGet, "/v1/tokens", otherAdmin)
	otherID := decode[map[string][]tokenView](t, rec)["tokens"][0].ID
	requireProblem(t, e.do(http.MethodDelete, "/v1/tokens/"+string(otherID), e.admin), 404, "no such token")
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/tokens", otherAdmin).Code)
	// ... whose last admin token cannot be deleted.
	requireProblem(t, e.do(http.MethodDelete, "/v1/tokens/"+string(otherID), otherAdmin), 409, "last admin token")

	for _, tc := range []struct {
		name string
		req  request
		want string
	}{
		{"bad role", jsonBody(map[string]string{"role": "owner", "name": "n"}), "role must be one of"},
		{"no role", jsonBody(map[string]string{"name": "n"}), "role must be one of"},
		{"no name", jsonBody(map[string]string{"role": "viewer"}), "name is required"},
		{"operator flag", jsonBody(map[string]any{"role": "admin", "name": "n", "operator": true}), `unknown JSON field "operator"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireProblem(t, e.do(http.MethodPost, "/v1/tokens", e.admin, tc.req), 400, tc.want)
		})
	}
}
