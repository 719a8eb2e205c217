package records_test

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
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
		})
	}
}

// pausingKVS holds the next Create in bucket until release is closed,
// after telling entered: a write already under way when a deletion runs.
type pausingKVS struct {
	storage.KVStore
	bucket  string
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

type pausingKV struct {
	storage.KV
	p *pausingKVS
}

func (p *pausingKVS) Bucket(ctx context.Context, name string) (storage.KV, error) {
	kv, err := p.KVStore.Bucket(ctx, name)
	if err != nil || name != p.bucket {
		return kv, err
	}
	return pausingKV{kv, p}, nil
}

func (k pausingKV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if k.p.armed.CompareAndSwap(true, false) {
		close(k.p.entered)
		<-k.p.release
	}
	return k.KV.Create(ctx, key, value)
}

// A write racing an account's deletion leaves nothing behind, and every
// write of the account after its deletion is refused, by this store and by
// one opened later (a restart), with NotFound.
func TestDeletedAccountTakesNoWrites(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			kvs := &pausingKVS{KVStore: newKVS(t), bucket: "jobs", entered: make(chan struct{}), release: make(chan struct{})}
			s, err := records.Open(ctx, kvs)
			require.NoError(t, err)
			gone, kept := apiary.NewAccountID(), apiary.NewAccountID()
			fill(t, s, gone)
			fill(t, s, kept)

			kvs.armed.Store(true)
			late := make(chan error, 1)
			go func() { late <- s.CreateJob(ctx, job(gone)) }()
			<-kvs.entered // the write is under way
			require.NoError(t, s.DeleteAccountRecords(ctx, gone))
			close(kvs.release)
			require.ErrorIs(t, <-late, apiary.ErrNotFound, "the racing write is refused")
			jobs, _, err := s.Jobs(ctx, gone, records.JobFilter{})
			require.NoError(t, err)
			require.Empty(t, jobs, "the racing write left no job")

			reopened, err := records.Open(ctx, kvs)
			require.NoError(t, err)
			for store, s := range map[string]*records.Store{"same store": s, "reopened store": reopened} {
				now := time.Now().UTC()
				j := job(gone)
				for what, err := range map[string]error{
					"job":        s.CreateJob(ctx, j),
					"document":   s.PutDocument(ctx, apiary.DocumentRecord{ID: "doc2", Account: gone, Version: 1}),
					"webhook":    s.CreateWebhook(ctx, records.Webhook{ID: "wh_2", Account: gone, URL: "https://example.com/h", CreatedAt: now}),
					"delivery":   s.CreateDelivery(ctx, delivery(gone, "wh_1", "evt_late", now)),
					"connection": s.CreateConnection(ctx, records.Connection{ID: "conn_2", Account: gone, Provider: "github"}),
					"token":      s.CreateToken(ctx, adminToken(gone, 2)),
					"account":    s.CreateAccount(ctx, apiary.Account{ID: gone, CreatedAt: now}),
				} {
					require.ErrorIs(t, err, apiary.ErrNotFound, "%s: %s of the deleted account", store, what)
					require.ErrorContains(t, err, "is deleted", "%s: %s", store, what)
				}
				_, err := s.RecordOutcome(ctx, gone, j.ID, apiary.DocumentOutcome{Document: "doc"})
				require.ErrorIs(t, err, apiary.ErrNotFound, "%s: outcome", store)
				_, err = s.ClaimIdempotencyKey(ctx, gone, "idem2", "hash", j.ID)
				require.ErrorIs(t, err, apiary.ErrNotFound, "%s: idempotency key", store)
				require.NoError(t, s.CreateJob(ctx, job(kept)), "%s: the other account still writes", store)
			}
			left, _, err := s.AccountLeft(ctx, gone)
			require.NoError(t, err)
			require.False(t, left)
		})
	}
}

// A process that had not heard of a deletion and wrote for the account
// after it: its next sweep learns the deletion and deletes what it wrote.
func TestSweepDeletedAccounts(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			kvs := newKVS(t)
			deleter, err := records.Open(ctx, kvs)
			require.NoError(t, err)
			unaware, err := records.Open(ctx, kvs) // another process, opened before the deletion
			require.NoError(t, err)
			gone := apiary.NewAccountID()
			fill(t, deleter, gone)
			start := time.Now()
			require.NoError(t, deleter.DeleteAccountRecords(ctx, gone))

			straggler := job(gone)
			require.NoError(t, unaware.CreateJob(ctx, straggler), "not told yet")
			later := time.Now().Add(time.Hour) // the window is past: only what is news is swept
			n, learned, err := unaware.SweepDeletedAccounts(ctx, later)
			require.NoError(t, err)
			require.Equal(t, 1, n, "a deletion it had not heard of")
			require.Equal(t, []apiary.AccountID{gone}, learned, "and it says so")
			_, err = deleter.Job(ctx, gone, straggler.ID)
			require.ErrorIs(t, err, apiary.ErrNotFound, "the straggler is swept")
			require.ErrorIs(t, unaware.CreateJob(ctx, job(gone)), apiary.ErrNotFound, "and the sweeper knows now")

			n, learned, err = unaware.SweepDeletedAccounts(ctx, later)
			require.NoError(t, err)
			require.Zero(t, n, "known, and deleted before the window")
			require.Empty(t, learned)
			n, learned, err = unaware.SweepDeletedAccounts(ctx, start.Add(-time.Minute))
			require.NoError(t, err)
			require.Equal(t, 1, n, "deleted within the window: swept again")
			require.Empty(t, learned, "known already")
		})
	}
}

// countingKVS counts the reads (Get) and listings (Keys) of every bucket.
type countingKVS struct {
	storage.KVStore
	gets, lists sync.Map // bucket name → *atomic.Int64
}

type countingKV struct {
	storage.KV
	gets, lists *atomic.Int64
}

func (c *countingKVS) counter(m *sync.Map, name string) *atomic.Int64 {
	n, _ := m.LoadOrStore(name, new(atomic.Int64))
	return n.(*atomic.Int64)
}

func (c *countingKVS) Bucket(ctx context.Context, name string) (storage.KV, error) {
	kv, err := c.KVStore.Bucket(ctx, name)
	if err != nil {
		return kv, err
	}
	return countingKV{kv, c.counter(&c.gets, name), c.counter(&c.lists, name)}, nil
}

func (k countingKV) Get(ctx context.Context, key string) (storage.Entry, error) {
	k.gets.Add(1)
	return k.KV.Get(ctx, key)
}

func (k countingKV) Keys(ctx context.Context, prefix string) ([]string, error) {
	k.lists.Add(1)
	return k.KV.Keys(ctx, prefix)
}

// A sweep after many deletions costs one pass over the buckets not keyed
// by account (tokens, keyed by hash; due deliveries, keyed by time), not
// one per deleted account: every process sweeps every minute, for ten
// minutes after each deletion, so a pass per account read every token of
// every account (and listed every due delivery) once per deleted account.
func TestSweepReadsEachTokenOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kvs := &countingKVS{KVStore: memkv.NewKVStore()}
	s, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	const deleted, live = 5, 10
	for range live {
		fill(t, s, apiary.NewAccountID())
	}
	start := time.Now()
	for range deleted {
		a := apiary.NewAccountID()
		fill(t, s, a)
		require.NoError(t, s.DeleteAccountRecords(ctx, a))
	}

	gets, lists := kvs.counter(&kvs.gets, "tokens"), kvs.counter(&kvs.lists, "due")
	gets.Store(0)
	lists.Store(0)
	n, _, err := s.SweepDeletedAccounts(ctx, start.Add(-time.Minute))
	require.NoError(t, err)
	require.Equal(t, deleted, n)
	require.LessOrEqual(t, gets.Load(), int64(live), "each token read once, not once per deleted account")
	require.LessOrEqual(t, lists.Load(), int64(1), "the due deliveries listed once")
}

// More deletions within the sweep's window than a store remembers (a bulk
// deletion): the sweep still deletes again what a process wrote for each
// of them before it heard, the first deleted included.
func TestSweepPastTheBound(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kvs := memkv.NewKVStore()
	deleter, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	unaware, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	const bound = 3
	records.SetDeletedBound(deleter, bound)
	records.SetDeletedBound(unaware, bound)
	start := time.Now()
	first := apiary.NewAccountID()
	require.NoError(t, deleter.DeleteAccountRecords(ctx, first))
	straggler := job(first)
	require.NoError(t, unaware.CreateJob(ctx, straggler), "not told yet")
	for range bound + 2 {
		require.NoError(t, deleter.DeleteAccountRecords(ctx, apiary.NewAccountID()))
	}

	_, _, err = unaware.SweepDeletedAccounts(ctx, start.Add(-time.Minute))
	require.NoError(t, err)
	_, err = deleter.Job(ctx, first, straggler.ID)
	require.ErrorIs(t, err, apiary.ErrNotFound, "the straggler of the first deletion is swept")
}

// The tombstones no store reads (older than the sweep's window, and
// beyond the most recent a store remembers) are pruned by the sweep:
// every process lists the tombstones every minute, and at its start.
func TestSweepPrunesUnreadTombstones(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kvs := memkv.NewKVStore()
	s, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	const bound = 3
	records.SetDeletedBound(s, bound)
	var deleted []apiary.AccountID
	for range bound + 5 {
		a := apiary.NewAccountID()
		require.NoError(t, s.DeleteAccountRecords(ctx, a))
		deleted = append(deleted, a)
	}
	_, _, err = s.SweepDeletedAccounts(ctx, time.Now().Add(time.Hour)) // every deletion before the window
	require.NoError(t, err)

	tombstones, err := kvs.Bucket(ctx, "deleted_accounts")
	require.NoError(t, err)
	keys, err := tombstones.Keys(ctx, "")
	require.NoError(t, err)
	require.Len(t, keys, bound, "the tombstones a store reads are left, the others pruned")
	reopened, err := records.Open(ctx, kvs)
	require.NoError(t, err)
	records.SetDeletedBound(reopened, bound)
	for _, k := range keys {
		_, tok, _ := strings.Cut(k, ".")
		a, err := base64.RawURLEncoding.DecodeString(tok)
		require.NoError(t, err)
		require.Contains(t, deleted, apiary.AccountID(a))
		require.ErrorIs(t, reopened.CreateJob(ctx, job(apiary.AccountID(a))), apiary.ErrNotFound, "the most recent deletions are still refused")
	}
}
