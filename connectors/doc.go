// Package connectors is where documents come from: uploads staged by the API
// (upload/), and, in later work, data sources reached through a stored OAuth
// connection or a short-lived token the caller passes in and that lives only
// in memory.
package connectors
