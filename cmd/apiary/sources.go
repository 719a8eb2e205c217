package main

import (
	"context"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/confluence"
	"github.com/apiaryhq/apiary/connectors/gdrive"
	"github.com/apiaryhq/apiary/connectors/github"
	"github.com/apiaryhq/apiary/connectors/graph"
	"github.com/apiaryhq/apiary/connectors/notion"
	"github.com/apiaryhq/apiary/connectors/rest"
	"github.com/apiaryhq/apiary/connectors/s3"
	"github.com/apiaryhq/apiary/connectors/web"
)

// SourcesConfig configures the connectors that ingestion sources use:
// the URLs the API accepts and the workers' connectors.
type SourcesConfig struct {
	AllowPrivate bool // --allow-private-sources
	// APIURLs are the vendors' API base URLs by provider ("github" →
	// "https://ghe.example.com/api/v3"), for GitHub Enterprise, national
	// clouds and tests; a provider not named uses its vendor's own.
	APIURLs string // --source-api-urls provider=url,...
	// DriveScope is the Google Drive scope the google OAuth client asks
	// for: drive.readonly or drive.file (--gdrive-scope).
	DriveScope string
}

func (c *SourcesConfig) register(f *flags) {
	f.bool(&c.AllowPrivate, "allow-private-sources", "let ingestion sources (web, and s3 endpoints) reach private and loopback addresses (self-hosted sites, tests)")
	f.str(&c.APIURLs, "source-api-urls", "", "vendor API base URLs by provider, comma-separated provider=url (github=https://ghe.example.com/api/v3); others use the vendor's own")
	f.str(&c.DriveScope, "gdrive-scope", "drive.readonly", "the Google Drive scope: drive.readonly (everything the user can read; a restricted scope) or drive.file (only files picked for Apiary)")
}

// apiURL returns the base URL configured for provider, "" for the vendor's.
func (c SourcesConfig) apiURL(provider string) string {
	for _, kv := range strings.Split(c.APIURLs, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == provider {
			return v
		}
	}
	return ""
}

// validate checks the sources' flags.
func (c SourcesConfig) validate() error {
	for _, kv := range strings.Split(c.APIURLs, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if _, known := connectors.TokenProviders[k]; !ok || !known || !(strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "http://")) {
			return apiary.E(apiary.KindInvalid, "--source-api-urls: %q is not provider=http(s)://url with a provider of: gdrive, sharepoint, notion, confluence, github", kv)
		}
	}
	if c.DriveScope != "drive.readonly" && c.DriveScope != "drive.file" {
		return apiary.E(apiary.KindInvalid, "--gdrive-scope must be drive.readonly or drive.file")
	}
	return nil
}

// openSource is the workers' name → connector table: it opens the
// connector a source job's spec names, s3 with the job's ephemeral access
// key and the token providers with its ephemeral access token (creds,
// wiped by the caller once the connector is open) or its connection.
func (a *app) openSource(ctx context.Context, job apiary.Job, spec connectors.Spec, creds apiary.Credentials) (connectors.Connector, connectors.Source, error) {
	src := connectors.Source{Location: spec.SourceLocation(), MaxItems: spec.MaxItems, Items: spec.Items}
	switch spec.Provider {
	case "web":
		return web.New(web.Config{AllowPrivate: a.cfg.Sources.AllowPrivate}), src, nil
	case "s3":
		// The SDK signs with strings: those copies cannot be wiped, and
		// live as long as the connector (this one job).
		conn, err := s3.New(s3.Config{
			Region:       spec.Region,
			Endpoint:     spec.Endpoint,
			UsePathStyle: spec.Endpoint != "", // what S3-compatible servers expect
			AllowPrivate: a.cfg.Sources.AllowPrivate,
		}, s3.Credential{
			AccessKeyID:     string(creds.AccessKeyID.Reveal()),
			SecretAccessKey: string(creds.SecretAccessKey.Reveal()),
			SessionToken:    string(creds.SessionToken.Reveal()),
		})
		if err != nil {
			return nil, connectors.Source{}, err
		}
		return conn, src, nil
	}
	if _, ok := connectors.TokenProviders[spec.Provider]; !ok {
		return nil, connectors.Source{}, apiary.E(apiary.KindInvalid, "source provider %q is unknown to this worker", spec.Provider)
	}
	tok, err := a.sourceToken(job, spec, creds)
	if err != nil {
		return nil, connectors.Source{}, err
	}
	conn, err := a.openTokenConnector(spec, tok)
	return conn, src, err
}

// sourceToken is the token source of a token provider's job: its
// connection's current access token, asked at every request (refreshed
// when near expiry; an error once disconnected), or a copy of its
// ephemeral token that lives as long as the connector.
func (a *app) sourceToken(job apiary.Job, spec connectors.Spec, creds apiary.Credentials) (rest.TokenSource, error) {
	if spec.Connection == "" {
		return rest.Static(apiary.SecretFromBytes(append([]byte(nil), creds.Token.Reveal()...))), nil
	}
	conns, err := a.connections()
	if err != nil {
		return nil, err
	}
	account, id := job.Account, spec.Connection
	return rest.TokenFunc(func(ctx context.Context) (apiary.Secret, error) {
		tok, err := conns.Token(ctx, account, id)
		if err != nil {
			return apiary.Secret{}, err
		}
		return apiary.NewSecret(tok.AccessToken), nil
	}), nil
}

// openTokenConnector opens the connector of a token provider over tok.
func (a *app) openTokenConnector(spec connectors.Spec, tok rest.TokenSource) (connectors.Connector, error) {
	cfg := a.cfg.Sources
	base, private := cfg.apiURL(spec.Provider), cfg.AllowPrivate
	switch spec.Provider {
	case "gdrive":
		return gdrive.New(gdrive.Config{BaseURL: base, AllowPrivate: private, Scope: cfg.DriveScope}, tok)
	case "sharepoint":
		return graph.New(graph.Config{BaseURL: base, AllowPrivate: private}, tok)
	case "github":
		return github.New(github.Config{BaseURL: base, AllowPrivate: private}, tok)
	case "notion":
		return notion.New(notion.Config{BaseURL: base, AllowPrivate: private}, tok)
	case "confluence":
		if base != "" { // a test's or a proxy's root, one per site
			base = strings.TrimSuffix(base, "/") + "/ex/confluence/" + spec.Site
		}
		return confluence.New(confluence.Config{CloudID: spec.Site, BaseURL: base, AllowPrivate: private}, tok)
	}
	return nil, apiary.E(apiary.KindInvalid, "source provider %q is unknown to this worker", spec.Provider)
}
