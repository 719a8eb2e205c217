package records_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

// backends runs each test against the in-memory and the NATS key-value store.
var backends = map[string]func(t *testing.T) storage.KVStore{
	"memkv": func(t *testing.T) storage.KVStore { return memkv.NewKVStore() },
	"natskv": func(t *testing.T) storage.KVStore {
		_, js := natstest.Connect(t)
		return natskv.NewKVStore(js, natskv.Config{})
	},
}

func open(t *testing.T, newKVS func(t *testing.T) storage.KVStore) *records.Store {
	t.Helper()
	s, err := records.Open(context.Background(), newKVS(t))
	require.NoError(t, err)
	return s
}

func job(account apiary.AccountID) apiary.Job {
	now := time.Now().UTC()
	return apiary.Job{ID: apiary.NewJobID(), Account: account, Status: apiary.JobQueued, Version: 7, CreatedAt: now, UpdatedAt: now}
}

func TestRecords(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("accounts list and update by compare-and-swap", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				for _, id := range []apiary.AccountID{"globex", "acme"} {
					require.NoError(t, s.CreateAccount(ctx, apiary.Account{ID: id, Name: string(id)}))
				}
				all, err := s.Accounts(ctx)
				require.NoError(t, err)
				require.Len(t, all, 2)
				require.Equal(t, []apiary.AccountID{"acme", "globex"}, []apiary.AccountID{all[0].ID, all[1].ID})

				var wg sync.WaitGroup
				var err1, err2 error
				wg.Go(func() {
					_, err1 = s.UpdateAccount(ctx, "acme", func(a *apiary.Account) error {
						a.Embedding = &apiary.EmbeddingModel{Model: "m", Dim: 8}
						return nil
					})
				})
				wg.Go(func() {
					_, err2 = s.UpdateAccount(ctx, "acme", func(a *apiary.Account) error { a.Reembed = "job_1"; return nil })
				})
				wg.Wait()
				require.NoError(t, errors.Join(err1, err2))
				got, err := s.Account(ctx, "acme")
				require.NoError(t, err)
				require.Equal(t, &apiary.EmbeddingModel{Model: "m", Dim: 8}, got.Embedding, "concurrent updates lost one")
				require.Equal(t, apiary.JobID("job_1"), got.Reembed)

				got, err = s.UpdateAccount(ctx, "acme", func(*apiary.Account) error { return records.ErrNoChange })
				require.NoError(t, err)
				require.Equal(t, "acme", got.Name)
				_, err = s.UpdateAccount(ctx, "initech", func(*apiary.Account) error { return nil })
				require.ErrorIs(t, err, apiary.ErrNotFound)
			})
			t.Run("jobs are scoped to their account", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				j := job("acme")
				require.NoError(t, s.CreateJob(ctx, j))
				got, err := s.Job(ctx, "acme", j.ID)
				require.NoError(t, err)
				require.Equal(t, j.ID, got.ID)
				require.Equal(t, uint64(7), got.Version, "internal fields survive storage")

				_, err = s.Job(ctx, "globex", j.ID)
				require.ErrorIs(t, err, apiary.ErrNotFound)
				_, err = s.UpdateJob(ctx, "globex", j.ID, func(*apiary.Job) error { return nil })
				require.ErrorIs(t, err, apiary.ErrNotFound)
				jobs, _, err := s.Jobs(ctx, "globex", records.JobFilter{})
				require.NoError(t, err)
				require.Empty(t, jobs)
				require.ErrorIs(t, s.CreateJob(ctx, j), apiary.ErrConflict)
			})
			t.Run("document outcomes are kept once, per account and job", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				j := job("acme")
				require.NoError(t, s.CreateJob(ctx, j))
				outcomes := []apiary.DocumentOutcome{
					{Document: "a", Chunks: 2},
					{Document: "b.c/d", Reason: "not valid UTF-8"},
					{Document: "e", Chunks: 1},
					{Document: "f", Reason: "too large"},
				}
				for _, o := range outcomes {
					stored, err := s.RecordOutcome(ctx, "acme", j.ID, o)
					require.NoError(t, err)
					require.True(t, stored)
				}
				stored, err := s.RecordOutcome(ctx, "acme", j.ID, apiary.DocumentOutcome{Document: "a", Chunks: 9})
				require.NoError(t, err)
				require.False(t, stored, "the first outcome of a document stands")
				_, err = s.RecordOutcome(ctx, "globex", j.ID, apiary.DocumentOutcome{Document: "z", Reason: "elsewhere"})
				require.NoError(t, err)

				done, tally, err := s.Outcomes(ctx, "acme", j.ID)
				require.NoError(t, err)
				require.Equal(t, map[apiary.DocumentID]bool{"a": true, "b.c/d": true, "e": true, "f": true}, done)
				require.Equal(t, 2, tally.Done)
				require.Equal(t, 2, tally.Failed)
				require.Equal(t, 3, tally.Chunks)
				require.ElementsMatch(t, []apiary.DocumentError{{DocumentID: "b.c/d", Reason: "not valid UTF-8"}, {DocumentID: "f", Reason: "too large"}}, tally.Sample)

				first, next, err := s.JobErrors(ctx, "acme", j.ID, 1, "")
				require.NoError(t, err)
				require.Len(t, first, 1)
				require.NotEmpty(t, next)
				second, next, err := s.JobErrors(ctx, "acme", j.ID, 1, next)
				require.NoError(t, err)
				require.Empty(t, next)
				require.ElementsMatch(t, tally.Sample, append(first, second...))
				other, _, err := s.JobErrors(ctx, "globex", j.ID, 10, "")
				require.NoError(t, err)
				require.Equal(t, []apiary.DocumentError{{DocumentID: "z", Reason: "elsewhere"}}, other, "each account sees its own")
				_, _, err = s.JobErrors(ctx, "acme", j.ID, 10, "%%%")
				require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
			})
			t.Run("concurrent updates lose nothing", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				j := job("acme")
				require.NoError(t, s.CreateJob(ctx, j))
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						for range 5 {
							_, err := s.UpdateJob(ctx, "acme", j.ID, func(j *apiary.Job) error {
								j.Counts.DocumentsDone++
								return nil
							})
							require.NoError(t, err)
						}
					})
				}
				wg.Wait()
				got, err := s.Job(ctx, "acme", j.ID)
				require.NoError(t, err)
				require.Equal(t, 40, got.Counts.DocumentsDone)

				sentinel := errors.New("stop")
				_, err = s.UpdateJob(ctx, "acme", j.ID, func(j *apiary.Job) error { j.Counts.DocumentsDone = 0; return sentinel })
				require.ErrorIs(t, err, sentinel)
				_, err = s.UpdateJob(ctx, "acme", j.ID, func(j *apiary.Job) error { j.Counts.DocumentsDone = 0; return records.ErrNoChange })
				require.NoError(t, err)
				got, err = s.Job(ctx, "acme", j.ID)
				require.NoError(t, err)
				require.Equal(t, 40, got.Counts.DocumentsDone, "an aborted update writes nothing")
			})
			t.Run("job listing pages newest first and filters by status", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				var ids []apiary.JobID
				for i := range 5 {
					j := job("acme")
					j.ID = apiary.JobID(fmt.Sprintf("job_%026d", i))
					if i%2 == 1 {
						j.Status = apiary.JobSucceeded
					}
					require.NoError(t, s.CreateJob(ctx, j))
					ids = append(ids, j.ID)
				}
				page1, next, err := s.Jobs(ctx, "acme", records.JobFilter{Limit: 2})
				require.NoError(t, err)
				require.Equal(t, []apiary.JobID{ids[4], ids[3]}, jobIDs(page1))
				require.NotEmpty(t, next)
				page2, next, err := s.Jobs(ctx, "acme", records.JobFilter{Limit: 2, Cursor: next})
				require.NoError(t, err)
				require.Equal(t, []apiary.JobID{ids[2], ids[1]}, jobIDs(page2))
				page3, next, err := s.Jobs(ctx, "acme", records.JobFilter{Limit: 2, Cursor: next})
				require.NoError(t, err)
				require.Equal(t, []apiary.JobID{ids[0]}, jobIDs(page3))
				require.Empty(t, next)

				done, _, err := s.Jobs(ctx, "acme", records.JobFilter{Status: apiary.JobSucceeded})
				require.NoError(t, err)
				require.Equal(t, []apiary.JobID{ids[3], ids[1]}, jobIDs(done))

				_, _, err = s.Jobs(ctx, "acme", records.JobFilter{Cursor: "%%%"})
				require.ErrorIs(t, err, apiary.ErrInvalid)
			})
			t.Run("idempotency keys", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				got, err := s.ClaimIdempotencyKey(ctx, "acme", "k1", "hash-a", "job_1")
				require.NoError(t, err)
				require.Equal(t, apiary.JobID("job_1"), got)
				got, err = s.ClaimIdempotencyKey(ctx, "acme", "k1", "hash-a", "job_2")
				require.NoError(t, err)
				require.Equal(t, apiary.JobID("job_1"), got, "same key and body: the earlier job")
				_, err = s.ClaimIdempotencyKey(ctx, "acme", "k1", "hash-b", "job_3")
				require.ErrorIs(t, err, apiary.ErrConflict)
				got, err = s.ClaimIdempotencyKey(ctx, "globex", "k1", "hash-b", "job_4")
				require.NoError(t, err)
				require.Equal(t, apiary.JobID("job_4"), got, "keys are per account")
			})
			t.Run("documents with awkward ids", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				ids := []apiary.DocumentID{"a/b c.txt", "ü.md", "x.y.z", "acme.doc", "*", ">"}
				for _, id := range ids {
					require.NoError(t, s.PutDocument(ctx, apiary.DocumentRecord{ID: id, Account: "acme", Version: 1}))
				}
				for _, id := range ids {
					d, err := s.Document(ctx, "acme", id)
					require.NoError(t, err)
					require.Equal(t, id, d.ID)
					_, err = s.Document(ctx, "acme2", id)
					require.ErrorIs(t, err, apiary.ErrNotFound)
				}
				var listed []apiary.DocumentID
				cursor := ""
				for {
					page, next, err := s.Documents(ctx, "acme", 4, cursor)
					require.NoError(t, err)
					for _, d := range page {
						listed = append(listed, d.ID)
					}
					if next == "" {
						break
					}
					cursor = next
				}
				require.ElementsMatch(t, ids, listed)
				require.ErrorIs(t, s.DeleteDocument(ctx, "acme2", "x.y.z"), apiary.ErrNotFound)
				require.NoError(t, s.DeleteDocument(ctx, "acme", "x.y.z"))
				require.ErrorIs(t, s.DeleteDocument(ctx, "acme", "x.y.z"), apiary.ErrNotFound)
				require.ErrorIs(t, s.PutDocument(ctx, apiary.DocumentRecord{ID: "no-account"}), apiary.ErrInvalid)
			})
			t.Run("document puts never replace a newer version", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				put := func(v uint64, job apiary.JobID) error {
					return s.PutDocument(ctx, apiary.DocumentRecord{ID: "doc", Account: "acme", Version: v, Job: job})
				}
				require.NoError(t, put(2, "job_a"), "created when absent")
				err := put(1, "job_b")
				require.ErrorIs(t, err, apiary.ErrConflict)
				require.EqualError(t, err, `document "doc" has a newer version`)
				got, err := s.Document(ctx, "acme", "doc")
				require.NoError(t, err)
				require.Equal(t, uint64(2), got.Version)
				require.Equal(t, apiary.JobID("job_a"), got.Job, "a refused put wrote")

				require.NoError(t, put(2, "job_c"), "the same version replaces (a redelivered job)")
				got, err = s.Document(ctx, "acme", "doc")
				require.NoError(t, err)
				require.Equal(t, apiary.JobID("job_c"), got.Job)
				require.NoError(t, put(3, "job_d"))
				got, err = s.Document(ctx, "acme", "doc")
				require.NoError(t, err)
				require.Equal(t, uint64(3), got.Version)

				// Versions 1..8 at once, on a document nobody created yet: the
				// creates race too. Whatever the order, 8 is what stays, and
				// every refused put says Conflict.
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for v := range uint64(8) {
					wg.Go(func() {
						err := s.PutDocument(ctx, apiary.DocumentRecord{ID: "raced", Account: "acme", Version: v + 1})
						if err != nil && !errors.Is(err, apiary.ErrConflict) {
							errs <- err
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
				got, err = s.Document(ctx, "acme", "raced")
				require.NoError(t, err)
				require.Equal(t, uint64(8), got.Version)
				require.ErrorIs(t, s.PutDocument(ctx, apiary.DocumentRecord{ID: "raced", Account: "acme", Version: 7}), apiary.ErrConflict)
			})
			t.Run("lexical keys are created once per account", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				_, err := s.LexicalKey(ctx, "acme")
				require.ErrorIs(t, err, apiary.ErrNotFound)
				require.NoError(t, s.CreateLexicalKey(ctx, "acme", []byte("wrapped-1")))
				require.ErrorIs(t, s.CreateLexicalKey(ctx, "acme", []byte("wrapped-2")), apiary.ErrConflict, "the first key stands")
				got, err := s.LexicalKey(ctx, "acme")
				require.NoError(t, err)
				require.Equal(t, []byte("wrapped-1"), got)
				_, err = s.LexicalKey(ctx, "globex")
				require.ErrorIs(t, err, apiary.ErrNotFound, "another account's key is not found")
				require.NoError(t, s.CreateLexicalKey(ctx, "globex", []byte("theirs")))
				got, err = s.LexicalKey(ctx, "acme")
				require.NoError(t, err)
				require.Equal(t, []byte("wrapped-1"), got)
				require.ErrorIs(t, s.CreateLexicalKey(ctx, "acme", nil), apiary.ErrInvalid)
			})
			t.Run("vector protection is decided once per account", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				_, err := s.VectorProtection(ctx, "acme")
				require.ErrorIs(t, err, apiary.ErrNotFound)
				require.NoError(t, s.CreateVectorProtection(ctx, "acme", true))
				require.ErrorIs(t, s.CreateVectorProtection(ctx, "acme", false), apiary.ErrConflict, "the first decision stands")
				got, err := s.VectorProtection(ctx, "acme")
				require.NoError(t, err)
				require.True(t, got)
				require.NoError(t, s.CreateVectorProtection(ctx, "globex", false))
				got, err = s.VectorProtection(ctx, "globex")
				require.NoError(t, err)
				require.False(t, got, "another account has its own decision")
				require.NoError(t, s.CreateLexicalKey(ctx, "acme", []byte("wrapped-1")), "the lexical key is another record")
			})
			t.Run("accounts and tokens", func(t *testing.T) {
				t.Parallel()
				s, ctx := open(t, newKVS), context.Background()
				has, err := s.HasAccounts(ctx)
				require.NoError(t, err)
				require.False(t, has)
				require.NoError(t, s.CreateAccount(ctx, apiary.Account{ID: "acme", Name: "Acme"}))
				require.ErrorIs(t, s.CreateAccount(ctx, apiary.Account{ID: "acme"}), apiary.ErrConflict)
				require.ErrorIs(t, s.CreateAccount(ctx, apiary.Account{ID: "Bad Id"}), apiary.ErrInvalid)
				has, err = s.HasAccounts(ctx)
				require.NoError(t, err)
				require.True(t, has)

				for i := range 3 {
					require.NoError(t, s.CreateToken(ctx, apiary.Token{ID: apiary.TokenID(fmt.Sprintf("tok_%d", i)), Account: "acme", Role: apiary.RoleViewer, Hash: fmt.Sprintf("%064d", i)}))
				}
				require.NoError(t, s.CreateToken(ctx, apiary.Token{ID: "tok_x", Account: "globex", Role: apiary.RoleAdmin, Hash: fmt.Sprintf("%064d", 9)}))
				tok, err := s.TokenByHash(ctx, fmt.Sprintf("%064d", 1))
				require.NoError(t, err)
				require.Equal(t, apiary.TokenID("tok_1"), tok.ID)
				toks, err := s.Tokens(ctx, "acme")
				require.NoError(t, err)
				require.Len(t, toks, 3)
				require.ErrorIs(t, s.DeleteToken(ctx, "acme", "tok_x"), apiary.ErrNotFound, "another account's token")
				require.NoError(t, s.DeleteToken(ctx, "acme", "tok_1"))
				_, err = s.TokenByHash(ctx, fmt.Sprintf("%064d", 1))
				require.ErrorIs(t, err, apiary.ErrNotFound)
			})
		})
	}
}

func jobIDs(js []apiary.Job) []apiary.JobID {
	out := make([]apiary.JobID, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}
