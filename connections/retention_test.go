package connections

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// A revoked connection is kept DefaultRevokedRetention after its
// disconnect, answering with its status, then the scheduler deletes it
// (404 from then on): revoked connections do not pile up. The scheduler's
// clock is the now it is given.
func TestRevokedConnectionsArePrunedAfterRetention(t *testing.T) {
	t.Parallel()
	w, ctx := newScheduleWorld(t), t.Context()
	now := time.Now().UTC()
	for id, c := range map[string]struct {
		status records.ConnectionStatus
		age    time.Duration
	}{
		"con_old_revoked":    {records.ConnectionRevoked, 31 * 24 * time.Hour},
		"con_recent_revoked": {records.ConnectionRevoked, 29 * 24 * time.Hour},
		"con_old_active":     {records.ConnectionActive, 60 * 24 * time.Hour},
	} {
		at := now.Add(-c.age)
		require.NoError(t, w.recs.CreateConnection(ctx, records.Connection{ID: id, Account: acc, Provider: "github",
			Status: c.status, CreatedAt: at, UpdatedAt: at}))
	}
	present := func(id string) bool {
		t.Helper()
		_, err := w.recs.Connection(ctx, acc, id)
		if err != nil {
			require.ErrorIs(t, err, apiary.ErrNotFound)
		}
		return err == nil
	}
	sc := w.scheduler()

	_, err := sc.Tick(ctx, now)
	require.NoError(t, err)
	require.False(t, present("con_old_revoked"), "revoked over the retention ago: deleted")
	require.True(t, present("con_recent_revoked"), "revoked within the retention: kept")
	require.True(t, present("con_old_active"), "an active connection is never pruned")

	_, err = sc.Tick(ctx, now.Add(2*24*time.Hour))
	require.NoError(t, err)
	require.False(t, present("con_recent_revoked"), "its retention ended two days later")
	require.True(t, present("con_old_active"))
}
