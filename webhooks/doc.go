// Package webhooks is the webhook domain shared by the API and the
// dispatcher (workers/webhook): which events an endpoint subscribes to, the
// signing secrets (their format, sealing with the account's key, rotation
// with a grace period, an account's default secret), the bodies sent, and
// the deliveries created for an event, a test or a redelivery. The records
// themselves (endpoints, secrets, deliveries and their due index) are kept
// by storage/records; sending and signing are the dispatcher's.
//
// Promises:
//   - A secret is "whsec_" + base64 of 32 random bytes; it is stored only
//     sealed with the account's key, bound to the account and the endpoint,
//     and no error quotes it.
//   - Bodies carry ids, status, counts and document errors only: never
//     document text, never credentials.
//   - At most one delivery per (endpoint, event): its id derives from both
//     (records.DeliveryIDFor) and it is created, never overwritten.
//   - Functions are safe for concurrent use; they take the records they
//     need as small interfaces (DefaultSecrets, Deliveries).
package webhooks
