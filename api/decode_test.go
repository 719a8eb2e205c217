package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

// JSON bodies are strict: a key spelled in another case, a key sent twice
// (at any depth) and an unknown key are refused, naming the key, so that a
// gateway rule and Apiary never read the same body differently.
func TestDecodeJSONIsStrict(t *testing.T) {
	t.Parallel()
	type inner struct {
		Name string `json:"name"`
	}
	type body struct {
		ID    string            `json:"id"`
		Items []inner           `json:"items"`
		Meta  map[string]string `json:"meta"`
		Ptr   *inner            `json:"ptr"`
		inner
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"other case", `{"ID":"a"}`, `"ID"`},
		{"other case, hint", `{"Id":"a"}`, `did you mean "id"`},
		{"kelvin sign", "{\"na\u212ae\":\"x\"}", "unknown JSON field"},
		{"duplicate", `{"id":"a","id":"b"}`, `duplicate JSON key "id"`},
		{"duplicate after other case", `{"id":"a","ID":"b"}`, `"ID"`},
		{"duplicate in an array element", `{"items":[{"name":"a"},{"name":"b","name":"c"}]}`, `duplicate JSON key "items[1].name"`},
		{"duplicate map key", `{"meta":{"k":"a","k":"b"}}`, `duplicate JSON key "meta.k"`},
		{"duplicate through a pointer", `{"ptr":{"name":"a","name":"b"}}`, `duplicate JSON key "ptr.name"`},
		{"other case in an array element", `{"items":[{"Name":"a"}]}`, `"items[0].Name"`},
		{"other case of an embedded field", `{"NAME":"a"}`, `"NAME"`},
		{"unknown", `{"idx":"a"}`, `unknown JSON field "idx"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var v body
			err := decodeJSON([]byte(tc.body), &v)
			require.Error(t, err)
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
			require.Contains(t, err.Error(), tc.want)
		})
	}
	// Map keys are the caller's own and may differ only in case; a long key
	// is named cut short.
	var v body
	require.NoError(t, decodeJSON([]byte(`{"id":"a","meta":{"k":"a","K":"b"},"items":[{"name":"a"},{"name":"b"}],"name":"n"}`), &v))
	require.Equal(t, body{ID: "a", Meta: map[string]string{"k": "a", "K": "b"}, Items: []inner{{"a"}, {"b"}}, inner: inner{"n"}}, v)
	long := strings.Repeat("k", 10000)
	err := decodeJSON([]byte(`{"meta":{"`+long+`":"a","`+long+`":"b"}}`), &v)
	require.ErrorContains(t, err, "duplicate JSON key")
	require.Less(t, len(err.Error()), 400)
}

// Every JSON route uses the strict decoder: 400 problem+json naming the key.
func TestJSONRoutesAreStrict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		method, path, token, body, want string
	}{
		{http.MethodPost, "/v1/tokens", e.admin, `{"role":"viewer","Role":"admin","name":"n"}`, `"Role"`},
		{http.MethodPost, "/v1/tokens", e.admin, `{"role":"viewer","role":"admin","name":"n"}`, `duplicate JSON key "role"`},
		{http.MethodPost, "/v1/accounts", e.operator, `{"NAME":"x"}`, `"NAME"`},
		{http.MethodPost, "/v1/ingest", e.editor, `{"documents":[{"id":"a","ID":"b","text":"t"}]}`, `"documents[0].ID"`},
		{http.MethodPost, "/v1/ingest", e.editor, `{"documents":[{"id":"a","text":"t","metadata":{"k":1,"k":2}}]}`, `duplicate JSON key "documents[0].metadata.k"`},
		{http.MethodPost, "/v1/ingest", e.editor, `{"documents":[{"id":"a","text":"t"}],"webhook_url":"https://a.example/","webhook_url":"http://127.0.0.1/"}`, `duplicate JSON key "webhook_url"`},
		{http.MethodPost, "/v1/query", e.viewer, `{"query":"q","Top_K":3}`, `"Top_K"`},
		{http.MethodPost, "/v1/webhooks", e.admin, `{"url":"https://a.example/","URL":"https://b.example/","events":["job.succeeded"]}`, `"URL"`},
	} {
		t.Run(tc.path+" "+tc.want, func(t *testing.T) {
			requireProblem(t, e.do(tc.method, tc.path, tc.token, rawBody("application/json", tc.body)), http.StatusBadRequest, tc.want)
		})
	}
}
