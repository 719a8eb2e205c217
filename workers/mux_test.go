package workers_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/queue"
)

// kindRecorder is a handler that notes which kind it ran.
func kindRecorder(ran *[]string, name string) workers.Handler {
	return workers.HandlerFunc(func(context.Context, *queue.Delivery) error {
		*ran = append(*ran, name)
		return nil
	})
}

func TestMuxDispatchesByKind(t *testing.T) {
	t.Parallel()
	var ran []string
	m := workers.NewMux()
	m.Register(apiary.JobKindIngest, kindRecorder(&ran, "ingest"))
	m.Register("sync", kindRecorder(&ran, "sync"))

	tests := []struct {
		name string
		kind apiary.JobKind
		want string
	}{
		{"ingest", apiary.JobKindIngest, "ingest"},
		{"another kind", "sync", "sync"},
		{"a message from before kinds is an ingest job", "", "ingest"},
	}
	for _, tt := range tests {
		ran = nil
		d := &queue.Delivery{Msg: apiary.JobMessage{Kind: tt.kind, Account: "acme", Job: "job_1"}, Attempt: 1}
		require.NoError(t, m.Handle(t.Context(), d), tt.name)
		require.Equal(t, []string{tt.want}, ran, tt.name)
	}

	require.Panics(t, func() { m.Register("sync", kindRecorder(&ran, "again")) }, "a kind is registered once")
	require.Panics(t, func() { m.Register("", kindRecorder(&ran, "none")) })
}

func TestMuxGivesUpOnAnUnknownKind(t *testing.T) {
	t.Parallel()
	m := workers.NewMux()
	m.Register(apiary.JobKindIngest, workers.HandlerFunc(func(context.Context, *queue.Delivery) error { return nil }))
	var seen bool
	m.Use(func(next workers.Handler) workers.Handler {
		return workers.HandlerFunc(func(ctx context.Context, d *queue.Delivery) error {
			seen = true
			return next.Handle(ctx, d)
		})
	})
	err := m.Handle(t.Context(), &queue.Delivery{Msg: apiary.JobMessage{Kind: "reembed", Account: "acme", Job: "job_1"}, Attempt: 1})
	require.True(t, apiary.IsPermanent(err), "a kind nobody handles is not retried")
	require.Equal(t, `job kind "reembed" is unknown to this worker`, apiary.Message(err), "the reason the failed job shows")
	require.True(t, seen, "middleware sees unknown kinds too")
}

func TestMuxMiddlewareOrder(t *testing.T) {
	t.Parallel()
	var trace []string
	mw := func(name string) workers.Middleware {
		return func(next workers.Handler) workers.Handler {
			return workers.HandlerFunc(func(ctx context.Context, d *queue.Delivery) error {
				trace = append(trace, name+" in")
				err := next.Handle(ctx, d)
				trace = append(trace, name+" out")
				return err
			})
		}
	}
	m := workers.NewMux()
	m.Register(apiary.JobKindIngest, workers.HandlerFunc(func(context.Context, *queue.Delivery) error {
		trace = append(trace, "handler")
		return nil
	}))
	m.Use(mw("metrics"), mw("audit"))
	m.Use(mw("tracing"))
	require.NoError(t, m.Handle(t.Context(), &queue.Delivery{Msg: apiary.JobMessage{Account: "acme", Job: "job_1"}, Attempt: 1}))
	require.Equal(t, []string{"metrics in", "audit in", "tracing in", "handler", "tracing out", "audit out", "metrics out"}, trace)
}
