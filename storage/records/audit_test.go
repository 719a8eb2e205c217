package records_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

func TestAuditLogPagesAndPrunes(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, ctx := open(t, newKVS), context.Background()
			now := time.Now().UTC()
			var want []string
			for i := range 5 {
				e, err := s.AppendAudit(ctx, records.AuditEntry{Account: "a", Time: now.Add(time.Duration(i-3) * 24 * time.Hour),
					Action: "token.create", Result: "success", Status: 201})
				require.NoError(t, err)
				want = append([]string{e.ID}, want...) // newest first
			}
			_, err := s.AppendAudit(ctx, records.AuditEntry{Account: "b", Time: now, Action: "authenticate"})
			require.NoError(t, err)

			var got []string
			cursor := ""
			for {
				page, next, err := s.AuditLog(ctx, "a", 2, cursor)
				require.NoError(t, err)
				for _, e := range page {
					require.Equal(t, apiary.AccountID("a"), e.Account)
					got = append(got, e.ID)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			require.Equal(t, want, got, "newest first, every entry once, the account's only")

			n, err := s.PruneAudit(ctx, now.Add(-36*time.Hour)) // the entries 3 and 2 days old
			require.NoError(t, err)
			require.Equal(t, 2, n)
			page, _, err := s.AuditLog(ctx, "a", 10, "")
			require.NoError(t, err)
			require.Len(t, page, 3)
			for _, e := range page {
				require.False(t, e.Time.Before(now.Add(-36*time.Hour)))
			}
			page, _, err = s.AuditLog(ctx, "b", 10, "")
			require.NoError(t, err)
			require.Len(t, page, 1)
		})
	}
}
