package records_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// fill stores one record of account in every bucket and returns the ids.
func fill(t *testing.T, s *records.Store, account apiary.AccountID) (apiary.JobID, records.Delivery) {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC()
	require.NoError(t, s.CreateAccount(ctx, apiary.Account{ID: account, CreatedAt: now}))
	require.NoError(t, s.CreateToken(ctx, adminToken(account, 1)))
	j := job(account)
	require.NoError(t, s.CreateJob(ctx, j))
	_, err := s.RecordOutcome(ctx, account, j.ID, apiary.DocumentOutcome{Document: "doc"})
	require.NoError(t, err)
	_, err = s.ClaimIdempotencyKey(ctx, account, "idem", "hash", j.ID)
	require.NoError(t, err)
	require.NoError(t, s.PutDocument(ctx, apiary.DocumentRecord{ID: "doc", Account: account, Version: 1}))
	require.NoError(t, s.CreateWebhook(ctx, records.Webhook{ID: "wh_1", Account: account, URL: "https://example.com/h", CreatedAt: now}))
	require.NoError(t, s.CreateDefaultSecret(ctx, records.DefaultSecret{Account: account, CreatedAt: now}))
	d := delivery(account, "wh_1", "evt_"+string(account), now.Add(-time.Second))
	require.NoError(t, s.CreateDelivery(ctx, d))
	require.NoError(t, s.CreateConnection(ctx, records.Connection{ID: "conn_1", Account: account, Provider: "github"}))
	require.NoError(t, s.CreateLexicalKey(ctx, account, []byte("wrapped")))
	return j.ID, d
}

func TestDeleteAccountRecords(t *testing.T) {
	t.Parallel()
	for name, kvs := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := open(t, kvs)
			ctx := t.Context()
			gone, kept := apiary.NewAccountID(), apiary.NewAccountID()
			goneJob, goneDelivery := fill(t, s, gone)
			keptJob, keptDelivery := fill(t, s, kept)

			require.NoError(t, s.DeleteAccountRecords(ctx, gone))
			require.NoError(t, s.DeleteAccountRecords(ctx, gone), "deleting twice")

			for _, acc := range []struct {
				id      apiary.AccountID
				job     apiary.JobID
				d       records.Delivery
				present bool
			}{{gone, goneJob, goneDelivery, false}, {kept, keptJob, keptDelivery, true}} {
				check := func(err error, what string) {
					t.Helper()
					if acc.present {
						require.NoError(t, err, "%s of the other account", what)
					} else {
						require.ErrorIs(t, err, apiary.ErrNotFound, "%s of the deleted account", what)
					}
				}
				_, err := s.Account(ctx, acc.id)
				check(err, "account")
				_, err = s.Job(ctx, acc.id, acc.job)
				check(err, "job")
				_, err = s.Document(ctx, acc.id, "doc")
				check(err, "document")
				_, err = s.Webhook(ctx, acc.id, "wh_1")
				check(err, "webhook")
				_, err = s.DefaultSecret(ctx, acc.id)
				check(err, "default secret")
				_, err = s.Delivery(ctx, acc.id, acc.d.Endpoint, acc.d.ID)
				check(err, "delivery")
				_, err = s.Connection(ctx, acc.id, "conn_1")
				check(err, "connection")
				_, err = s.LexicalKey(ctx, acc.id)
				check(err, "lexical key")
				toks, err := s.Tokens(ctx, acc.id)
				require.NoError(t, err)
				require.Equal(t, acc.present, len(toks) == 1, "tokens")
				outcomes, _, err := s.Outcomes(ctx, acc.id, acc.job)
				require.NoError(t, err)
				require.Equal(t, acc.present, len(outcomes) == 1, "outcomes")
			}
			require.Equal(t, []string{keptDelivery.ID}, dueIDs(t, s, time.Now()), "the deleted account's due deliveries go")
			// The Idempotency-Key is free again (a new account of the same id starts clean).
			fresh := apiary.NewJobID()
			again, err := s.ClaimIdempotencyKey(ctx, gone, "idem", "other-hash", fresh)
			require.NoError(t, err)
			require.Equal(t, fresh, again)
		})
	}
}
