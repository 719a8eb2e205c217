// Package natscustody carries custody's withdrawals between processes over
// core NATS request/reply (never JetStream: nothing is stored). Each holder
// answers on its own subject, <prefix>.<holder>; a request nobody answers
// (the holder's process stopped) gives custody.ErrNoHolder at once, by the
// server's no-responders status. It carries bytes only: custody seals
// what holds a credential before it gets here.
package natscustody

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/internal/natserr"
)

// DefaultPrefix is Config.Prefix's default.
const DefaultPrefix = "apiary.custody"

// Config configures a Transport.
type Config struct {
	// Conn is the NATS connection. Required.
	Conn *nats.Conn
	// Prefix is the subject prefix holders answer under. Default DefaultPrefix.
	Prefix string
	// HandleTimeout bounds the handling of one request. Default 10 s.
	HandleTimeout time.Duration
}

// Transport is custody.Transport over core NATS.
type Transport struct {
	cfg Config
}

var _ custody.Transport = (*Transport)(nil)

// New returns a transport over cfg.Conn.
func New(cfg Config) (*Transport, error) {
	if cfg.Conn == nil {
		return nil, errors.New("natscustody: Config.Conn is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.HandleTimeout <= 0 {
		cfg.HandleTimeout = 10 * time.Second
	}
	return &Transport{cfg: cfg}, nil
}

func (t *Transport) subject(holder string) (string, error) {
	if holder == "" || strings.ContainsAny(holder, ".*> \t\r\n") {
		return "", fmt.Errorf("natscustody: holder id %q is not a subject token", holder)
	}
	return t.cfg.Prefix + "." + holder, nil
}

// Request sends req to holder and waits for its reply, until ctx ends.
func (t *Transport) Request(ctx context.Context, holder string, req []byte) ([]byte, error) {
	subj, err := t.subject(holder)
	if err != nil {
		return nil, err
	}
	msg, err := t.cfg.Conn.RequestWithContext(ctx, subj, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("natscustody: request %s: %w", subj, custody.ErrNoHolder)
	}
	if err != nil {
		return nil, natserr.Wrap(err, "natscustody: request %s", subj)
	}
	return msg.Data, nil
}

// Notify publishes msg to holder, answered by nobody.
func (t *Transport) Notify(_ context.Context, holder string, msg []byte) error {
	subj, err := t.subject(holder)
	if err != nil {
		return err
	}
	return natserr.Wrap(t.cfg.Conn.Publish(subj, msg), "natscustody: notify %s", subj)
}

// Serve answers on holder's subject with h until stop. The subscription is
// in place when Serve returns (flushed to the server).
func (t *Transport) Serve(holder string, h func(ctx context.Context, req []byte) []byte) (func() error, error) {
	subj, err := t.subject(holder)
	if err != nil {
		return nil, err
	}
	sub, err := t.cfg.Conn.Subscribe(subj, func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.HandleTimeout)
		defer cancel()
		reply := h(ctx, m.Data)
		if m.Reply != "" && reply != nil {
			_ = m.Respond(reply) // the asker times out and retries if this is lost
		}
	})
	if err != nil {
		return nil, natserr.Wrap(err, "natscustody: subscribe %s", subj)
	}
	if err := t.cfg.Conn.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, natserr.Wrap(err, "natscustody: subscribe %s", subj)
	}
	return func() error {
		// Flushed: once stop returns, the server answers requests to this
		// holder with no responders.
		err := sub.Unsubscribe()
		if err == nil {
			err = t.cfg.Conn.Flush()
		}
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
			return nil
		}
		return natserr.Wrap(err, "natscustody: unsubscribe %s", subj)
	}, nil
}
