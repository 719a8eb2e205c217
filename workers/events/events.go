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

// Deletions tells every process that an account is deleted, so that each
// drops what it keeps of the account in memory: its cached keys (the
// key-encryption keys, the lexical key and what is derived from it, KMS
// data keys). The deleting process announces it once the account's key is
// erased; every process listens from its start.
//
// Promises (natsbus keeps them):
//   - The signal carries the account's id and nothing else: never a key.
//   - Every process listening when AnnounceDeleted returns is handed the
//     id, at most once; OnDeleted returns once it listens.
//   - A process not listening then (stopped, or cut off from the bus) never
//     gets it: its caches drop the account's keys when they expire (minutes;
//     see kek.Config.MaxAge, lexical.KeysConfig.CacheTTL and awskms'
//     CacheConfig.MaxAge), and a key once expired no longer opens.
type Deletions interface {
	// AnnounceDeleted tells every listening process that account is
	// deleted. It returns once the bus holds the signal.
	AnnounceDeleted(ctx context.Context, account apiary.AccountID) error
	// OnDeleted calls fn with each account announced deleted from now on,
	// one at a time, until stop. fn must not block for long.
	OnDeleted(fn func(apiary.AccountID)) (stop func() error, err error)
}

// DurableBus is a Bus whose events can also be consumed durably.
type DurableBus interface {
	Bus
	Consumer
}
