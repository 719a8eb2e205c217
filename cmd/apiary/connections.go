package main

import (
	"errors"
	"fmt"
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
		p.ClientID = *id
		p.ClientSecret = string(c.Secrets[name])
		out = append(out, p)
	}
	return out
}

func (c ConnectionsConfig) validate() error {
	ps := c.providers()
	if len(ps) == 0 {
		return nil
	}
	var errs []error
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

// newConnections returns the OAuth connection service over the app's
// records, keys and event bus.
func (a *app) newConnections() (*connections.Service, error) {
	return connections.New(connections.Config{
		Providers: a.cfg.Connections.providers(),
		PublicURL: a.cfg.Connections.PublicURL,
		Logger:    a.log.With("component", "connections"),
	}, a.recs, a.keys, a.bus)
}
