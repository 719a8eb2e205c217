package workers_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/queue"
)

// A job of an account announced deleted is stopped where it runs and given
// up, saying why; one delivered afterwards does not run; other accounts'
// jobs go on.
func TestDeletedAccountsStopTheirJobs(t *testing.T) {
	t.Parallel()
	deleted := workers.NewDeletedAccounts(0)
	started := make(chan apiary.AccountID, 4)
	m := workers.NewMux()
	m.Use(deleted.Middleware)
	m.Register(apiary.JobKindIngest, workers.HandlerFunc(func(ctx context.Context, d *queue.Delivery) error {
		started <- d.Msg.Account
		if d.Msg.Account == "acme" {
			<-ctx.Done() // a long job, stopped only by its context
			return ctx.Err()
		}
		return nil
	}))
	delivery := func(account apiary.AccountID) *queue.Delivery {
		return &queue.Delivery{Msg: apiary.JobMessage{Account: account, Job: apiary.NewJobID()}, Attempt: 1}
	}

	done := make(chan error, 1)
	go func() { done <- m.Handle(t.Context(), delivery("acme")) }()
	require.Equal(t, apiary.AccountID("acme"), <-started)
	deleted.Forget("acme")
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the deleted account's job is still running")
	}
	require.True(t, apiary.IsPermanent(err), "given up, not retried: %v", err)
	require.ErrorContains(t, err, "account acme is deleted")

	err = m.Handle(t.Context(), delivery("acme"))
	require.True(t, apiary.IsPermanent(err))
	require.ErrorContains(t, err, "account acme is deleted")
	require.Empty(t, started, "a job of a deleted account does not start")

	require.NoError(t, m.Handle(t.Context(), delivery("globex")))
	require.Equal(t, apiary.AccountID("globex"), <-started)
}

// The accounts remembered are bounded: the oldest deletions are let go
// (their jobs fail anyway, on the erased key).
func TestDeletedAccountsAreBounded(t *testing.T) {
	t.Parallel()
	deleted := workers.NewDeletedAccounts(2)
	for _, a := range []apiary.AccountID{"a1", "a2", "a3"} {
		deleted.Forget(a)
	}
	h := deleted.Middleware(workers.HandlerFunc(func(context.Context, *queue.Delivery) error { return nil }))
	run := func(account apiary.AccountID) error {
		return h.Handle(t.Context(), &queue.Delivery{Msg: apiary.JobMessage{Account: account, Job: apiary.NewJobID()}, Attempt: 1})
	}
	require.NoError(t, run("a1"), "the oldest is let go")
	require.Error(t, run("a2"))
	require.Error(t, run("a3"))
}
