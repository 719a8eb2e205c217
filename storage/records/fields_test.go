package records_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
)

// fieldKeys derives each account's field key from its id: a test stand-in
// for cmd/apiary's keys derived from the account's key.
type fieldKeys struct{}

func (fieldKeys) Key(_ context.Context, account apiary.AccountID) ([]byte, error) {
	k := sha256.Sum256([]byte("test field key " + account))
	return k[:], nil
}

// sealedStore opens a record store over memory that seals fields with keys.
func sealedStore(t *testing.T, keys records.FieldKeys) (*records.Store, *memkv.Store) {
	t.Helper()
	kvs := memkv.NewKVStore()
	s, err := records.Open(t.Context(), kvs)
	require.NoError(t, err)
	s.SealFields(keys)
	return s, kvs
}

// rawBuckets returns every value stored in the named buckets of kvs.
func rawBuckets(t *testing.T, kvs *memkv.Store, names ...string) string {
	t.Helper()
	var all strings.Builder
	for _, name := range names {
		kv, err := kvs.Bucket(t.Context(), name)
		require.NoError(t, err)
		keys, err := kv.Keys(t.Context(), "")
		require.NoError(t, err)
		for _, k := range keys {
			e, err := kv.Get(t.Context(), k)
			require.NoError(t, err)
			all.WriteString(k + "\n" + string(e.Value) + "\n")
		}
	}
	return all.String()
}

// TestSealedFields: webhook URLs and descriptions, a delivery's and a job's
// webhook URL, account and token names are stored sealed and read back
// open; Idempotency-Keys and request hashes are stored as keyed hashes and
// still claim, match and release.
func TestSealedFields(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, kvs := sealedStore(t, fieldKeys{})
	const acct = apiary.AccountID("acme")
	now := time.Now().UTC()

	require.NoError(t, s.CreateAccount(ctx, apiary.Account{ID: acct, Name: "canary account name", CreatedAt: now}))
	tok := apiary.Token{ID: "tok_1", Account: acct, Name: "canary token name", Role: apiary.RoleViewer, Hash: "h1", CreatedAt: now}
	require.NoError(t, s.CreateToken(ctx, tok))
	hook := records.Webhook{ID: "wh_1", Account: acct, URL: "https://example.com/h?token=canary-query", Description: "canary description", Enabled: true, CreatedAt: now}
	require.NoError(t, s.CreateWebhook(ctx, hook))
	dlv := records.Delivery{ID: "dlv_1", Account: acct, Endpoint: "url_x", URL: "https://example.com/job?key=canary-job-url", EventID: "ev", Status: records.DeliverySucceeded, CreatedAt: now}
	require.NoError(t, s.CreateDelivery(ctx, dlv))
	j := job(acct)
	j.WebhookURL, j.IdempotencyKey, j.RequestHash = "https://example.com/job?key=canary-job-url", "canary-idem-key", "canary-request-hash"
	require.NoError(t, s.CreateJob(ctx, j))
	got, err := s.ClaimIdempotencyKey(ctx, acct, "canary-idem-key", "canary-request-hash", j.ID)
	require.NoError(t, err)
	require.Equal(t, j.ID, got)

	raw := rawBuckets(t, kvs, "accounts", "tokens", "webhooks", "webhook_deliveries", "jobs", "idempotency")
	for _, canary := range []string{"canary", "Y2FuYXJ5"} { // and its base64, as a key would hold it
		require.NotContains(t, raw, canary)
	}

	a, err := s.Account(ctx, acct)
	require.NoError(t, err)
	require.Equal(t, "canary account name", a.Name)
	toks, err := s.Tokens(ctx, acct)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	require.Equal(t, "canary token name", toks[0].Name)
	// Authentication and the cross-account listing need no key: they
	// leave names out.
	byHash, err := s.TokenByHash(ctx, "h1")
	require.NoError(t, err)
	require.Equal(t, tok.ID, byHash.ID)
	require.Empty(t, byHash.Name)
	all, err := s.Accounts(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Empty(t, all[0].Name)
	w, err := s.Webhook(ctx, acct, "wh_1")
	require.NoError(t, err)
	require.Equal(t, hook.URL, w.URL)
	require.Equal(t, hook.Description, w.Description)
	w, err = s.UpdateWebhook(ctx, acct, "wh_1", func(w *records.Webhook) error {
		require.Equal(t, hook.URL, w.URL, "an update sees the fields open")
		w.Description = "canary changed"
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, "canary changed", w.Description)
	d, err := s.Delivery(ctx, acct, "url_x", "dlv_1")
	require.NoError(t, err)
	require.Equal(t, dlv.URL, d.URL)
	stored, err := s.Job(ctx, acct, j.ID)
	require.NoError(t, err)
	require.Equal(t, j.WebhookURL, stored.WebhookURL)
	require.NotContains(t, rawBuckets(t, kvs, "webhooks", "jobs"), "canary")

	// A rotated token's new secret record keeps the name sealed too.
	next := toks[0]
	next.Hash = "h2"
	require.NoError(t, s.RotateToken(ctx, acct, next, now, now.Add(time.Hour)))
	require.NotContains(t, rawBuckets(t, kvs, "tokens"), "canary")
	toks, err = s.Tokens(ctx, acct)
	require.NoError(t, err)
	require.Len(t, toks, 2)
	for _, tk := range toks {
		require.Equal(t, "canary token name", tk.Name)
	}

	// The same key and body find the job; another body is refused; the
	// stored job's (hashed) key releases the claim.
	got, err = s.ClaimIdempotencyKey(ctx, acct, "canary-idem-key", "canary-request-hash", apiary.NewJobID())
	require.NoError(t, err)
	require.Equal(t, j.ID, got)
	_, err = s.ClaimIdempotencyKey(ctx, acct, "canary-idem-key", "another body", apiary.NewJobID())
	require.ErrorIs(t, err, apiary.ErrConflict)
	require.NoError(t, s.ReleaseIdempotencyKey(ctx, acct, stored.IdempotencyKey, j.ID))
	other := apiary.NewJobID()
	got, err = s.ClaimIdempotencyKey(ctx, acct, "canary-idem-key", "another body", other)
	require.NoError(t, err)
	require.Equal(t, other, got, "released: the key is free again")
}

// TestSealedFieldsAreBoundToTheirRecord: a sealed field copied into
// another account's record, or another record of the same account, does
// not open.
func TestSealedFieldsAreBoundToTheirRecord(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, kvs := sealedStore(t, sameKey{})
	now := time.Now().UTC()
	require.NoError(t, s.CreateWebhook(ctx, records.Webhook{ID: "wh_1", Account: "acme", URL: "https://example.com/a", CreatedAt: now}))
	require.NoError(t, s.CreateWebhook(ctx, records.Webhook{ID: "wh_2", Account: "acme", URL: "https://example.com/b", CreatedAt: now}))
	kv, err := kvs.Bucket(ctx, "webhooks")
	require.NoError(t, err)
	keys, err := kv.Keys(ctx, "")
	require.NoError(t, err)
	require.Len(t, keys, 2)
	stored := map[string]storage.Entry{} // by webhook id
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		require.NoError(t, err)
		var w records.Webhook
		require.NoError(t, json.Unmarshal(e.Value, &w))
		e.Key = k
		stored[w.ID] = e
	}
	// wh_2's record made of wh_1's, sealed URL included: same account and
	// key, other record.
	moved := strings.Replace(string(stored["wh_1"].Value), `"id":"wh_1"`, `"id":"wh_2"`, 1)
	_, err = kv.Update(ctx, stored["wh_2"].Key, []byte(moved), stored["wh_2"].Revision)
	require.NoError(t, err)
	_, err = s.Webhooks(ctx, "acme")
	require.ErrorContains(t, err, "does not open")
}

// sameKey gives every account one key: only the associated data tells
// records apart.
type sameKey struct{}

func (sameKey) Key(context.Context, apiary.AccountID) ([]byte, error) { return make([]byte, 32), nil }

// TestPlainFieldsFromBeforeSealing: a record written before fields were
// sealed reads as it is, and is sealed at its next write.
func TestPlainFieldsFromBeforeSealing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kvs := memkv.NewKVStore()
	before, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	now := time.Now().UTC()
	require.NoError(t, before.CreateWebhook(ctx, records.Webhook{ID: "wh_1", Account: "acme", URL: "https://example.com/plain", Description: "plain words", CreatedAt: now}))
	require.Contains(t, rawBuckets(t, kvs, "webhooks"), "plain words")

	after, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	after.SealFields(fieldKeys{})
	w, err := after.Webhook(ctx, "acme", "wh_1")
	require.NoError(t, err)
	require.Equal(t, "plain words", w.Description)
	_, err = after.UpdateWebhook(ctx, "acme", "wh_1", func(w *records.Webhook) error {
		w.Enabled = true
		return nil
	})
	require.NoError(t, err)
	require.NotContains(t, rawBuckets(t, kvs, "webhooks"), "plain")
	w, err = after.Webhook(ctx, "acme", "wh_1")
	require.NoError(t, err)
	require.Equal(t, "https://example.com/plain", w.URL)
	require.True(t, w.Enabled)
}

// BenchmarkUpdateJob measures a progress write of a job with a webhook_url
// and an Idempotency-Key, its fields sealed or stored as given (memkv: the
// cost of sealing, not of a real store).
func BenchmarkUpdateJob(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "sealed"}[sealed], func(b *testing.B) {
			ctx := b.Context()
			s, err := records.Open(ctx, memkv.NewKVStore())
			require.NoError(b, err)
			if sealed {
				s.SealFields(fieldKeys{})
			}
			j := job("acme")
			j.WebhookURL, j.IdempotencyKey = "https://example.com/hooks?token=abc", "key-1"
			require.NoError(b, s.CreateJob(ctx, j))
			for b.Loop() {
				_, err := s.UpdateJob(ctx, "acme", j.ID, func(j *apiary.Job) error {
					j.Counts.DocumentsDone++
					return nil
				})
				require.NoError(b, err)
			}
		})
	}
}
