package main

import (
	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/web"
)

// SourcesConfig configures the connectors that ingestion sources use:
// the URLs the API accepts and the workers' connectors.
type SourcesConfig struct {
	AllowPrivate bool // --allow-private-sources
}

func (c *SourcesConfig) register(f *flags) {
	f.bool(&c.AllowPrivate, "allow-private-sources", "let ingestion sources (web) reach private and loopback addresses (self-hosted sites, tests)")
}

// openSource is the workers' name → connector table: it opens the
// connector a source job's spec names.
func (a *app) openSource(spec connectors.Spec) (connectors.Connector, connectors.Source, error) {
	switch spec.Provider {
	case "web":
		return web.New(web.Config{AllowPrivate: a.cfg.Sources.AllowPrivate}), connectors.Source{Location: spec.URL, MaxItems: spec.MaxItems}, nil
	}
	return nil, connectors.Source{}, apiary.E(apiary.KindInvalid, "source provider %q is unknown to this worker", spec.Provider)
}
