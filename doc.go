// Package apiary is the vocabulary shared by every part of Apiary: identifiers,
// accounts, tokens, jobs, documents, chunks, events and the error kinds that
// drive behaviour at the edges (HTTP status codes in api, ack/retry/dead-letter
// in workers).
//
// It imports only the standard library. Ports live beside their consumers
// (workers/queue, workers/events, storage, pipeline/embed, pipeline/encrypt)
// and adapters import their port and this package, never each other.
package apiary
