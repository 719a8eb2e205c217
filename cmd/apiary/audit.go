package main

import (
	"context"
	"time"
)

const (
	defaultAuditRetention = 90 * 24 * time.Hour
	auditPruneEvery       = time.Hour
)

// auditPrunerComponent deletes audit log entries older than
// --audit-retention, at its start and then every interval. Processes that
// serve the API run it; several doing so only repeat each other's deletes.
func (a *app) auditPrunerComponent(every time.Duration) component {
	return component{name: "audit pruner", run: func(ctx context.Context) error {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			n, err := a.recs.PruneAudit(ctx, time.Now().Add(-a.cfg.API.AuditRetention))
			switch {
			case err != nil && ctx.Err() == nil:
				a.log.Warn("pruning the audit log failed; retrying at the next interval", "err", err)
			case n > 0:
				a.log.Info("audit log pruned", "entries", n, "retention", a.cfg.API.AuditRetention)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}}
}
