// Package connectors is where documents come from: the Connector port
// (connectors.go) that every data source implements — listing apart from
// fetching, a resumable cursor, a content version per item, a size cap on
// content, the vendor's answers classified into apiary kinds — with its
// conformance suite in connectortest, and the connectors: web/ (robots.txt,
// sitemaps, a same-host crawl). upload/ stages uploads sealed; it is not a
// Connector, because an upload has no source to list or fetch again: its
// documents arrive in the request and wait, sealed, for their job.
package connectors
