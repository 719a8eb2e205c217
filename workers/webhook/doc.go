// Package webhook delivers job events to the webhook endpoints of an
// account, signed with the Standard Webhooks scheme. The domain it shares
// with the API (subscriptions, secrets, bodies, creating deliveries) is
// package webhooks; the records are storage/records'.
//
// Promises:
//   - Signing: headers webhook-id (the event id, stable across retries and
//     redeliveries), webhook-timestamp (unix seconds of the attempt) and
//     webhook-signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>",
//     one per live secret, space-separated during a rotation's grace).
//   - Bodies carry ids, status, counts and document errors only: never
//     document text, never credentials. Secrets are stored sealed with the
//     account's key and never logged.
//   - Nothing is lost across restarts: events come from a durable consumer
//     and are acknowledged only once their deliveries are stored; each
//     delivery and its next attempt time are records, picked up by a
//     scheduler from a due index.
//   - At most one delivery per (endpoint, event): its id derives from both
//     and it is created with Create; a job's completion event has one id.
//   - Attempts: 15 s timeout, no redirects, only 2xx succeeds; 410 disables
//     the endpoint; 429 and 5xx honour Retry-After; retries follow the
//     schedule (default at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h,
//     ±20%), then the delivery is exhausted; an endpoint failing for 5 days
//     straight is disabled.
//   - Isolation: at most Config.PerEndpoint attempts in flight per endpoint,
//     Config.PerAccount per account and Config.Concurrency in all; a busy
//     endpoint's or account's due deliveries are skipped, never waited for.
//   - Every URL goes through internal/safehttp (checked when accepted and
//     at dial time).
package webhook
