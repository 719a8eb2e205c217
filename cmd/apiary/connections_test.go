package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary/connections"
)

func TestConnectionsConfig(t *testing.T) {
	t.Parallel()
	ids := func(kv ...string) map[string]*string {
		m := map[string]*string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = &kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		cfg  ConnectionsConfig
		want string // "" means valid
	}{
		{"nothing configured", ConnectionsConfig{}, ""},
		{"google", ConnectionsConfig{PublicURL: "https://a.example", ClientIDs: ids("google", "g"), Secrets: map[string]secret{"google": "s"}}, ""},
		{"no public url", ConnectionsConfig{ClientIDs: ids("google", "g"), Secrets: map[string]secret{"google": "s"}}, "--public-url is required"},
		{"no secret", ConnectionsConfig{PublicURL: "https://a.example", ClientIDs: ids("notion", "n")}, "APIARY_OAUTH_NOTION_CLIENT_SECRET is required"},
		{"oidc without issuer", ConnectionsConfig{PublicURL: "https://a.example", ClientIDs: ids("oidc", "o")}, "--oauth-oidc-issuer is required"},
		{"public url not absolute", ConnectionsConfig{PublicURL: "apiary", ClientIDs: ids("oidc", "o"), OIDCIssuer: "https://i"}, "public URL"},
	}
	for _, tt := range tests {
		err := tt.cfg.validate()
		if tt.want == "" {
			require.NoError(t, err, tt.name)
			continue
		}
		require.ErrorContains(t, err, tt.want, tt.name)
	}

	c := ConnectionsConfig{PublicURL: "https://a.example", ClientIDs: ids("google", "g", "oidc", "o"),
		Secrets: map[string]secret{"google": "gs"}, OIDCIssuer: "https://i", OIDCScopes: "openid, offline_access"}
	ps := c.providers()
	require.Len(t, ps, 2)
	require.Equal(t, "google", ps[0].Name)
	require.Equal(t, "gs", ps[0].ClientSecret)
	require.Equal(t, oauth2.AuthStyleInParams, ps[0].AuthStyle)
	require.NotEmpty(t, ps[0].RevokeURL)
	require.Equal(t, []string{"openid", "offline_access"}, ps[1].Scopes)
	require.Equal(t, "https://i", ps[1].Issuer)
}

// TestOAuthEndpointOverrides: --oauth-<name>-{auth,token,revoke}-url and
// --oauth-<name>-issuer (or their APIARY_OAUTH_* variables) point a
// provider at other servers (GitHub Enterprise, a test's); they do not
// turn on a provider without a client id, and must be absolute URLs.
func TestOAuthEndpointOverrides(t *testing.T) {
	t.Setenv("APIARY_OAUTH_GITHUB_REVOKE_URL", "https://ghe.example/api/v3/applications/{client_id}/grant")
	t.Setenv("APIARY_OAUTH_GITHUB_CLIENT_SECRET", "gh-secret")
	var cfg Config
	fs, envErr := flagSet("serve", &cfg)
	require.NoError(t, envErr)
	require.NoError(t, fs.Parse([]string{
		"--public-url", "https://apiary.example",
		"--oauth-github-client-id", "Iv1.x",
		"--oauth-github-auth-url", "https://ghe.example/login/oauth/authorize",
		"--oauth-github-token-url", "https://ghe.example/login/oauth/access_token",
		"--oauth-notion-token-url", "https://notion.example/token", // notion has no client id: stays off
	}))
	require.NoError(t, cfg.Connections.validate())
	ps := cfg.Connections.providers()
	require.Len(t, ps, 1)
	gh := ps[0]
	require.Equal(t, "github", gh.Name)
	require.Equal(t, "https://ghe.example/login/oauth/authorize", gh.AuthURL)
	require.Equal(t, "https://ghe.example/login/oauth/access_token", gh.TokenURL)
	require.Equal(t, "https://ghe.example/api/v3/applications/{client_id}/grant", gh.RevokeURL)
	require.Equal(t, connections.RevokeGitHubGrant, gh.RevokeStyle, "the template's revoke style is kept")
	require.Equal(t, "gh-secret", gh.ClientSecret)

	cfg = Config{}
	fs, _ = flagSet("serve", &cfg)
	require.NoError(t, fs.Parse([]string{"--oauth-google-token-url", "oauth2.example/token", "--oauth-notion-issuer", "ftp://x"}))
	err := cfg.Connections.validate()
	require.ErrorContains(t, err, "--oauth-google-token-url must be an absolute http(s) URL")
	require.ErrorContains(t, err, "--oauth-notion-issuer must be an absolute http(s) URL")
}
