package natserr_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/queue/jetstream"
)

// The three NATS adapters classify one failure alike: they all translate
// through natserr.
func TestAdaptersAgree(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	ctx := t.Context()
	q, err := jetstream.New(ctx, jetstream.Config{Conn: nc})
	require.NoError(t, err)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(t, err)
	kv, err := natskv.NewKVStore(js, natskv.Config{}).Bucket(ctx, "jobs")
	require.NoError(t, err)

	calls := map[string]func(context.Context) error{
		"jetstream enqueue": func(ctx context.Context) error {
			return q.Enqueue(ctx, apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()})
		},
		"natsbus publish": func(ctx context.Context) error {
			return bus.Publish(ctx, apiary.Event{ID: "e1", Account: "acc_a", Job: apiary.NewJobID(), Type: apiary.EventJobQueued})
		},
		"natskv put": func(ctx context.Context) error {
			_, err := kv.Put(ctx, "job.1", []byte("v"))
			return err
		},
	}
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for name, call := range calls {
		err := call(expired)
		require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%s past its deadline: %v", name, err)
		require.ErrorIs(t, err, context.DeadlineExceeded, name)
		err = call(canceled)
		require.Equal(t, apiary.KindOther, apiary.KindOf(err), "%s canceled: %v", name, err)
		require.ErrorIs(t, err, context.Canceled, name)
	}
}
