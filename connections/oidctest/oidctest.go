// Package oidctest drives the local authorization server that
// scripts/test-services.sh starts (oidc-provider from npm, launched by
// scripts/oidc-provider.mjs) the way a user's browser would: it follows
// redirects with a cookie jar and submits the dev login and consent forms.
// For tests only.
package oidctest

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Server is the local authorization server and Apiary's client at it.
type Server struct{ Issuer, ClientID, ClientSecret string }

// Need returns the server named by APIARY_TEST_OIDC_*, skipping t when
// APIARY_TEST_OIDC_ISSUER is unset.
func Need(t testing.TB) Server {
	t.Helper()
	s := Server{os.Getenv("APIARY_TEST_OIDC_ISSUER"), os.Getenv("APIARY_TEST_OIDC_CLIENT_ID"), os.Getenv("APIARY_TEST_OIDC_CLIENT_SECRET")}
	if s.Issuer == "" {
		t.Skip("APIARY_TEST_OIDC_ISSUER is not set: run scripts/test-services.sh start oidc and source .test-services/env")
	}
	return s
}

// Browser is a user agent with a cookie jar. stopAt, when not empty, stops
// following redirects at a URL with that prefix (the response is the
// redirect itself).
func Browser(t testing.TB, stopAt string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if stopAt != "" {
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), stopAt) {
				return http.ErrUseLastResponse
			}
			return nil
		}
	}
	return c
}

var (
	formRe   = regexp.MustCompile(`<form[^>]*action="([^"]+)"[^>]*method="post"`)
	hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

// Authorize opens u in b, signs in as user-1 and consents until the
// provider lets go; it returns the last response (its body read into the
// string).
func Authorize(t testing.TB, b *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := b.Get(u)
	require.NoError(t, err)
	for range 4 {
		body := ReadAll(t, resp)
		m := formRe.FindStringSubmatch(body)
		if m == nil || !strings.Contains(resp.Request.URL.Path, "/interaction/") || resp.StatusCode != http.StatusOK {
			return resp, body
		}
		form := url.Values{}
		for _, h := range hiddenRe.FindAllStringSubmatch(body, -1) {
			form.Set(h[1], html.UnescapeString(h[2]))
		}
		if form.Get("prompt") == "login" {
			form.Set("login", "user-1")
			form.Set("password", "any")
		}
		action, err := resp.Request.URL.Parse(html.UnescapeString(m[1]))
		require.NoError(t, err)
		resp, err = b.PostForm(action.String(), form)
		require.NoError(t, err)
	}
	t.Fatal("the provider kept asking")
	return nil, ""
}

// ReadAll reads and closes resp's body.
func ReadAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// Active asks the server's introspection endpoint (RFC 7662) whether token
// is active.
func (s Server) Active(t testing.TB, token string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.Issuer+"/token/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(s.ClientID, s.ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Active bool `json:"active"`
	}
	require.NoError(t, json.Unmarshal([]byte(ReadAll(t, resp)), &out))
	return out.Active
}
