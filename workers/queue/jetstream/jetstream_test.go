package jetstream_test

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/workers/queue"
	"github.com/apiaryhq/apiary/workers/queue/jetstream"
	"github.com/apiaryhq/apiary/workers/queue/queuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, _ := natstest.Connect(t)
	return nc
}

func newQueue(t *testing.T, nc *nats.Conn, lease time.Duration) *jetstream.Queue {
	t.Helper()
	q, err := jetstream.New(t.Context(), jetstream.Config{Conn: nc, Lease: lease, PollWait: 200 * time.Millisecond})
	require.NoError(t, err)
	return q
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, lease time.Duration) queue.Queue {
		return newQueue(t, connect(t), lease)
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  jetstream.Config
	}{
		{"no conn", jetstream.Config{}},
		{"short lease", jetstream.Config{Conn: &nats.Conn{}, Lease: time.Millisecond}},
		{"too many replicas", jetstream.Config{Conn: &nats.Conn{}, Replicas: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := jetstream.New(t.Context(), tt.cfg)
			require.Error(t, err)
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
		})
	}
}

func TestNewIsIdempotent(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	q1 := newQueue(t, nc, 2*time.Second)
	q2 := newQueue(t, nc, 2*time.Second) // a second worker process on the same stream
	ctx := t.Context()
	msg := apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()}
	require.NoError(t, q1.Enqueue(ctx, msg))
	var got []*queue.Delivery
	require.Eventually(t, func() bool {
		ds, err := q2.Receive(ctx, 1)
		got = append(got, ds...)
		return err == nil && len(got) == 1
	}, 30*time.Second, time.Millisecond)
	require.Equal(t, msg, got[0].Msg)
	require.NoError(t, got[0].Ack(ctx))
}

func TestEnqueueDeduplicatesJob(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	q := newQueue(t, nc, 2*time.Second)
	ctx := t.Context()
	msg := apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()}
	require.NoError(t, q.Enqueue(ctx, msg))
	require.NoError(t, q.Enqueue(ctx, msg))

	js, err := natsjs.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, "APIARY_JOBS")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "the same job enqueued twice is stored once")
}

func TestEnqueueRejectsBadIDs(t *testing.T) {
	t.Parallel()
	q := newQueue(t, connect(t), 2*time.Second)
	for _, msg := range []apiary.JobMessage{
		{Account: "", Job: apiary.NewJobID()},
		{Account: "Bad.Account", Job: apiary.NewJobID()},
		{Account: "acc_a", Job: ""},
	} {
		err := q.Enqueue(t.Context(), msg)
		require.Error(t, err)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%+v", msg)
	}
}

func TestMalformedMessageIsTerminated(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	q := newQueue(t, nc, time.Second)
	ctx := t.Context()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "apiary.jobs", []byte("not json"))
	require.NoError(t, err)
	good := apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()}
	data, err := json.Marshal(good)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "apiary.jobs", data)
	require.NoError(t, err)

	var got []*queue.Delivery
	require.Eventually(t, func() bool {
		ds, err := q.Receive(ctx, 2)
		got = append(got, ds...)
		return err == nil && len(got) >= 1
	}, 30*time.Second, time.Millisecond)
	require.Len(t, got, 1)
	require.Equal(t, good, got[0].Msg)
	require.NoError(t, got[0].Ack(ctx))

	s, err := js.Stream(ctx, "APIARY_JOBS")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	}, 30*time.Second, 10*time.Millisecond, "the malformed message is removed, not redelivered")
}

func TestClosedConnectionIsUnavailable(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	q := newQueue(t, nc, 2*time.Second)
	nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := q.Enqueue(ctx, apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()})
	require.Error(t, err)
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
	_, err = q.Receive(ctx, 1)
	require.Error(t, err)
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
}

func TestEnqueueBatch(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	ctx := t.Context()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	stored := func(stream string) uint64 {
		t.Helper()
		s, err := js.Stream(ctx, stream)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs
	}
	batch := func(n int) []apiary.JobMessage {
		msgs := make([]apiary.JobMessage, n)
		for i := range msgs {
			msgs[i] = apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()}
		}
		return msgs
	}

	t.Run("a job twice is stored once", func(t *testing.T) {
		q, err := jetstream.New(ctx, jetstream.Config{Conn: nc, Stream: "DEDUP", Subject: "dedup.jobs", Consumer: "dedup"})
		require.NoError(t, err)
		msgs := batch(3)
		require.NoError(t, q.EnqueueBatch(ctx, append(msgs, msgs[1])))
		require.NoError(t, q.EnqueueBatch(ctx, msgs), "the whole batch again")
		require.Equal(t, uint64(3), stored("DEDUP"))
	})

	t.Run("a full stream stores what fits and reports the rest", func(t *testing.T) {
		q, err := jetstream.New(ctx, jetstream.Config{Conn: nc, Stream: "FULL", Subject: "full.jobs", Consumer: "full", MaxMsgs: 5})
		require.NoError(t, err)
		err = q.EnqueueBatch(ctx, batch(8))
		require.ErrorContains(t, err, "3 of 8 messages not stored")
		require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
		require.Equal(t, uint64(5), stored("FULL"))
	})
}

// TestNackWithoutDelaySurvivesARestart: a delivery handed back at once (a
// worker stopping on SIGTERM) is delivered at once also after the server
// restarts with the process, keeping its attempt count, and never twice.
func TestNackWithoutDelaySurvivesARestart(t *testing.T) {
	t.Parallel()
	const lease = 10 * time.Minute
	dir := t.TempDir()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	require.NoError(t, err)
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	require.NoError(t, err)
	q := newQueue(t, nc, lease)
	ctx := t.Context()
	msg := apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()}
	require.NoError(t, q.Enqueue(ctx, msg))
	ds, err := q.Receive(ctx, 1)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.NoError(t, ds[0].Nack(ctx, 0))
	nc.Close()
	srv.Shutdown()

	srv, err = natsserver.Start(natsserver.Config{StoreDir: dir})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err = nats.Connect("", nats.InProcessServer(srv))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	q = newQueue(t, nc, lease)
	var again []*queue.Delivery
	require.Eventually(t, func() bool {
		again, err = q.Receive(ctx, 2)
		return err == nil && len(again) > 0
	}, 30*time.Second, 10*time.Millisecond, "handed back at once, not after the lease")
	require.Len(t, again, 1)
	require.Equal(t, msg, again[0].Msg)
	require.Equal(t, 2, again[0].Attempt)
	require.NoError(t, again[0].Ack(ctx))
	ds, err = q.Receive(ctx, 1)
	require.NoError(t, err)
	require.Empty(t, ds, "one message per job")
}

// A Receive cancelled while its pull waits at the server must not lose what
// the server sends that pull: a job enqueued (or handed back by a stopping
// pool) as the Receive is cancelled stayed leased until its lease ran out.
// TestRunContextEndIsHardStop (workers) failed this way.
func TestCancelledReceiveLosesNoMessage(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	q, err := jetstream.New(t.Context(), jetstream.Config{Conn: nc, Lease: time.Minute, PollWait: 100 * time.Millisecond})
	require.NoError(t, err)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	cons, err := js.Consumer(t.Context(), "APIARY_JOBS", "apiary-workers")
	require.NoError(t, err)

	type result struct {
		ds  []*queue.Delivery
		err error
	}
	for range 100 {
		ctx, cancel := context.WithCancel(t.Context())
		received := make(chan result, 1)
		go func() {
			ds, err := q.Receive(ctx, 1)
			received <- result{ds, err}
		}()
		require.Eventually(t, func() bool { // the pull waits at the server
			info, err := cons.Info(t.Context())
			return err == nil && info.NumWaiting > 0
		}, 30*time.Second, time.Millisecond)
		msg := apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()}
		enqueued := make(chan error, 1)
		go func() { enqueued <- q.Enqueue(t.Context(), msg) }()
		cancel()
		require.NoError(t, <-enqueued)
		got := <-received // the job, if it came before the cancel
		if got.err != nil {
			require.ErrorIs(t, got.err, context.Canceled)
			require.Eventually(t, func() bool {
				ds, err := q.Receive(t.Context(), 1)
				got.ds = append(got.ds, ds...)
				return err == nil && len(got.ds) == 1
			}, 30*time.Second, time.Millisecond, "the job is delivered now, not after its one-minute lease")
		}
		require.Len(t, got.ds, 1)
		require.Equal(t, msg, got.ds[0].Msg)
		require.Equal(t, 1, got.ds[0].Attempt)
		require.NoError(t, got.ds[0].Ack(t.Context()))
	}
}

// The requeue headers are read from whatever is on the stream, so they are
// bounded: a message claiming to have been first enqueued after it was
// stored (a clock ahead, or a message published with the header by anyone
// on the bus) does not get an outage window that never closes, and an
// attempt count that would overflow does not turn negative (a job that is
// never given up).
func TestRequeueHeadersAreBounded(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	q := newQueue(t, nc, time.Second)
	ctx := t.Context()
	data, err := json.Marshal(apiary.JobMessage{Account: "acc_a", Job: apiary.NewJobID()})
	require.NoError(t, err)
	m := nats.NewMsg("apiary.jobs")
	m.Data = data
	m.Header.Set("Apiary-Enqueued", strconv.FormatInt(time.Now().Add(365*24*time.Hour).UnixNano(), 10))
	m.Header.Set("Apiary-Attempts", strconv.FormatInt(math.MaxInt64, 10))
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, m)
	require.NoError(t, err)
	stored := time.Now()

	var got []*queue.Delivery
	require.Eventually(t, func() bool {
		ds, err := q.Receive(ctx, 1)
		got = append(got, ds...)
		return err == nil && len(got) == 1
	}, 30*time.Second, time.Millisecond)
	d := got[0]
	require.False(t, d.Enqueued.After(stored), "Enqueued %s is after the message was stored (%s)", d.Enqueued, stored)
	require.Positive(t, d.Attempt)
	require.NoError(t, d.Ack(ctx))
}
