package workers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// A job whose handler panics (the pool recovers it, outside the mux) does
// not stay registered as running: every panic would leave an entry behind.
func TestDeletedAccountsForgetAPanickedJob(t *testing.T) {
	t.Parallel()
	g := NewDeletedAccounts(0)
	h := g.Middleware(HandlerFunc(func(context.Context, *queue.Delivery) error { panic("boom") }))
	func() {
		defer func() { require.NotNil(t, recover()) }()
		_ = h.Handle(t.Context(), &queue.Delivery{Msg: apiary.JobMessage{Account: "acme", Job: apiary.NewJobID()}, Attempt: 1})
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	require.Empty(t, g.running)
}
