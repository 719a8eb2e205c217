package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/apiaryhq/apiary/workers/webhook"
)

// startWebhooks runs the webhook dispatcher (durable event consumer,
// scheduler, sender) until runCtx ends or the returned stop is called; stop
// then waits for the attempts in flight. A dispatcher that cannot start
// reports on errs. Use it as `defer startWebhooks(runCtx, a, log, errs)()`
// where the workers start: it stops after them, as a receiver of their
// events should.
func startWebhooks(runCtx context.Context, a *app, log *slog.Logger, errs chan<- error) (stop func()) {
	d, err := webhook.New(webhook.Config{
		AllowPrivate: a.cfg.AllowPrivateWebhooks,
		Logger:       log.With("component", "webhooks"),
	}, a.recs, a.keys, a.bus)
	if err != nil {
		errs <- fmt.Errorf("webhook dispatcher: %w", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(runCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			errs <- fmt.Errorf("webhook dispatcher: %w", err)
		}
	}()
	log.Info("webhook dispatcher started", "allow_private", a.cfg.AllowPrivateWebhooks)
	return func() {
		cancel()
		<-done
	}
}
