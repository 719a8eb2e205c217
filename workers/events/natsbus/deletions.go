package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/events"
)

// DeletedSubject is the core NATS subject (outside the event stream: it is
// not stored) on which a deleted account's id is announced to every
// process. Its payload is the account id, nothing else. It is not signed:
// whoever can publish with the service's NATS credentials can announce any
// account deleted, as they could delete its records; those credentials are
// the boundary.
const DeletedSubject = "apiary.accounts.deleted"

// flushTimeout bounds AnnounceDeleted's wait for the server when ctx has no
// sooner deadline.
const flushTimeout = 10 * time.Second

var _ events.Deletions = (*Bus)(nil)

// AnnounceDeleted publishes account's id on DeletedSubject and returns once
// the server has it (a flush): every connection subscribed then gets it.
func (b *Bus) AnnounceDeleted(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return fmt.Errorf("natsbus: announce deleted account: %w", err)
	}
	if err := b.cfg.Conn.Publish(DeletedSubject, []byte(account)); err != nil {
		return classify(err, "natsbus: announce deleted account %s", account)
	}
	ctx, cancel := context.WithTimeout(ctx, flushTimeout) // the sooner deadline holds
	defer cancel()
	if err := b.cfg.Conn.FlushWithContext(ctx); err != nil {
		return classify(err, "natsbus: announce deleted account %s", account)
	}
	return nil
}

// OnDeleted subscribes to DeletedSubject (plain fan-out: every subscriber
// gets every message) and returns once the server has the subscription.
// fn runs on the subscription's own goroutine, one id at a time; a payload
// that is not a valid account id is dropped.
func (b *Bus) OnDeleted(fn func(apiary.AccountID)) (stop func() error, err error) {
	sub, err := b.cfg.Conn.Subscribe(DeletedSubject, func(m *nats.Msg) {
		account := apiary.AccountID(m.Data)
		if account.Validate() != nil {
			return
		}
		fn(account)
	})
	if err != nil {
		return nil, classify(err, "natsbus: listen for deleted accounts")
	}
	if err := b.cfg.Conn.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, classify(err, "natsbus: listen for deleted accounts")
	}
	return func() error {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			return classify(err, "natsbus: stop listening for deleted accounts")
		}
		return nil
	}, nil
}
