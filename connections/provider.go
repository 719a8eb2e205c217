package connections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/apiaryhq/apiary"
)

// Provider is one OAuth provider as the operator configured it. The client
// secret comes from the environment only and is redacted by String.
type Provider struct {
	// Name is the provider's name in the API and in its redirect URI
	// (/v1/oauth/callback/{Name}).
	Name string
	// ClientID and ClientSecret are Apiary's client at the provider.
	ClientID     string
	ClientSecret string
	// Issuer is the provider's issuer identifier. When AuthURL or TokenURL
	// is empty, the endpoints are discovered from
	// Issuer/.well-known/openid-configuration (or oauth-authorization-server)
	// on first use. An authorization response's iss (RFC 9207) must equal it.
	Issuer string
	// AuthURL, TokenURL and RevokeURL are the provider's endpoints;
	// RevokeURL is empty when the provider cannot revoke a grant.
	AuthURL, TokenURL, RevokeURL string
	// RevokeStyle is how RevokeURL is called: RFC 7009 unless the
	// provider has its own way.
	RevokeStyle RevokeStyle
	// Scopes are asked for at authorization.
	Scopes []string
	// AuthStyle is how the client authenticates at the token endpoint
	// (header or body); oauth2.AuthStyleAutoDetect tries both.
	AuthStyle oauth2.AuthStyle
	// AuthParams are extra authorization parameters (Google's
	// access_type=offline and prompt=consent, for a refresh token).
	AuthParams map[string]string
	// ManageURL is the user's own page where a grant is revoked, for
	// providers without a per-grant revocation endpoint.
	ManageURL string
}

// RevokeStyle is how a provider revokes a grant.
type RevokeStyle int

const (
	// RevokeRFC7009 posts each token to RevokeURL (RFC 7009), the client
	// authenticating as AuthStyle says.
	RevokeRFC7009 RevokeStyle = iota
	// RevokeGitHubGrant deletes the whole grant the way GitHub does:
	// DELETE RevokeURL (its "{client_id}" replaced), the client in basic
	// auth, the access token in a JSON body {"access_token": ...}.
	RevokeGitHubGrant
)

// String describes the provider without its secret.
func (p Provider) String() string {
	return fmt.Sprintf("oauth provider %s (client %s, issuer %s)", p.Name, p.ClientID, p.Issuer)
}

// GoString is String, so that %#v does not print the secret either.
func (p Provider) GoString() string { return p.String() }

// LogValue is String, for slog's handlers (the JSON one would print fields).
func (p Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

// Validate reports what is missing from p.
func (p Provider) Validate() error {
	var errs []error
	if p.Name == "" || strings.Trim(p.Name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
		errs = append(errs, fmt.Errorf("provider name %q: lowercase letters, digits, - and _ only", p.Name))
	}
	if p.ClientID == "" {
		errs = append(errs, fmt.Errorf("provider %s: no client id", p.Name))
	}
	if p.Issuer == "" && (p.AuthURL == "" || p.TokenURL == "") {
		errs = append(errs, fmt.Errorf("provider %s: needs an issuer or both an authorization and a token URL", p.Name))
	}
	return errors.Join(errs...)
}

// Templates are the endpoints of the providers Apiary knows; an operator
// adds a client id (and the secret, from the environment) to use one.
// Microsoft and Atlassian have no per-grant revocation endpoint: a
// disconnect reports "unsupported" and links the user's own page.
var Templates = map[string]Provider{
	"google": {
		Name: "google", Issuer: "https://accounts.google.com",
		AuthURL: "https://accounts.google.com/o/oauth2/v2/auth", TokenURL: "https://oauth2.googleapis.com/token",
		RevokeURL: "https://oauth2.googleapis.com/revoke", AuthStyle: oauth2.AuthStyleInParams,
		Scopes:     []string{"https://www.googleapis.com/auth/drive.readonly"},
		AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
	},
	"microsoft": {
		Name: "microsoft", Issuer: "https://login.microsoftonline.com/common/v2.0",
		AuthURL:   "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
		TokenURL:  "https://login.microsoftonline.com/common/oauth2/v2.0/token",
		AuthStyle: oauth2.AuthStyleInParams,
		Scopes:    []string{"offline_access", "Files.Read.All", "Sites.Read.All"},
		ManageURL: "https://myapps.microsoft.com",
	},
	"notion": {
		Name: "notion", AuthURL: "https://api.notion.com/v1/oauth/authorize",
		TokenURL: "https://api.notion.com/v1/oauth/token", RevokeURL: "https://api.notion.com/v1/oauth/revoke",
		AuthStyle: oauth2.AuthStyleInHeader, AuthParams: map[string]string{"owner": "user"},
	},
	"github": {
		Name: "github", AuthURL: "https://github.com/login/oauth/authorize",
		TokenURL: "https://github.com/login/oauth/access_token", AuthStyle: oauth2.AuthStyleInParams,
		RevokeURL: "https://api.github.com/applications/{client_id}/grant", RevokeStyle: RevokeGitHubGrant,
		ManageURL: "https://github.com/settings/applications",
	},
	"atlassian": {
		Name: "atlassian", AuthURL: "https://auth.atlassian.com/authorize",
		TokenURL: "https://auth.atlassian.com/oauth/token", AuthStyle: oauth2.AuthStyleInParams,
		Scopes:     []string{"read:confluence-content.all", "offline_access"},
		AuthParams: map[string]string{"audience": "api.atlassian.com", "prompt": "consent"},
		ManageURL:  "https://id.atlassian.com/manage-profile/apps",
	},
}

// metadata is the part of RFC 8414 / OpenID discovery Apiary reads.
type metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	IssInResponse         bool   `json:"authorization_response_iss_parameter_supported"`
}

// discover fills p's missing endpoints from its issuer's metadata, and
// reports whether the provider promises iss in authorization responses.
func discover(ctx context.Context, hc *http.Client, p Provider) (Provider, bool, error) {
	if p.Issuer == "" {
		return p, false, nil
	}
	if p.AuthURL != "" && p.TokenURL != "" {
		return p, false, nil
	}
	base := strings.TrimSuffix(p.Issuer, "/")
	var md metadata
	var lastErr error
	for _, wk := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		md, lastErr = fetchMetadata(ctx, hc, base+wk)
		if lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return p, false, apiary.Wrap(lastErr, apiary.KindUnavailable, "provider %s: discovery failed", p.Name)
	}
	if md.Issuer != p.Issuer {
		return p, false, apiary.E(apiary.KindUnavailable, "provider %s: discovery names issuer %q, not the configured one", p.Name, md.Issuer)
	}
	if p.AuthURL == "" {
		p.AuthURL = md.AuthorizationEndpoint
	}
	if p.TokenURL == "" {
		p.TokenURL = md.TokenEndpoint
	}
	if p.RevokeURL == "" {
		p.RevokeURL = md.RevocationEndpoint
	}
	if p.AuthURL == "" || p.TokenURL == "" {
		return p, false, apiary.E(apiary.KindUnavailable, "provider %s: discovery names no authorization or token endpoint", p.Name)
	}
	return p, md.IssInResponse, nil
}

func fetchMetadata(ctx context.Context, hc *http.Client, u string) (metadata, error) {
	var md metadata
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return md, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return md, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return md, fmt.Errorf("connections: discovery %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&md); err != nil {
		return md, fmt.Errorf("connections: discovery %s: %w", u, err)
	}
	return md, nil
}

// revokeGrant deletes the grant of accessToken at GitHub
// (DELETE /applications/{client_id}/grant), which ends every token of it.
func revokeGrant(ctx context.Context, hc *http.Client, p Provider, accessToken string) error {
	body, err := json.Marshal(map[string]string{"access_token": accessToken})
	if err != nil {
		return err
	}
	u := strings.ReplaceAll(p.RevokeURL, "{client_id}", url.PathEscape(p.ClientID))
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/vnd.github+json")
	req.SetBasicAuth(p.ClientID, p.ClientSecret)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("connections: revoke grant at %s: status %d", p.Name, resp.StatusCode)
	}
	return nil
}

// revoke asks the provider to revoke token (RFC 7009), authenticating as
// the client the way its AuthStyle says.
func revoke(ctx context.Context, hc *http.Client, p Provider, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	if p.AuthStyle == oauth2.AuthStyleInParams {
		form.Set("client_id", p.ClientID)
		if p.ClientSecret != "" {
			form.Set("client_secret", p.ClientSecret)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.RevokeURL, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p.AuthStyle != oauth2.AuthStyleInParams {
		req.SetBasicAuth(url.QueryEscape(p.ClientID), url.QueryEscape(p.ClientSecret))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("connections: revoke at %s: status %d", p.Name, resp.StatusCode)
	}
	return nil
}
