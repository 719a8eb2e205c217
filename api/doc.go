// Package api is Apiary's HTTP interface and the only importer of echo.
//
// What it promises:
//
//   - Authentication. Every /v1 route but the OpenAPI document takes
//     "Authorization: Bearer <token>". A token is checked for its format
//     (prefix, alphabet, length, checksum) before any lookup, then looked up
//     by its SHA-256 (the secret itself is never stored). Roles: admin
//     (everything in its account), editor (ingest, read, query, cancel,
//     delete documents), viewer (read, query); operator tokens may also
//     create accounts.
//   - Tenancy. Every handler acts on the account of the caller's token,
//     never on an account named in the request; another account's ids
//     answer 404, exactly like ids that do not exist.
//   - Throttling. Each token has its own token bucket (Config.RateLimit,
//     Config.RateBurst); beyond it requests get 429 with Retry-After.
//   - Errors. One central error handler turns every error into an RFC 9457
//     application/problem+json body with the request id; error kinds of the
//     root package map to statuses in one place (problemFor). An unclassified
//     error answers 500 "internal error" and is logged with its cause.
//   - Secrets. No response and no log line holds a bearer token (except the
//     one response that issues it), a key, a request body or document text.
//   - Bodies are limited (Config.BodyLimit) while they are read: 413 beyond.
//     A document's title and metadata are limited too (apiary.MaxTitleBytes,
//     apiary.MaxMetadataKeys and the like): 400 naming the limit. Whatever
//     the body limit accepts can be staged.
//
// The OpenAPI 3.1 description of every route is embedded (openapi.yaml) and
// served at GET /v1/openapi.yaml; a test keeps it equal to the routes.
package api
