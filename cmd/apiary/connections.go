package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/apiaryhq/apiary/connections"
)

// oauthProviders are the providers an operator can configure: the templates
// of connections.Templates and a generic OpenID Connect provider ("oidc",
// endpoints discovered from its issuer). A provider is on when its client
// id is set; its secret comes from APIARY_OAUTH_<NAME>_CLIENT_SECRET only.
var oauthProviders = []string{"atlassian", "github", "google", "microsoft", "notion", "oidc"}

// ConnectionsConfig configures OAuth connections.
type ConnectionsConfig struct {
	// PublicURL is Apiary's base URL as users' browsers reach it; the start
	// and redirect URIs (/v1/oauth/callback/{provider}) are built on it.
	PublicURL  string
	ClientIDs  map[string]*string // --oauth-<name>-client-id
	Secrets    map[string]secret  // APIARY_OAUTH_<NAME>_CLIENT_SECRET, environment only
	OIDCIssuer string             // --oauth-oidc-issuer
	OIDCScopes string             // --oauth-oidc-scopes
	// Endpoints override a provider's endpoints (GitHub Enterprise, a
	// national cloud, a test's local server); empty keeps the template's.
	Endpoints map[string]*providerEndpoints
}

// providerEndpoints are --oauth-<name>-{auth,token,revoke}-url and
// --oauth-<name>-issuer.
type providerEndpoints struct{ Auth, Token, Revoke, Issuer string }

// endpointFlags are the override flags' suffixes and what they set.
var endpointFlags = []struct {
	suffix, what string
	field        func(*providerEndpoints) *string
}{
	{"auth-url", "authorization endpoint", func(e *providerEndpoints) *string { return &e.Auth }},
	{"token-url", "token endpoint", func(e *providerEndpoints) *string { return &e.Token }},
	{"revoke-url", "revocation endpoint", func(e *providerEndpoints) *string { return &e.Revoke }},
	{"issuer", "issuer (checked against an authorization response's iss)", func(e *providerEndpoints) *string { return &e.Issuer }},
}

func secretEnv(name string) string {
	return "APIARY_OAUTH_" + strings.ToUpper(name) + "_CLIENT_SECRET"
}

func (c *ConnectionsConfig) register(f *flags) {
	f.str(&c.PublicURL, "public-url", "", "Apiary's base URL as browsers reach it, for OAuth connections (like https://apiary.example.com)")
	c.ClientIDs = map[string]*string{}
	c.Secrets = map[string]secret{}
	for _, name := range oauthProviders {
		c.ClientIDs[name] = new(string)
		f.str(c.ClientIDs[name], "oauth-"+name+"-client-id", "",
			"OAuth client id at "+name+"; set to offer "+name+" connections (secret: "+secretEnv(name)+")")
		c.Secrets[name] = secret(os.Getenv(secretEnv(name)))
	}
	c.Endpoints = map[string]*providerEndpoints{}
	for _, name := range oauthProviders {
		c.Endpoints[name] = &providerEndpoints{}
		for _, ef := range endpointFlags {
			if name == "oidc" && ef.suffix == "issuer" {
				continue // --oauth-oidc-issuer, below
			}
			f.str(ef.field(c.Endpoints[name]), "oauth-"+name+"-"+ef.suffix, "",
				"override the "+ef.what+" of "+name+" (self-hosted servers like GitHub Enterprise, tests); empty keeps its own")
		}
	}
	f.str(&c.OIDCIssuer, "oauth-oidc-issuer", "", "issuer of the generic OpenID Connect provider (endpoints discovered from it)")
	f.str(&c.OIDCScopes, "oauth-oidc-scopes", "openid", "comma-separated scopes asked of the generic OpenID Connect provider")
}

// providers returns the configured providers.
func (c ConnectionsConfig) providers() []connections.Provider {
	var out []connections.Provider
	for _, name := range oauthProviders {
		id := c.ClientIDs[name]
		if id == nil || *id == "" {
			continue
		}
		p := connections.Templates[name]
		if name == "oidc" {
			p = connections.Provider{Name: "oidc", Issuer: c.OIDCIssuer}
			for _, s := range strings.Split(c.OIDCScopes, ",") {
				if s = strings.TrimSpace(s); s != "" {
					p.Scopes = append(p.Scopes, s)
				}
			}
		}
		if e := c.Endpoints[name]; e != nil {
			for _, o := range []struct {
				to *string
				v  string
			}{{&p.AuthURL, e.Auth}, {&p.TokenURL, e.Token}, {&p.RevokeURL, e.Revoke}, {&p.Issuer, e.Issuer}} {
				if o.v != "" {
					*o.to = o.v
				}
			}
		}
		p.ClientID = *id
		p.ClientSecret = string(c.Secrets[name])
		out = append(out, p)
	}
	return out
}

func (c ConnectionsConfig) validate() error {
	ps := c.providers()
	var errs []error
	for _, name := range oauthProviders {
		e := c.Endpoints[name]
		if e == nil {
			continue
		}
		for _, ef := range endpointFlags {
			v := *ef.field(e)
			if u, err := url.Parse(v); v != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
				errs = append(errs, fmt.Errorf("--oauth-%s-%s must be an absolute http(s) URL", name, ef.suffix))
			}
		}
	}
	if len(ps) == 0 {
		return errors.Join(errs...)
	}
	if c.PublicURL == "" {
		errs = append(errs, errors.New("--public-url is required when an OAuth provider is configured"))
	}
	for _, p := range ps {
		if p.ClientSecret == "" && p.Name != "oidc" {
			errs = append(errs, fmt.Errorf("%s is required with --oauth-%s-client-id", secretEnv(p.Name), p.Name))
		}
		if p.Name == "oidc" && c.OIDCIssuer == "" {
			errs = append(errs, errors.New("--oauth-oidc-issuer is required with --oauth-oidc-client-id"))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, connections.Config{Providers: ps, PublicURL: c.PublicURL}.Validate())
	}
	return errors.Join(errs...)
}

// connections returns the app's OAuth connection service over its
// records, keys and event bus, one per process: the API's routes and the
// workers' connectors share it.
func (a *app) connections() (*connections.Service, error) {
	a.connsOnce.Do(func() {
		providers := a.cfg.Connections.providers()
		for i, p := range providers {
			if p.Name == "google" { // the scope --gdrive-scope names
				providers[i].Scopes = []string{"https://www.googleapis.com/auth/" + a.cfg.Sources.DriveScope}
			}
		}
		a.conns, a.connsErr = connections.New(connections.Config{
			Providers: providers,
			PublicURL: a.cfg.Connections.PublicURL,
			Logger:    a.log.With("component", "connections"),
		}, a.recs, a.keys, a.bus)
	})
	return a.conns, a.connsErr
}
