// Package queue is the job queue port: at-least-once delivery of job
// messages (ids only) to workers, with leases.
//
// Promises every adapter keeps (checked by queuetest):
//   - Enqueue returns only once the message is durable.
//   - Receive(ctx, n) returns at most n deliveries; it waits up to the
//     adapter's poll interval for the first one and may return none.
//   - A delivery is settled through its own methods, which the adapter sets
//     (NewDelivery): no type assertion on an opaque receipt.
//   - A delivery is leased: until Ack, Nack or Term, or until its lease runs
//     out, no other receiver gets it. Extend renews the lease.
//   - A delivery whose lease runs out (a crashed worker) is delivered again,
//     with Attempt increased.
//   - Nack(delay) hands a delivery back to be delivered again after delay.
//   - A delivery's Enqueued is when its message was first stored, the same
//     on every redelivery (after a Nack or a lease that ran out).
//   - Term removes a delivery for good (dead-letter where the engine has one).
//   - All methods are safe for concurrent use.
package queue

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/apiaryhq/apiary"
)

// Delivery is one received job message. It is settled through its own
// methods (Ack, Nack, Extend, Term), which carry out the adapter's settler
// given to NewDelivery, as nats.go's jetstream.Msg is acked on itself.
// A Delivery not made by NewDelivery (a zero value, a literal in a test)
// has no settler: its settle methods fail with apiary.KindInvalid.
type Delivery struct {
	Msg apiary.JobMessage
	// Attempt counts deliveries of this message, starting at 1.
	Attempt int
	// Enqueued is when the message was first stored on the queue, as the
	// engine recorded it: the same on every delivery of the message, in
	// whatever process receives it. The adapter sets it after NewDelivery;
	// zero when the engine does not say.
	Enqueued time.Time

	settler Settler
}

// Settler settles one delivery. An adapter implements it for each delivery
// it hands out with NewDelivery; callers use the Delivery's methods, which
// take the same arguments and document the promises.
type Settler interface {
	Ack(ctx context.Context) error
	Nack(ctx context.Context, delay time.Duration) error
	Extend(ctx context.Context) error
	Term(ctx context.Context, reason string) error
}

// NewDelivery is msg, delivered for the attempt-th time, settled by s. Only
// adapters call it, setting Enqueued after it (and wrappers of an adapter,
// which pass the Delivery they wrap as s and copy its Enqueued).
func NewDelivery(msg apiary.JobMessage, attempt int, s Settler) *Delivery {
	return &Delivery{Msg: msg, Attempt: attempt, settler: s}
}

var _ Settler = (*Delivery)(nil)

// Ack removes the finished delivery from the queue; it returns once the
// engine has confirmed it.
func (d *Delivery) Ack(ctx context.Context) error {
	s, err := d.settle("ack")
	if err != nil {
		return err
	}
	return s.Ack(ctx)
}

// Nack hands the delivery back, to be delivered again after delay (at once
// when delay ≤ 0).
func (d *Delivery) Nack(ctx context.Context, delay time.Duration) error {
	s, err := d.settle("nack")
	if err != nil {
		return err
	}
	return s.Nack(ctx, delay)
}

// Extend renews the delivery's lease while its job runs; it fails with
// apiary.KindConflict when the engine allows no more.
func (d *Delivery) Extend(ctx context.Context) error {
	s, err := d.settle("extend")
	if err != nil {
		return err
	}
	return s.Extend(ctx)
}

// Term removes the delivery for good, to the dead-letter queue where there
// is one; reason (cut to MaxReasonLen by the caller, see Reason) is kept
// with it.
func (d *Delivery) Term(ctx context.Context, reason string) error {
	s, err := d.settle("term")
	if err != nil {
		return err
	}
	return s.Term(ctx, reason)
}

// settle is d's settler, or why there is none.
func (d *Delivery) settle(op string) (Settler, error) {
	switch {
	case d == nil:
		return nil, apiary.E(apiary.KindInvalid, "queue: %s: nil delivery", op)
	case d.settler == nil:
		return nil, apiary.E(apiary.KindInvalid, "queue: %s %s: delivery not received from a queue", op, d.Msg.Job)
	}
	return d.settler, nil
}

// Queue is the job queue port. Deliveries are settled through their own
// methods.
type Queue interface {
	// Enqueue stores msg durably for delivery.
	Enqueue(ctx context.Context, msg apiary.JobMessage) error
	// Receive returns up to max deliveries, possibly none after a poll interval.
	Receive(ctx context.Context, max int) ([]*Delivery, error)
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
