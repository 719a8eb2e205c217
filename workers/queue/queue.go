// Package queue is the job queue port: at-least-once delivery of job
// messages (ids only) to workers, with leases.
//
// Promises every adapter keeps (checked by queuetest):
//   - Enqueue returns only once the message is durable.
//   - Receive(ctx, n) returns at most n deliveries; it waits up to the
//     adapter's poll interval for the first one and may return none.
//   - A delivery is leased: until Ack, Nack or Term, or until its lease runs
//     out, no other receiver gets it. Extend renews the lease.
//   - A delivery whose lease runs out (a crashed worker) is delivered again,
//     with Attempt increased.
//   - Nack(d, delay) hands a delivery back to be delivered again after delay.
//   - Term removes a delivery for good (dead-letter where the engine has one).
//   - All methods are safe for concurrent use.
package queue

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/apiaryhq/apiary"
)

// Delivery is one received job message.
type Delivery struct {
	Msg apiary.JobMessage
	// Attempt counts deliveries of this message, starting at 1.
	Attempt int
	// Receipt is the adapter's handle for Ack/Nack/Extend/Term.
	Receipt any
}

// Queue is the job queue port.
type Queue interface {
	// Enqueue stores msg durably for delivery.
	Enqueue(ctx context.Context, msg apiary.JobMessage) error
	// Receive returns up to max deliveries, possibly none after a poll interval.
	Receive(ctx context.Context, max int) ([]*Delivery, error)
	// Ack removes a finished delivery.
	Ack(ctx context.Context, d *Delivery) error
	// Nack returns d to the queue to be delivered again after delay.
	Nack(ctx context.Context, d *Delivery, delay time.Duration) error
	// Extend renews d's lease while its job runs.
	Extend(ctx context.Context, d *Delivery) error
	// Term removes d for good, to the dead-letter queue where there is one.
	Term(ctx context.Context, d *Delivery, reason string) error
	// Lease is how long a delivery stays with its receiver without Extend.
	Lease() time.Duration
}

// BatchEnqueuer is an optional extension of Queue for adapters that store
// many messages in fewer round trips. Callers check for it with a type
// assertion and fall back to Enqueue per message:
//
//	if b, ok := q.(queue.BatchEnqueuer); ok {
//		err = b.EnqueueBatch(ctx, msgs)
//	}
type BatchEnqueuer interface {
	// EnqueueBatch stores every message of msgs durably for delivery, in
	// no particular order. It returns nil only when all of them are
	// stored. A message that is not valid (no job id, a bad account id)
	// fails the whole call with apiary.KindInvalid before anything is
	// stored. Otherwise the messages the engine refuses are retried once;
	// if some are still not stored, the error says how many and carries
	// the kind of the first failure (apiary.KindUnavailable when a retry
	// may succeed). The caller then enqueues the whole batch again:
	// delivery is at least once anyway, and a message stored twice is
	// handled as a redelivery. An empty msgs is a no-op.
	EnqueueBatch(ctx context.Context, msgs []apiary.JobMessage) error
}

// MaxReasonLen bounds the reason given to Term; adapters store it with the
// dead letter.
const MaxReasonLen = 512

// Reason cuts a Term reason to MaxReasonLen bytes without splitting a UTF-8
// character.
func Reason(s string) string {
	n := MaxReasonLen
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
