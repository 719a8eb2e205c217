// Package queuetest is the conformance suite of the queue port. Every adapter
// of queue.Queue runs it against a real server:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, lease time.Duration) queue.Queue {
//			return newAdapter(t, lease) // a fresh, empty queue
//		})
//	}
//
// newQueue must return an empty queue, not shared with any other call, whose
// deliveries are leased for lease. Cases for optional extensions
// (queue.BatchEnqueuer) skip when the queue does not implement them. The cases run in parallel and wait for
// leases to run out, so they take a few seconds of wall time each.
package queuetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Leases given to the factory: short so that redelivery cases stay quick,
// long enough that a loaded machine acks well within them.
const (
	shortLease = 2 * time.Second
	lease      = 3 * time.Second
)

// opTimeout bounds every single queue call of the suite.
const opTimeout = 60 * time.Second

// deliverWithin bounds the wait for a delivery that is due now: generous,
// as a loaded machine running the race detector may be several times
// slower than a developer's; a passing run does not wait for it.
const deliverWithin = 30 * time.Second

// Run runs the conformance suite against fresh queues from newQueue.
func Run(t *testing.T, newQueue func(t *testing.T, lease time.Duration) queue.Queue) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue)
	}{
		{"EnqueueReceiveAck", testEnqueueReceiveAck},
		{"ReceiveAtMostMax", testReceiveAtMostMax},
		{"ReceiveEmptyReturns", testReceiveEmptyReturns},
		{"ReceiveHonoursCancel", testReceiveHonoursCancel},
		{"RedeliveredAfterLease", testRedeliveredAfterLease},
		{"ExtendKeepsLease", testExtendKeepsLease},
		{"NackDelays", testNackDelays},
		{"EnqueuedSurvivesRedelivery", testEnqueuedSurvivesRedelivery},
		{"TermRemoves", testTermRemoves},
		{"ConcurrentReceiversExclusive", testConcurrentReceiversExclusive},
		{"EnqueueBatch", testEnqueueBatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newQueue)
		})
	}
}

// message returns a fresh job message; its job id is unique.
func message() apiary.JobMessage {
	return apiary.JobMessage{Account: "acc_queuetest", Job: apiary.NewJobID()}
}

func opContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// receiveOne polls until one delivery arrives, failing after within.
func receiveOne(t *testing.T, q queue.Queue, within time.Duration) *queue.Delivery {
	t.Helper()
	ctx := opContext(t)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ds, err := q.Receive(ctx, 1)
		require.NoError(t, err)
		require.LessOrEqual(t, len(ds), 1, "Receive(ctx, 1) returned more than 1")
		if len(ds) == 1 {
			return ds[0]
		}
	}
	require.FailNow(t, "no delivery", "nothing received within %s", within)
	return nil
}

// enqueueReceive enqueues a fresh message and receives it as attempt 1.
func enqueueReceive(t *testing.T, q queue.Queue) (apiary.JobMessage, *queue.Delivery) {
	t.Helper()
	msg := message()
	require.NoError(t, q.Enqueue(opContext(t), msg))
	d := receiveOne(t, q, deliverWithin)
	require.Equal(t, msg, d.Msg, "message body must round-trip")
	require.Equal(t, 1, d.Attempt, "first delivery is attempt 1")
	return msg, d
}

// ackRedelivery waits up to within for msg to come back as attempt 2 and
// acks it.
func ackRedelivery(t *testing.T, q queue.Queue, msg apiary.JobMessage, within time.Duration) {
	t.Helper()
	d := receiveOne(t, q, within)
	require.Equal(t, msg, d.Msg)
	require.Equal(t, 2, d.Attempt)
	require.NoError(t, d.Ack(opContext(t)))
}

// requireNothingFor polls Receive for d and fails if anything is delivered.
func requireNothingFor(t *testing.T, q queue.Queue, d time.Duration, why string) {
	t.Helper()
	ctx := opContext(t)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ds, err := q.Receive(ctx, 1)
		require.NoError(t, err)
		require.Empty(t, ds, why)
	}
}

func testEnqueueReceiveAck(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, lease)
	require.Equal(t, lease, q.Lease())
	_, d := enqueueReceive(t, q)
	require.NoError(t, d.Ack(opContext(t)))

	// An acked delivery is gone: not even after its lease runs out.
	requireNothingFor(t, q, lease+lease/2, "an acked delivery came back")
}

func testReceiveAtMostMax(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, lease)
	ctx := opContext(t)
	const total, max = 7, 3
	want := map[apiary.JobID]bool{}
	for range total {
		m := message()
		want[m.Job] = true
		require.NoError(t, q.Enqueue(ctx, m))
	}
	got := map[apiary.JobID]bool{}
	deadline := time.Now().Add(deliverWithin)
	for len(got) < total && time.Now().Before(deadline) {
		ds, err := q.Receive(ctx, max)
		require.NoError(t, err)
		require.LessOrEqual(t, len(ds), max, "Receive(ctx, %d) returned %d deliveries", max, len(ds))
		for _, d := range ds {
			require.False(t, got[d.Msg.Job], "job %s delivered twice", d.Msg.Job)
			got[d.Msg.Job] = true
			require.NoError(t, d.Ack(ctx))
		}
	}
	require.Equal(t, want, got)
}

func testReceiveEmptyReturns(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, lease)
	// Receive on an empty queue comes back (empty) after one poll interval;
	// the bound here is only "it does not block forever".
	done := make(chan error, 1)
	go func() {
		ds, err := q.Receive(opContext(t), 4)
		if err == nil && len(ds) != 0 {
			err = errors.New("deliveries from an empty queue")
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(opTimeout):
		require.FailNow(t, "Receive on an empty queue did not return")
	}
}

func testReceiveHonoursCancel(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, lease)

	t.Run("canceled before the call", func(t *testing.T) {
		// A Receive under a canceled context takes nothing from the queue.
		msg := message()
		require.NoError(t, q.Enqueue(opContext(t), msg))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		ds, err := q.Receive(ctx, 1)
		require.Empty(t, ds)
		require.ErrorIs(t, err, context.Canceled)

		d := receiveOne(t, q, deliverWithin)
		require.Equal(t, msg, d.Msg)
		require.Equal(t, 1, d.Attempt, "a canceled Receive must not consume the message")
		require.NoError(t, d.Ack(opContext(t)))
	})

	t.Run("canceled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := q.Receive(ctx, 1)
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				require.ErrorIs(t, err, context.Canceled)
			}
		case <-time.After(opTimeout):
			require.FailNow(t, "Receive did not return after its context was canceled")
		}
	})
}

func testRedeliveredAfterLease(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, shortLease)
	msg, _ := enqueueReceive(t, q)
	// Not acked: a crashed worker. It comes back once the lease runs out.
	ackRedelivery(t, q, msg, 10*shortLease)
}

func testExtendKeepsLease(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, shortLease)
	ctx := opContext(t)
	_, d := enqueueReceive(t, q)

	// Keep extending for 3 leases while another receiver polls, often
	// enough that one slow Extend on a loaded machine does not let the
	// lease run out.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(shortLease / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				assert.NoError(t, d.Extend(ctx))
			}
		}
	})
	requireNothingFor(t, q, 3*shortLease, "an extended delivery was redelivered")
	close(stop)
	wg.Wait()
	require.NoError(t, d.Ack(ctx))
	requireNothingFor(t, q, shortLease+shortLease/2, "an acked delivery came back")
}

func testNackDelays(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	const delay = 3 * time.Second
	q := newQueue(t, lease)
	ctx := opContext(t)
	msg, d := enqueueReceive(t, q)
	nacked := time.Now()
	require.NoError(t, d.Nack(ctx, delay))
	requireNothingFor(t, q, delay/2-time.Since(nacked), "a nacked delivery came back before its delay")
	ackRedelivery(t, q, msg, 10*delay)

	// Nack without delay hands it back at once.
	msg, d = enqueueReceive(t, q)
	require.NoError(t, d.Nack(ctx, 0))
	ackRedelivery(t, q, msg, deliverWithin)
}

// testEnqueuedSurvivesRedelivery: a delivery says when its message was
// stored, and every redelivery says the same, whether it was handed back
// at once, after a delay, or when its lease ran out.
func testEnqueuedSurvivesRedelivery(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	// The engine's clock (or an emulator's, whole milliseconds) may be a
	// little off this process's.
	const skew = 2 * time.Second
	q := newQueue(t, shortLease)
	ctx := opContext(t)
	before := time.Now()
	msg, d := enqueueReceive(t, q)
	enqueued := d.Enqueued
	require.False(t, enqueued.IsZero(), "Enqueued is set")
	require.WithinRange(t, enqueued, before.Add(-skew), time.Now().Add(skew))

	require.NoError(t, d.Nack(ctx, 0))
	d = receiveOne(t, q, deliverWithin)
	require.Equal(t, msg, d.Msg)
	require.True(t, enqueued.Equal(d.Enqueued), "after Nack(0): %s, first %s", d.Enqueued, enqueued)

	require.NoError(t, d.Nack(ctx, time.Second))
	d = receiveOne(t, q, deliverWithin)
	require.True(t, enqueued.Equal(d.Enqueued), "after Nack(1s): %s, first %s", d.Enqueued, enqueued)

	// Not settled: its lease runs out.
	d = receiveOne(t, q, 10*shortLease)
	require.True(t, enqueued.Equal(d.Enqueued), "after the lease ran out: %s, first %s", d.Enqueued, enqueued)
	require.Equal(t, 4, d.Attempt)
	require.NoError(t, d.Ack(ctx))
}

func testTermRemoves(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, shortLease)
	_, d := enqueueReceive(t, q)
	require.NoError(t, d.Term(opContext(t), "queuetest: terminated on purpose"))
	requireNothingFor(t, q, 3*shortLease, "a terminated delivery came back")
}

func testConcurrentReceiversExclusive(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	const total, receivers = 50, 2
	q := newQueue(t, lease)
	ctx := opContext(t)
	for range total {
		require.NoError(t, q.Enqueue(ctx, message()))
	}

	var (
		mu    sync.Mutex
		held  = map[apiary.JobID]bool{}
		acked = map[apiary.JobID]int{}
	)
	recvCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range receivers {
		wg.Go(func() {
			for recvCtx.Err() == nil {
				ds, err := q.Receive(recvCtx, 5)
				if recvCtx.Err() != nil {
					return
				}
				if !assert.NoError(t, err) || !assert.LessOrEqual(t, len(ds), 5) {
					return
				}
				for _, d := range ds {
					mu.Lock()
					assert.False(t, held[d.Msg.Job], "job %s held by two receivers at once", d.Msg.Job)
					held[d.Msg.Job] = true
					mu.Unlock()

					assert.NoError(t, d.Ack(ctx))

					mu.Lock()
					delete(held, d.Msg.Job)
					acked[d.Msg.Job]++
					done := len(acked) == total
					mu.Unlock()
					if done {
						cancel()
					}
				}
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	require.Len(t, acked, total)
	for job, n := range acked {
		require.Equal(t, 1, n, "job %s delivered %d times", job, n)
	}
	requireNothingFor(t, q, lease+lease/2, "an acked delivery came back")
}

func testEnqueueBatch(t *testing.T, newQueue func(*testing.T, time.Duration) queue.Queue) {
	q := newQueue(t, lease)
	b, ok := q.(queue.BatchEnqueuer)
	if !ok {
		t.Skipf("%T does not implement queue.BatchEnqueuer", q)
	}
	ctx := opContext(t)
	require.NoError(t, b.EnqueueBatch(ctx, nil), "an empty batch is a no-op")

	// One bad message refuses the whole batch: the good one is not stored
	// (checked below: only the 25 of the next batch are ever delivered).
	err := b.EnqueueBatch(ctx, []apiary.JobMessage{message(), {Account: "acc_queuetest"}})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a message without a job id: %v", err)

	const total = 25 // more than one SQS batch of 10, not a multiple of it
	msgs := make([]apiary.JobMessage, total)
	want := map[apiary.JobID]bool{}
	for i := range msgs {
		msgs[i] = message()
		want[msgs[i].Job] = true
	}
	require.NoError(t, b.EnqueueBatch(ctx, msgs))

	got := map[apiary.JobID]bool{}
	deadline := time.Now().Add(deliverWithin)
	for len(got) < total && time.Now().Before(deadline) {
		ds, err := q.Receive(ctx, 10)
		require.NoError(t, err)
		for _, d := range ds {
			require.True(t, want[d.Msg.Job], "job %s was not in the batch", d.Msg.Job)
			require.False(t, got[d.Msg.Job], "job %s delivered twice", d.Msg.Job)
			require.Equal(t, 1, d.Attempt)
			got[d.Msg.Job] = true
			require.NoError(t, d.Ack(ctx))
		}
	}
	require.Equal(t, want, got)
	requireNothingFor(t, q, lease+lease/2, "a message stored twice, or from the refused batch")
}
