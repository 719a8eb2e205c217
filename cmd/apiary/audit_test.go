package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// The pruner drops audit entries older than --audit-retention, at its
// start and then at every interval.
func TestAuditPrunerDropsOldEntries(t *testing.T) {
	t.Parallel()
	var cfg Config
	fs, err := flagSet("serve", &cfg)
	require.NoError(t, err)
	require.NoError(t, fs.Parse([]string{"--embedder", "local", "--data-dir", t.TempDir(), "--audit-retention", "1h"}))
	require.NoError(t, cfg.Validate("serve"))
	a, err := newApp(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer a.Close()

	now := time.Now()
	_, err = a.recs.AppendAudit(t.Context(), records.AuditEntry{Account: apiary.DefaultAccount, Time: now.Add(-2 * time.Hour), Action: "token.create"})
	require.NoError(t, err)
	fresh, err := a.recs.AppendAudit(t.Context(), records.AuditEntry{Account: apiary.DefaultAccount, Time: now, Action: "token.delete"})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.auditPrunerComponent(time.Hour).run(ctx) }()
	require.Eventually(t, func() bool {
		es, _, err := a.recs.AuditLog(t.Context(), apiary.DefaultAccount, 10, "")
		return err == nil && len(es) == 1 && es[0].ID == fresh.ID
	}, 20*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	fs, err = flagSet("serve", &cfg)
	require.NoError(t, err)
	require.NoError(t, fs.Parse([]string{"--audit-retention", "10m"}))
	require.ErrorContains(t, cfg.Validate("serve"), "--audit-retention must be at least 1h")
}
