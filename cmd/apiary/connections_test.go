package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
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
