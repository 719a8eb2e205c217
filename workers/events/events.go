// Package events is the job event bus port. Every job state change is
// published here; the bus keeps them in order per job for replay.
//
// Promises every adapter keeps (checked by eventstest):
//   - Publish returns once the event is stored; Seq is assigned by the bus.
//   - Seq is per account: each event of an account is numbered one more
//     than the account's previous one, so a Seq (an API cursor) reveals
//     nothing of other accounts' events. Concurrent publishers never share
//     or skip a number.
//   - Events of one job are replayed in publish order, with increasing Seq.
//   - Replay and Follow only ever see the given account's events.
package events

import (
	"context"

	"github.com/apiaryhq/apiary"
)

// Filter selects events. Account is required; Job narrows to one job.
// AfterSeq skips events up to and including that sequence number of the
// account.
type Filter struct {
	Account  apiary.AccountID
	Job      apiary.JobID
	AfterSeq uint64
}

// Bus is the event bus port.
type Bus interface {
	// Publish stores ev and announces it to followers.
	Publish(ctx context.Context, ev apiary.Event) error
	// Replay returns up to limit stored events matching f, oldest first.
	Replay(ctx context.Context, f Filter, limit int) ([]apiary.Event, error)
	// Follow calls fn for each stored event matching f, then for each new one,
	// until ctx ends or fn returns false or an error.
	Follow(ctx context.Context, f Filter, fn func(apiary.Event) (more bool, err error)) error
}

// Consumer hands every stored event to a named durable consumer, at least
// once, surviving restarts of the process. Buses that keep events durably
// implement it (natsbus); eventstest checks it for those that do.
//
// Promises: Consume calls fn for each event not yet acknowledged under
// durable, oldest first, one at a time per Consume call, for every account;
// an event is acknowledged when fn returns nil and handed again later
// (after a short backoff) when fn returns an error, also to another Consume
// of the same durable name in this or another process. Consume returns nil
// when ctx ends and an error when the bus fails.
type Consumer interface {
	Consume(ctx context.Context, durable string, fn func(context.Context, apiary.Event) error) error
}

// DurableBus is a Bus whose events can also be consumed durably.
type DurableBus interface {
	Bus
	Consumer
}
