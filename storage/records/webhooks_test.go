package records_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
)

func webhook(account apiary.AccountID) records.Webhook {
	now := time.Now().UTC()
	return records.Webhook{ID: apiary.RandomID("wh_"), Account: account, URL: "https://example.com/hook",
		Enabled: true, Secrets: records.Secrets{Sealed: []byte("sealed")}, CreatedAt: now, UpdatedAt: now}
}

func delivery(account apiary.AccountID, endpoint, event string, due time.Time) records.Delivery {
	return records.Delivery{ID: records.DeliveryIDFor(endpoint, event), Account: account, Endpoint: endpoint,
		EventID: event, EventType: apiary.EventJobSucceeded, Payload: []byte(`{}`), Status: records.DeliveryPending,
		NextAttemptAt: &due, CreatedAt: due, UpdatedAt: due}
}

func dueIDs(t *testing.T, s *records.Store, now time.Time) []string {
	t.Helper()
	due, err := s.DueDeliveries(context.Background(), now, 100)
	require.NoError(t, err)
	ids := []string{}
	for _, d := range due {
		ids = append(ids, d.ID)
	}
	return ids
}

func TestWebhookRecords(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("webhooks are scoped to their account", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				w := webhook("acme")
				require.NoError(t, s.CreateWebhook(ctx, w))
				require.ErrorIs(t, s.CreateWebhook(ctx, w), apiary.ErrConflict)
				got, err := s.Webhook(ctx, "acme", w.ID)
				require.NoError(t, err)
				require.Equal(t, w.URL, got.URL)
				_, err = s.Webhook(ctx, "other", w.ID)
				require.ErrorIs(t, err, apiary.ErrNotFound)
				_, err = s.UpdateWebhook(ctx, "other", w.ID, func(*records.Webhook) error { return nil })
				require.ErrorIs(t, err, apiary.ErrNotFound)
				require.ErrorIs(t, s.DeleteWebhook(ctx, "other", w.ID), apiary.ErrNotFound)

				w2 := webhook("acme")
				w2.ID = w.ID + "z" // created later: ids sort by creation time
				require.NoError(t, s.CreateWebhook(ctx, w2))
				list, err := s.Webhooks(ctx, "acme")
				require.NoError(t, err)
				require.Len(t, list, 2)
				require.Equal(t, w.ID, list[0].ID, "oldest first")
				list, err = s.Webhooks(ctx, "other")
				require.NoError(t, err)
				require.Empty(t, list)

				up, err := s.UpdateWebhook(ctx, "acme", w.ID, func(w *records.Webhook) error { w.Enabled = false; return nil })
				require.NoError(t, err)
				require.False(t, up.Enabled)
				require.NoError(t, s.DeleteWebhook(ctx, "acme", w.ID))
				_, err = s.Webhook(ctx, "acme", w.ID)
				require.ErrorIs(t, err, apiary.ErrNotFound)
			})

			t.Run("default secret is created once", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				_, err := s.DefaultSecret(ctx, "acme")
				require.ErrorIs(t, err, apiary.ErrNotFound)
				d := records.DefaultSecret{Account: "acme", Secrets: records.Secrets{Sealed: []byte("x")}}
				require.NoError(t, s.CreateDefaultSecret(ctx, d))
				require.ErrorIs(t, s.CreateDefaultSecret(ctx, d), apiary.ErrConflict)
				got, err := s.UpdateDefaultSecret(ctx, "acme", func(d *records.DefaultSecret) error { d.Revealed = true; return nil })
				require.NoError(t, err)
				require.True(t, got.Revealed)
				_, err = s.DefaultSecret(ctx, "other")
				require.ErrorIs(t, err, apiary.ErrNotFound)
			})

			t.Run("deliveries are idempotent and indexed by due time", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				now := time.Now().UTC()
				later := delivery("acme", "wh_1", "evt_b", now.Add(time.Hour))
				soon := delivery("acme", "wh_1", "evt_a", now.Add(-time.Second))
				other := delivery("beta", "wh_2", "evt_a", now.Add(-2*time.Second))
				for _, d := range []records.Delivery{later, soon, other} {
					require.NoError(t, s.CreateDelivery(ctx, d))
				}
				require.ErrorIs(t, s.CreateDelivery(ctx, soon), apiary.ErrConflict, "same (endpoint, event): one delivery")
				require.Equal(t, []string{other.ID, soon.ID}, dueIDs(t, s, now), "due ones only, soonest first")
				require.Equal(t, []string{other.ID, soon.ID, later.ID}, dueIDs(t, s, now.Add(2*time.Hour)))

				// A claim moves the entry to the lease's end; a second claim of
				// the same entry is stale and drops nothing that is live.
				due, err := s.DueDeliveries(ctx, now, 100)
				require.NoError(t, err)
				d, ok, err := s.ClaimDelivery(ctx, due[1], now, time.Minute)
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, soon.ID, d.ID)
				_, ok, err = s.ClaimDelivery(ctx, due[1], now, time.Minute)
				require.NoError(t, err)
				require.False(t, ok, "a stale entry is not claimed")
				require.Equal(t, []string{other.ID}, dueIDs(t, s, now))
				require.Contains(t, dueIDs(t, s, now.Add(2*time.Minute)), soon.ID, "retried after the lease")

				// Racing claims of one due entry: exactly one wins.
				racy := delivery("acme", "wh_9", "evt_race", now.Add(-time.Second))
				require.NoError(t, s.CreateDelivery(ctx, racy))
				var entry records.DueDelivery
				dues, err := s.DueDeliveries(ctx, now, 100)
				require.NoError(t, err)
				for _, e := range dues {
					if e.ID == racy.ID {
						entry = e
					}
				}
				require.Equal(t, racy.ID, entry.ID)
				var wins atomic.Int32
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						_, ok, err := s.ClaimDelivery(ctx, entry, now, time.Minute)
						if err == nil && ok {
							wins.Add(1)
						}
					})
				}
				wg.Wait()
				require.EqualValues(t, 1, wins.Load(), "one process sends a due delivery")

				// Succeeding unschedules it.
				_, err = s.UpdateDelivery(ctx, "acme", "wh_1", soon.ID, func(d *records.Delivery) error {
					d.Status = records.DeliverySucceeded
					d.Attempts = append(d.Attempts, records.Attempt{At: now, StatusCode: 200})
					return nil
				})
				require.NoError(t, err)
				require.NotContains(t, dueIDs(t, s, now.Add(2*time.Hour)), soon.ID)
				got, err := s.Delivery(ctx, "acme", "wh_1", soon.ID)
				require.NoError(t, err)
				require.Nil(t, got.NextAttemptAt)
				require.Len(t, got.Attempts, 1)
				_, err = s.Delivery(ctx, "beta", "wh_1", soon.ID)
				require.ErrorIs(t, err, apiary.ErrNotFound)

				// Listing: newest first, paged, scoped to the endpoint.
				list, cursor, err := s.Deliveries(ctx, "acme", "wh_1", 1, "")
				require.NoError(t, err)
				require.Len(t, list, 1)
				require.Equal(t, later.ID, list[0].ID)
				require.NotEmpty(t, cursor)
				list, cursor, err = s.Deliveries(ctx, "acme", "wh_1", 1, cursor)
				require.NoError(t, err)
				require.Equal(t, soon.ID, list[0].ID)
				require.Empty(t, cursor)
				list, _, err = s.Deliveries(ctx, "beta", "wh_1", 10, "")
				require.NoError(t, err)
				require.Empty(t, list)
			})
		})
	}
}

func TestDeliveryIDIsDerived(t *testing.T) {
	t.Parallel()
	a := records.DeliveryIDFor("wh_1", "evt_1")
	require.Equal(t, a, records.DeliveryIDFor("wh_1", "evt_1"))
	require.NotEqual(t, a, records.DeliveryIDFor("wh_2", "evt_1"))
	require.NotEqual(t, a, records.DeliveryIDFor("wh_1", "evt_2"))
	require.NotEqual(t, records.DeliveryIDFor("wh_1e", "vt_1"), records.DeliveryIDFor("wh_1", "evt_1"))
	require.NotEqual(t, records.JobURLEndpoint("job_a"), records.JobURLEndpoint("job_b"))
}

// A crash between a delivery's record and its due-index entry heals when
// the same delivery is created again (the event handed over again).
func TestCreateDeliveryHealsMissingIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kvs := memkv.NewKVStore()
	s, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	now := time.Now().UTC()
	d := delivery("acme", "wh_1", "evt_a", now)
	require.NoError(t, s.CreateDelivery(ctx, d))
	due, err := kvs.Bucket(ctx, "webhook_due")
	require.NoError(t, err)
	keys, err := due.Keys(ctx, "")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NoError(t, due.Delete(ctx, keys[0])) // the crash
	require.Empty(t, dueIDs(t, s, now))

	require.ErrorIs(t, s.CreateDelivery(ctx, d), apiary.ErrConflict)
	require.Equal(t, []string{d.ID}, dueIDs(t, s, now), "scheduled again")
}
