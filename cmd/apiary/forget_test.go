package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
)

// keyUses are the uses of an account's keys a process serves from its
// caches once warm: wrapping a data key (the KEK), opening one (the KEK
// again, and KMS' data key cache), sealing a record field (the field key,
// derived from the lexical key), hashing a query's terms (the pipeline's
// lexical key) and, with local vectors, sealing a vector at rest (the
// store's key, derived from the lexical key).
type keyUses struct {
	a       *app
	account apiary.AccountID
	wrapped []byte
	n       int
}

// warm uses every cache of account in a once, so that they hold its keys.
func warm(t *testing.T, a *app, account apiary.AccountID) *keyUses {
	t.Helper()
	dk, err := a.keys.GenerateDataKey(t.Context(), account, docKeyContext(account, "d1"))
	require.NoError(t, err)
	u := &keyUses{a: a, account: account, wrapped: dk.Wrapped}
	require.Empty(t, u.working(t.Context(), true), "each use works before the deletion")
	return u
}

// working returns the uses that still work: none, once the account's keys
// are erased and forgotten. With all, it reports each use's error.
func (u *keyUses) working(ctx context.Context, all bool) (failing []string) {
	u.n++
	uses := []struct {
		name string
		use  func() error
	}{
		{"wrap a data key", func() error {
			_, err := u.a.keys.GenerateDataKey(ctx, u.account, docKeyContext(u.account, "d2"))
			return err
		}},
		{"open a data key", func() error {
			_, err := u.a.keys.Decrypt(ctx, u.account, u.wrapped, docKeyContext(u.account, "d1"))
			return err
		}},
		{"seal a record field", func() error {
			return u.a.recs.CreateWebhook(ctx, records.Webhook{ID: apiary.RandomID("wh_"), Account: u.account,
				URL: "https://hooks.example.com/after", Enabled: true, CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()})
		}},
		{"hash a query's terms", func() error {
			_, err := u.a.pipe.Search(ctx, u.account, pipeline.Query{Mode: pipeline.ModeLexical, Text: "honey bees", TopK: 1})
			return err
		}},
	}
	if u.a.cfg.Vectors.Name == "local" {
		uses = append(uses, struct {
			name string
			use  func() error
		}{"seal a vector at rest", func() error {
			vec := make([]float32, u.a.emb.Dim())
			vec[0] = 1
			return u.a.vecs.Upsert(ctx, u.account, []storage.VectorRecord{{ChunkID: apiary.ChunkIDFor(u.account, "d1", uint64(u.n), 0),
				Account: u.account, Document: "d1", Version: uint64(u.n), Vector: vec, Sealed: []byte("sealed"), Model: u.a.emb.Model()}})
		}})
	}
	var works, errs []string
	for _, x := range uses {
		if err := x.use(); err == nil {
			works = append(works, x.name)
		} else if all {
			errs = append(errs, x.name+": "+err.Error())
		}
	}
	if all {
		return errs
	}
	return works
}

// requireForgotten polls (with a deadline) until no use of the account's
// keys works in u's process.
func (u *keyUses) requireForgotten(t *testing.T, why string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		works := u.working(t.Context(), false)
		if len(works) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, this process still can: %s", why, strings.Join(works, ", "))
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestForgetDropsEveryCachedKey: a process's one forget (what it runs when
// told an account is deleted) empties every cache of the account's keys.
// The key is taken away below the caches (its file and its KEK records
// deleted behind their back): every use still works from memory, and none
// once the account is forgotten.
func TestForgetDropsEveryCachedKey(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := startKeysApp(t, serveConfig(t, dataDir))
	acc := p.newAccount()
	u := warm(t, p.a, acc)

	require.NoError(t, os.Remove(filepath.Join(dataDir, "keys", string(acc)+".key")))
	require.NoError(t, p.a.recs.DeleteKEKs(t.Context(), acc))
	require.Empty(t, u.working(t.Context(), true), "the caches hold the account's keys")

	p.a.forgets.forget(acc)
	require.Empty(t, u.working(t.Context(), false), "the account's keys are still in memory")
	// The record store is told too: a request or job of the account still
	// under way writes nothing more.
	now := time.Now().UTC()
	err := p.a.recs.CreateJob(t.Context(), apiary.Job{ID: apiary.NewJobID(), Account: acc, Status: apiary.JobQueued, CreatedAt: now, UpdatedAt: now})
	require.ErrorIs(t, err, apiary.ErrNotFound)
	require.ErrorContains(t, err, "is deleted")
}

// TestDeletionReachesEveryProcess: two processes share NATS and KMS, as
// `apiary api` and `apiary worker` do. Process B has worked for an
// account, so it holds the account's KEK, lexical key, field key and KMS
// data keys in memory; process A deletes the account. B drops them at
// once, told over NATS: what B would wrap, seal or hash for the account
// afterwards fails, instead of going on under cached keys for up to ten
// minutes and leaving what it writes sealed under keys whose records are
// gone.
func TestDeletionReachesEveryProcess(t *testing.T) {
	t.Parallel()
	kms := os.Getenv("APIARY_TEST_KMS_ENDPOINT")
	if kms == "" {
		t.Skip("APIARY_TEST_KMS_ENDPOINT is not set: run scripts/test-services.sh start kms && source .test-services/env")
	}
	args := []string{"--nats-url", natstest.Start(t), "--keys", "awskms", "--kms-endpoint", kms}
	a := startKeysApp(t, serveConfig(t, t.TempDir(), args...))
	b, err := newApp(t.Context(), serveConfig(t, t.TempDir(), args...), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(b.Close)

	acc := a.newAccount()
	u := warm(t, b, acc)
	require.Equal(t, http.StatusNoContent, a.call(http.MethodDelete, "/v1/account", map[string]any{"confirm": acc}, nil))
	u.requireForgotten(t, "another process deleted the account")
}

// TestSweepForgetsWhatItLearns: a process that missed a deletion's
// announcement (cut off from NATS then) and learns it from the
// tombstones, at its next sweep, forgets the account everywhere, as the
// announcement would have: its caches of the account's keys too, not
// only its record store.
func TestSweepForgetsWhatItLearns(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := startKeysApp(t, serveConfig(t, dataDir))
	acc := p.newAccount()
	u := warm(t, p.a, acc)

	// Another process deletes the account; this one is not told.
	other, err := records.Open(t.Context(), natskv.NewKVStore(p.a.js, p.a.kvConfig()))
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dataDir, "keys", string(acc)+".key")))
	require.NoError(t, other.DeleteAccountRecords(t.Context(), acc))
	require.Empty(t, u.working(t.Context(), true), "the caches hold the account's keys")

	require.NoError(t, p.a.sweepDeletedAccounts(t.Context()))
	require.Empty(t, u.working(t.Context(), false), "the account's keys are still in memory")
}
