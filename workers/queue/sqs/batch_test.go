package sqs_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
	apsqs "github.com/apiaryhq/apiary/workers/queue/sqs"
)

// receiveN polls q until n deliveries arrived, without acking them.
func receiveN(t *testing.T, q *apsqs.Queue, n int) []*queue.Delivery {
	t.Helper()
	var out []*queue.Delivery
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		ds, err := q.Receive(t.Context(), n-len(out))
		require.NoError(t, err)
		out = append(out, ds...)
	}
	require.Len(t, out, n)
	return out
}

// drain receives and acks until q stays empty for one long poll, and
// returns how often each job was delivered.
func drain(t *testing.T, q *apsqs.Queue) map[apiary.JobID]int {
	t.Helper()
	got := map[apiary.JobID]int{}
	for {
		ds, err := q.Receive(t.Context(), 10)
		require.NoError(t, err)
		if len(ds) == 0 {
			return got
		}
		for _, d := range ds {
			got[d.Msg.Job]++
			require.NoError(t, d.Ack(t.Context()))
		}
	}
}

type queueDepth struct{ visible, inFlight string }

// depth reports SQS's counts of q's visible and in-flight messages.
func depth(t *testing.T, c *awssqs.Client, q *apsqs.Queue) queueDepth {
	t.Helper()
	out, err := c.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.URL()), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	return queueDepth{visible: out.Attributes["ApproximateNumberOfMessages"], inFlight: out.Attributes["ApproximateNumberOfMessagesNotVisible"]}
}

// requireEmpty checks that q holds no message, visible or in flight.
func requireEmpty(t *testing.T, c *awssqs.Client, q *apsqs.Queue) {
	t.Helper()
	require.Equal(t, queueDepth{visible: "0", inFlight: "0"}, depth(t, c, q))
}

func messages(n int) []apiary.JobMessage {
	msgs := make([]apiary.JobMessage, n)
	for i := range msgs {
		msgs[i] = message()
	}
	return msgs
}

// ackAll acks ds concurrently and returns each Ack's error, in order.
func ackAll(ctx context.Context, q *apsqs.Queue, ds []*queue.Delivery) []error {
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { errs[i] = d.Ack(ctx) })
	}
	wg.Wait()
	return errs
}

func TestAckCoalescesConcurrentAcks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ acks, wantBatches int }{
		{acks: 10, wantBatches: 1},
		{acks: 25, wantBatches: 3}, // 10, 10 and 5: never more than SQS takes
	} {
		t.Run(fmt.Sprint(tt.acks), func(t *testing.T) {
			t.Parallel()
			c, tr := client(t, 3)
			// A long window: full batches go at once, and the last one
			// before the window ends however slow the machine.
			q := newQueueWith(t, apsqs.Config{Client: c, Lease: 30 * time.Second, AckBatchWindow: time.Second})
			require.NoError(t, q.EnqueueBatch(t.Context(), messages(tt.acks)))
			ds := receiveN(t, q, tt.acks)

			tr.resetCalls()
			for i, err := range ackAll(t.Context(), q, ds) {
				require.NoError(t, err, "ack %d", i)
			}
			require.Equal(t, tt.wantBatches, tr.callsOf("DeleteMessageBatch"))
			require.Equal(t, 0, tr.callsOf("DeleteMessage"))
			requireEmpty(t, c, q)
		})
	}
}

func TestAckWithoutCoalescing(t *testing.T) {
	t.Parallel()
	c, tr := client(t, 3)
	q := newQueueWith(t, apsqs.Config{Client: c, Lease: 30 * time.Second, AckBatchWindow: -1})
	require.NoError(t, q.EnqueueBatch(t.Context(), messages(10)))
	ds := receiveN(t, q, 10)

	tr.resetCalls()
	for i, err := range ackAll(t.Context(), q, ds) {
		require.NoError(t, err, "ack %d", i)
	}
	require.Equal(t, 0, tr.callsOf("DeleteMessageBatch"))
	require.Equal(t, 10, tr.callsOf("DeleteMessage"))
	requireEmpty(t, c, q)
}

func TestLoneAckIsSentWhenTheWindowEnds(t *testing.T) {
	t.Parallel()
	c, tr := client(t, 3)
	q := newQueue(t, c, 30*time.Second) // the default window
	require.NoError(t, q.Enqueue(t.Context(), message()))
	d := receiveOne(t, q)

	tr.resetCalls()
	require.NoError(t, d.Ack(t.Context()))
	require.Equal(t, 1, tr.callsOf("DeleteMessage"), "a batch of one is a plain delete")
	require.Equal(t, 0, tr.callsOf("DeleteMessageBatch"))
	requireEmpty(t, c, q)
}

func TestAckBatchFailsOnlyTheRefusedEntry(t *testing.T) {
	t.Parallel()
	c, tr := client(t, 3)
	q := newQueueWith(t, apsqs.Config{Client: c, Lease: 30 * time.Second, AckBatchWindow: time.Second})
	require.NoError(t, q.EnqueueBatch(t.Context(), messages(4)))
	ds := receiveN(t, q, 3)
	const bad = "not-a-receipt-handle"
	ds = append(ds, apsqs.ForgeDelivery(q, apiary.NewJobID(), bad))
	// The emulator accepts any receipt handle; SQS refuses a malformed one
	// as the entry's failure.
	r := &refusal{op: "DeleteMessageBatch", code: "ReceiptHandleIsInvalid", senderFault: true,
		match: func(e map[string]any) bool { return e["ReceiptHandle"] == bad }}
	tr.refusal.Store(r)
	t.Cleanup(func() { tr.refusal.Store(nil) })

	tr.resetCalls()
	results := make([]chan error, len(ds))
	for i, d := range ds {
		results[i] = make(chan error, 1)
		go func() { results[i] <- d.Ack(t.Context()) }()
	}
	require.Eventually(t, func() bool { return apsqs.PendingAcks(q) == len(ds) }, 30*time.Second, time.Millisecond)

	// Close sends the open batch at once and returns once it is done: the
	// three received messages are deleted by then, the fourth still queued.
	require.NoError(t, q.Close())
	require.Equal(t, 1, tr.callsOf("DeleteMessageBatch"))
	require.Equal(t, 0, tr.callsOf("DeleteMessage"))
	require.Equal(t, queueDepth{visible: "1", inFlight: "0"}, depth(t, c, q))
	for i, res := range results {
		err := <-res
		if i == len(ds)-1 {
			require.Equal(t, apiary.KindConflict, apiary.KindOf(err), "the refused entry: %v", err)
			require.Contains(t, err.Error(), string(ds[i].Msg.Job))
		} else {
			require.NoError(t, err, "ack %d", i)
		}
	}

	// After Close, an Ack is a plain DeleteMessage.
	d := receiveOne(t, q)
	require.NoError(t, d.Ack(t.Context()))
	require.Equal(t, 1, tr.callsOf("DeleteMessage"))
	require.Equal(t, 1, tr.callsOf("DeleteMessageBatch"))
	requireEmpty(t, c, q)
	require.NoError(t, q.Close(), "Close twice")
}

func TestAckCanceledWhileWaiting(t *testing.T) {
	t.Parallel()
	c, _ := client(t, 3)
	q := newQueueWith(t, apsqs.Config{Client: c, Lease: 30 * time.Second, AckBatchWindow: time.Second})
	require.NoError(t, q.Enqueue(t.Context(), message()))
	d := receiveOne(t, q)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Ack(ctx) }()
	require.Eventually(t, func() bool { return apsqs.PendingAcks(q) == 1 }, 30*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	// The delete was already queued: it still goes out.
	require.NoError(t, q.Close())
	requireEmpty(t, c, q)

	cctx, ccancel := context.WithCancel(t.Context())
	ccancel()
	require.ErrorIs(t, d.Ack(cctx), context.Canceled, "a canceled Ack sends nothing")
}

func TestEnqueueBatch(t *testing.T) {
	t.Parallel()
	const total = 25 // three calls: 10, 10, 5
	tests := []struct {
		name      string
		refuse    func(msgs []apiary.JobMessage) *refusal // nil: none
		fault     *fault
		wantCalls int // SendMessageBatch
		wantLost  int // messages not stored
		wantKind  apiary.Kind
		wantRetry bool
	}{
		{name: "all stored", wantCalls: 3},
		{
			name: "refused entries are retried once",
			refuse: func(msgs []apiary.JobMessage) *refusal {
				r := &refusal{code: "InternalError", match: bodyOf(msgs[3], msgs[17])}
				r.calls.Store(2) // the first two calls refuse them; the retry stores them
				return r
			},
			wantCalls: 4,
		},
		{
			name: "an entry refused twice is reported",
			refuse: func(msgs []apiary.JobMessage) *refusal {
				return &refusal{code: "InternalError", match: bodyOf(msgs[24])}
			},
			wantCalls: 4, wantLost: 1, wantKind: apiary.KindUnavailable,
		},
		{
			name: "an entry refused as the sender's fault",
			refuse: func(msgs []apiary.JobMessage) *refusal {
				return &refusal{code: "InvalidMessageContents", senderFault: true, match: bodyOf(msgs[0], msgs[10])}
			},
			wantCalls: 4, wantLost: 2, wantKind: apiary.KindInvalid,
		},
		{
			name:      "every call throttled",
			fault:     &fault{400, "RequestThrottled"},
			wantCalls: 6, wantLost: total, wantKind: apiary.KindUnavailable, wantRetry: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, tr := client(t, 1)
			q := newQueue(t, c, 30*time.Second)
			msgs := messages(total)
			if tt.refuse != nil {
				r := tt.refuse(msgs)
				r.op = "SendMessageBatch"
				tr.refusal.Store(r)
			}
			tr.fault.Store(tt.fault)
			err := q.EnqueueBatch(t.Context(), msgs)
			tr.fault.Store(nil)
			tr.refusal.Store(nil)
			require.Equal(t, tt.wantCalls, tr.callsOf("SendMessageBatch"))
			require.Equal(t, 0, tr.callsOf("SendMessage"))
			if tt.wantLost == 0 {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				require.Contains(t, err.Error(), fmt.Sprintf("%d of %d messages not stored", tt.wantLost, total))
				require.Equal(t, tt.wantKind, apiary.KindOf(err), "%v", err)
				_, hasRetry := apiary.RetryDelay(err)
				require.Equal(t, tt.wantRetry, hasRetry)
			}

			got := drain(t, q)
			require.Len(t, got, total-tt.wantLost)
			for job, n := range got {
				require.Equal(t, 1, n, "job %s delivered %d times", job, n)
			}
		})
	}
}

func TestEnqueueBatchRefusesBadMessages(t *testing.T) {
	t.Parallel()
	c, tr := client(t, 3)
	q := newQueue(t, c, 30*time.Second)
	msgs := messages(12)
	msgs[11].Account = "Not OK"
	err := q.EnqueueBatch(t.Context(), msgs)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	require.Contains(t, err.Error(), "message 11")
	require.Equal(t, 0, tr.callsOf("SendMessageBatch"), "nothing is sent")

	require.NoError(t, q.EnqueueBatch(t.Context(), nil))
	require.Equal(t, 0, tr.callsOf("SendMessageBatch"), "an empty batch sends nothing")
}

// bodyOf matches the batch entries that carry one of msgs.
func bodyOf(msgs ...apiary.JobMessage) func(map[string]any) bool {
	return func(e map[string]any) bool {
		body, _ := e["MessageBody"].(string)
		for _, m := range msgs {
			if strings.Contains(body, string(m.Job)) {
				return true
			}
		}
		return false
	}
}
