package api

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Hostile input on the endpoints of issues 10 and 11: every answer is a
// problem+json 4xx the spec promises (e.do checks both), never a 5xx.
func TestHostileInputOnLifecycleRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.createToken(map[string]any{"role": "viewer", "name": "victim"})
	other, _ := e.otherAccount("other")
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	huge := `{"confirm":"` + strings.Repeat("a", 2<<20) + `"}`
	cases := []struct {
		name, method, path, token, ct, body string
	}{
		{"delete: huge", "DELETE", "/v1/account", e.admin, "application/json", huge},
		{"delete: deep", "DELETE", "/v1/account", e.admin, "application/json", `{"confirm":` + deep + `}`},
		{"delete: number", "DELETE", "/v1/account", e.admin, "application/json", `{"confirm":1}`},
		{"delete: null", "DELETE", "/v1/account", e.admin, "application/json", `{"confirm":null}`},
		{"delete: array", "DELETE", "/v1/account", e.admin, "application/json", `[]`},
		{"delete: dup", "DELETE", "/v1/account", e.admin, "application/json", `{"confirm":"x","confirm":"default"}`},
		{"delete: other", "DELETE", "/v1/account", e.admin, "application/json", `{"confirm":"` + string(other) + `"}`},
		{"delete: case", "DELETE", "/v1/account", e.admin, "application/json", `{"Confirm":"default"}`},
		{"delete: text", "DELETE", "/v1/account", e.admin, "text/plain", `{"confirm":"default"}`},
		{"delete: none", "DELETE", "/v1/account", e.admin, "", ``},
		{"delete: form", "DELETE", "/v1/account", e.admin, "application/x-www-form-urlencoded", `confirm=default`},
		{"delete: bad ct", "DELETE", "/v1/account", e.admin, "application/json; charset=\"", `{}`},
		{"delete: editor", "DELETE", "/v1/account", e.editor, "application/json", `{"confirm":"default"}`},
		{"delete id: garbage", "DELETE", "/v1/accounts/%00%ff", e.operator, "", ``},
		{"delete id: long", "DELETE", "/v1/accounts/" + strings.Repeat("a", 10000), e.operator, "", ``},
		{"rotate: grace number", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{"grace":3600}`},
		{"rotate: grace huge", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{"grace":"1e309h"}`},
		{"rotate: grace overflow", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{"grace":"9999999999999h"}`},
		{"rotate: grace negative", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{"grace":"-1h"}`},
		{"rotate: grace P1D", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{"grace":"P1D"}`},
		{"rotate: expires float", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{"expires_in":3600.5}`},
		{"rotate: expires huge", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{"expires_in":1e309}`},
		{"rotate: garbage id", "POST", "/v1/tokens/%ff%00/rotate", e.admin, "application/json", `{}`},
		{"rotate: text", "POST", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "text/plain", `{}`},
		{"create: float", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_in":3600.5}`},
		{"create: int64 max", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_in":9223372036854775807}`},
		{"create: int64 over", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_in":9223372036854775808}`},
		{"create: int64 min", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_in":-9223372036854775808}`},
		{"create: exp", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_in":1e3}`},
		{"create: string", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_in":"3600"}`},
		{"create: at year 9999", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_at":"9999-12-31T23:59:59Z"}`},
		{"create: at year 0", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_at":"0000-01-01T00:00:00Z"}`},
		{"create: at leap", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_at":"2030-06-30T23:59:60Z"}`},
		{"create: at tz", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_at":"2030-06-30T23:59:59+25:00"}`},
		{"create: at no tz", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_at":"2030-06-30T23:59:59"}`},
		{"create: at number", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_at":1900000000}`},
		{"create: at date", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_at":"2030-06-30"}`},
		{"create: both", "POST", "/v1/tokens", e.admin, "application/json", `{"role":"viewer","name":"a","expires_in":3600,"expires_at":"2030-06-30T23:59:59Z"}`},
		{"audit: huge", "GET", "/v1/audit?limit=99999999999999999999", e.admin, "", ``},
		{"audit: negative", "GET", "/v1/audit?limit=-1", e.admin, "", ``},
		{"audit: zero", "GET", "/v1/audit?limit=0", e.admin, "", ``},
		{"audit: garbage", "GET", "/v1/audit?limit=abc", e.admin, "", ``},
		{"audit: float", "GET", "/v1/audit?limit=1.5", e.admin, "", ``},
		{"audit: cursor garbage", "GET", "/v1/audit?cursor=%ff%00", e.admin, "", ``},
		{"audit: cursor unicode", "GET", "/v1/audit?cursor=%E2%98%83", e.admin, "", ``},
		{"audit: cursor 10KB", "GET", "/v1/audit?cursor=" + strings.Repeat("A!", 5120), e.admin, "", ``},
		{"audit: viewer", "GET", "/v1/audit", e.viewer, "", ``},
		{"schedule: 0s", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":"0s"}`},
		{"schedule: -1h", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":"-1h"}`},
		{"schedule: 1e6h", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":"1e6h"}`},
		{"schedule: overflow", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":"9999999999999h"}`},
		{"schedule: P1D", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":"P1D"}`},
		{"schedule: number", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":3600}`},
		{"schedule: source null", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":"6h","source":null}`},
		{"schedule: source array", "PUT", "/v1/connections/con_x/schedule", e.admin, "application/json", `{"every":"6h","source":[]}`},
		{"schedule: bad id", "PUT", "/v1/connections/%ff/schedule", e.admin, "application/json", `{"every":"6h"}`},
		{"keys: body", "POST", "/v1/account/keys/rotate", e.editor, "application/json", `{"x":1}`},
		{"keys: GET", "GET", "/v1/account/keys/rotate", e.admin, "", ``},
		{"keys: PUT", "PUT", "/v1/account/keys/rotate", e.admin, "application/json", `{}`},
		{"account: PATCH", "PATCH", "/v1/account", e.admin, "application/json", `{}`},
		{"tokens: PUT", "PUT", "/v1/tokens/" + string(tok.ID) + "/rotate", e.admin, "application/json", `{}`},
	}
	for _, tc := range cases {
		var reqs []request
		if tc.body != "" || tc.ct != "" {
			reqs = append(reqs, rawBody(tc.ct, tc.body))
		}
		rec := e.do(tc.method, tc.path, tc.token, reqs...)
		body := rec.Body.String()
		if len(body) > 300 {
			body = body[:300]
		}
		t.Logf("%-24s %d %s", tc.name, rec.Code, body)
		require.GreaterOrEqual(t, rec.Code, 400, "%s: %s", tc.name, body)
		require.Less(t, rec.Code, 500, "%s: %s", tc.name, body)
	}
}

// A whole-number field sent as a fraction names the field as the client
// sent it ("expires_in", not the Go type it is embedded from) and says a
// whole number is wanted.
func TestIntegerFieldErrorNamesTheJSONField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, body := range []string{
		`{"role":"viewer","name":"a","expires_in":3600.5}`,
		`{"role":"viewer","name":"a","expires_in":1e3}`,
	} {
		rec := e.do("POST", "/v1/tokens", e.admin, rawBody("application/json", body))
		p := requireProblem(t, rec, 400, `field "expires_in" must be a whole number`)
		require.NotContains(t, p.Detail, "tokenExpiry")
	}
}

// An expires_at that is not an RFC 3339 time with a zone (a date alone, no
// zone, a leap second, a Unix number) is refused saying what a time must look
// like, not as "malformed JSON".
func TestBadTimeSaysRFC3339(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, at := range []string{`"2030-06-30"`, `"2030-06-30T23:59:59"`, `"2030-06-30T23:59:60Z"`, `"2030-06-30T23:59:59+25:00"`, `1900000000`, `""`} {
		rec := e.do("POST", "/v1/tokens", e.admin, rawBody("application/json", `{"role":"viewer","name":"a","expires_at":`+at+`}`))
		requireProblem(t, rec, 400, "RFC 3339")
		rec = e.do("POST", "/v1/tokens/tok_x/rotate", e.admin, rawBody("application/json", `{"expires_at":`+at+`}`))
		requireProblem(t, rec, 400, "RFC 3339")
	}
}

// The body of POST /v1/tokens/{id}/rotate is optional: an empty body sent
// without a Content-Length (chunked, as an HTTP client streaming a body of
// unknown length sends it) rotates with the defaults like an absent one.
func TestRotateTokenEmptyChunkedBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.createToken(map[string]any{"role": "viewer", "name": "chunked"})
	rec := e.do("POST", "/v1/tokens/"+string(tok.ID)+"/rotate", e.admin, request{body: io.MultiReader(strings.NewReader(""))})
	require.Equal(t, 200, rec.Code, rec.Body.String())
	rec = e.do("POST", "/v1/tokens/"+string(tok.ID)+"/rotate", e.admin, request{contentType: "application/json", body: io.MultiReader(strings.NewReader(" \n"))})
	require.Equal(t, 200, rec.Code, rec.Body.String())
	rec = e.do("POST", "/v1/tokens/"+string(tok.ID)+"/rotate", e.admin, request{contentType: "text/plain", body: io.MultiReader(strings.NewReader(`{"grace":"0s"}`))})
	requireProblem(t, rec, 415, "application/json")
}
