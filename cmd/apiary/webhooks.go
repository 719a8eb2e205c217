package main

import (
	"fmt"

	"github.com/apiaryhq/apiary/workers/webhook"
)

// WebhooksConfig configures webhook URLs (checked by the API) and their
// delivery (the dispatcher).
type WebhooksConfig struct {
	AllowPrivate bool // --allow-private-webhooks
}

func (c *WebhooksConfig) register(f *flags) {
	f.bool(&c.AllowPrivate, "allow-private-webhooks", "let webhooks call private and loopback addresses (self-hosted installs, tests)")
}

// webhookComponent is the webhook dispatcher (durable event consumer,
// scheduler, sender). Start it before the workers: it stops after them, as
// a receiver of their events should, waiting for the attempts in flight.
func (a *app) webhookComponent() (component, error) {
	d, err := webhook.New(webhook.Config{
		AllowPrivate: a.cfg.Webhooks.AllowPrivate,
		Logger:       a.log.With("component", "webhooks"),
	}, a.recs, a.keys, a.bus)
	if err != nil {
		return component{}, fmt.Errorf("webhook dispatcher: %w", err)
	}
	return component{name: "webhook dispatcher", run: d.Run}, nil
}
