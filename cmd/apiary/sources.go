package main

import (
	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/s3"
	"github.com/apiaryhq/apiary/connectors/web"
)

// SourcesConfig configures the connectors that ingestion sources use:
// the URLs the API accepts and the workers' connectors.
type SourcesConfig struct {
	AllowPrivate bool // --allow-private-sources
}

func (c *SourcesConfig) register(f *flags) {
	f.bool(&c.AllowPrivate, "allow-private-sources", "let ingestion sources (web, and s3 endpoints) reach private and loopback addresses (self-hosted sites, tests)")
}

// openSource is the workers' name → connector table: it opens the
// connector a source job's spec names, s3 with the job's ephemeral
// credential (creds, wiped by the caller once the connector is open).
func (a *app) openSource(spec connectors.Spec, creds apiary.Credentials) (connectors.Connector, connectors.Source, error) {
	switch spec.Provider {
	case "web":
		return web.New(web.Config{AllowPrivate: a.cfg.Sources.AllowPrivate}), connectors.Source{Location: spec.URL, MaxItems: spec.MaxItems}, nil
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
		return conn, connectors.Source{Location: spec.Location(), MaxItems: spec.MaxItems}, nil
	}
	return nil, connectors.Source{}, apiary.E(apiary.KindInvalid, "source provider %q is unknown to this worker", spec.Provider)
}
